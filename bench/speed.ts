import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { FerretDB } from '../scripts/ferretdb';
import { MongoplexProcess } from '../scripts/mongoplex-process';
import { consecutiveFreePorts } from '../scripts/ports';
import { firstJsonLine, howItEnded, terminate } from '../scripts/process';
import { startEnvoyFront } from '../scripts/envoy';
import { LoadClient } from './load-client';
import { parseModes, runMode, type Options } from './pool';
import { cpuPerOp, cpuTime, processTree, rssKb } from './processes';
import { runRounds, type ModeResult } from './rounds';

/**
 * `npm run bench -- speed`: what each path costs per operation and per idle client, side by
 * side in one invocation — FerretDB directly, Envoy's tcp_proxy (C++, no pooling: the
 * baseline), a bare Node.js byte relay (bench/node-relay.ts: the floor of any proxy written in
 * Node), mongoplex's TCP ingress, and Envoy + mongoplex over ext_proc.
 *
 * - Load: `--clients` raw connections, every one in a closed loop of forwarded pings (the
 *   cheapest server round trip, so the proxy's own cost shows). Per process (mongoplex with any
 *   child processes, Envoy, the Node relay): CPU µs per operation and the kernel's share of it,
 *   from /proc/PID/stat.
 * - Idle: after the load, the resident memory each idle client adds (handshaken with `hello`
 *   like a driver's connection, then silent) at each `--idle` count, per process. Counts that
 *   would take a process past the open-file limit are left out (Envoy's tcp_proxy and the Node
 *   relay hold two sockets per client).
 * - `--profile`: mongoplex runs with `--cpu-prof`; the bench prints where its time went (self
 *   time by function and by module). Profiled runs skip the idle phase.
 * - `--syscalls`: `strace -c` follows mongoplex and Envoy during the load: system calls per
 *   operation, by call (strace slows the processes; its CPU figures are not comparable).
 * - `--workers 1,2`: each mongoplex mode once per worker count (`mongoplex-tcp-2-workers`; its
 *   CPU counts the primary and every worker); the summary adds ops/s against 1 worker.
 * - Every mongoplex mode runs with node's `--trace-gc-nvp`: the JS heap bytes it allocated per
 *   operation during the load (`mongoplexHeapBytesPerOp`, the sum of each collection's
 *   `allocated=`), the allocation budget's figure.
 * - `--budget`: the modes the speed targets name, each mongoplex mode also with capture, mirror
 *   and access log on (`-with-taps`: their cost shown, not budgeted), idle clients at 5,000 by
 *   default; then one line per target with its value, its limit and PASS or FAIL (ops/s against
 *   direct: against bench/speed-baseline.json, the figures before the hot-path work).
 *
 * Rounds alternate the order of modes; figures are their means. Prints one JSON line per mode,
 * then one `summary` line with the ratios the speed targets are stated in.
 */

const MODES = ['direct', 'envoy-tcp-proxy', 'node-relay', 'mongoplex-tcp', 'mongoplex-ext-proc'] as const;
type Mode = (typeof MODES)[number];

interface SpeedResult extends ModeResult {
  /** JS heap bytes mongoplex allocated per operation during the load (node --trace-gc-nvp). */
  mongoplexHeapBytesPerOp: number;
  envoyCpuUsPerOp: number;
  mongoplexKernelShare: number;
  envoyKernelShare: number;
  nodeRelayCpuUsPerOp: number;
  nodeRelayKernelShare: number;
}

interface Stack {
  port: number;
  mongoplex?: MongoplexProcess;
  envoyPid?: number;
  relayPid?: number;
  stop(): Promise<void>;
}

export async function runSpeedBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      clients: { type: 'string', default: '200' },
      seconds: { type: 'string', default: '5' },
      'pool-size': { type: 'string', default: '8' },
      modes: { type: 'string', default: MODES.join(',') },
      idle: { type: 'string', default: '1000,5000,10000' },
      rounds: { type: 'string', default: '2' },
      workers: { type: 'string', default: '1' },
      profile: { type: 'boolean', default: false },
      budget: { type: 'boolean', default: false },
      syscalls: { type: 'boolean', default: false },
      out: { type: 'string', default: path.resolve(__dirname, '..', '..', '.cache', 'bench', 'profiles') },
    },
  });
  const clients = Number(values.clients);
  const o: Options = { clients, busy: clients, seconds: Number(values.seconds), poolSize: Number(values['pool-size']), mix: 'ping' };
  if (!(clients > 0 && o.seconds > 0 && o.poolSize > 0)) throw new Error('options: --clients N --seconds S --pool-size P (positive) --idle 1000,5000 --rounds R --profile');
  const idleArg = values.budget && !argv.some((a) => a.startsWith('--idle')) ? '5000' : values.idle;
  const idleCounts = idleArg === '' ? [] : idleArg.split(',').map(Number);
  const workerCounts = values.workers.split(',').map(Number);
  if (!workerCounts.every((w) => Number.isInteger(w) && w >= 1)) throw new Error('--workers: a list of worker counts, e.g. 1,2');
  // Each mongoplex mode once per worker count (`mongoplex-tcp-2-workers`); 1 keeps the plain name.
  const modes = values.budget && !argv.some((a) => a.startsWith('--modes')) ? BUDGET_MODES.join(',') : values.modes;
  const runs = parseModes(modes, MODES)
    .flatMap((m) => (m.startsWith('mongoplex') ? workerCounts.map((w) => (w === 1 ? m : `${m}-${w}-workers`)) : [m]))
    .flatMap((r) => (values.budget && r.startsWith('mongoplex') ? [r, `${r}${WITH_TAPS}`] : [r]));
  const db = await FerretDB.start();
  const profiles = values.profile ? path.join(values.out, new Date().toISOString().replace(/[:.]/g, '-')) : undefined;
  try {
    const results = await runRounds(runs, Number(values.rounds), (run, round) => runSpeedMode(run, round, o, db, round === 0 && !profiles ? idleCounts : [], profiles, values.syscalls));
    for (const r of results) console.log(JSON.stringify(r));
    const sum = summary(results, idleCounts);
    console.log(JSON.stringify(sum));
    if (values.budget) for (const line of budgetLines(results, sum, idleCounts)) console.log(JSON.stringify(line));
    if (profiles) for (const run of runs) if (run.startsWith('mongoplex')) console.log(JSON.stringify({ profile: run, ...summariseProfiles(path.join(profiles, run)) }));
  } finally {
    await db.stop();
  }
}

/** The modes the speed targets are stated in (`--budget`). */
const BUDGET_MODES: readonly Mode[] = ['direct', 'envoy-tcp-proxy', 'mongoplex-tcp', 'mongoplex-ext-proc'];
/** A mongoplex run with capture, mirror and access log on (`--budget`). */
const WITH_TAPS = '-with-taps';

/** A run's mode, mongoplex worker count and whether its taps are on, from its name (`mongoplex-ext-proc-2-workers-with-taps`). */
function parseRun(run: string): { mode: Mode; workers: number; taps: boolean } {
  const m = /^(.*?)(?:-(\d+)-workers)?(-with-taps)?$/.exec(run)!;
  return { mode: m[1] as Mode, workers: m[2] ? Number(m[2]) : 1, taps: m[3] !== undefined };
}

/**
 * Capture (every connection, to a scratch directory), mirroring (every read, to the same
 * server) and the access log (to a scratch file) on; the directory is removed when the stack stops.
 */
function tapSettings(db: FerretDB, stops: Array<() => Promise<void>>): Record<string, string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-speed-taps-'));
  stops.push(async () => rmSync(dir, { recursive: true, force: true }));
  return { MONGOPLEX_CAPTURE_ENABLED: 'true', MONGOPLEX_CAPTURE_DIR: dir, MONGOPLEX_MIRROR_TARGET: db.address, MONGOPLEX_ACCESS_LOG_PATH: path.join(dir, 'access.log') };
}

async function startStack(run: string, db: FerretDB, o: Options, profileDir: string | undefined): Promise<Stack> {
  const { mode, workers, taps } = parseRun(run);
  const stops: Array<() => Promise<void>> = [];
  const stop = async (): Promise<void> => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    if (mode === 'direct') return { port: db.port, stop };
    if (mode === 'envoy-tcp-proxy') {
      const front = await startEnvoyFront({ ingress: { kind: 'tcp_proxy', upstream: { host: db.host, port: db.port } } });
      stops.push(() => front.envoy.stop());
      return { port: front.port, envoyPid: front.envoy.pid, stop };
    }
    if (mode === 'node-relay') {
      const relay = await startNodeRelay(db);
      stops.push(() => terminate(relay.child));
      return { port: relay.port, relayPid: relay.child.pid, stop };
    }
    const grpc = await consecutiveFreePorts(workers);
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    const { proxy, port: tcp } = await MongoplexProcess.pooling(
      db.address,
      o.poolSize,
      { MONGOPLEX_LISTEN_GRPC: `127.0.0.1:${grpc}`, MONGOPLEX_WORKERS: String(workers), ...(taps ? tapSettings(db, stops) : {}) },
      ['--trace-gc-nvp', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
    );
    stops.push(() => proxy.stop());
    if (mode === 'mongoplex-tcp') return { port: tcp, mongoplex: proxy, stop };
    const front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc }, workers } });
    stops.push(() => front.envoy.stop());
    return { port: front.port, mongoplex: proxy, envoyPid: front.envoy.pid, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** One run, one round: its own processes, the load, then the idle phase (first round). */
async function runSpeedMode(run: string, round: number, o: Options, db: FerretDB, idleCounts: number[], profiles: string | undefined, syscalls: boolean): Promise<SpeedResult> {
  // Counted from before the stack starts: mongoplex's pool opens during the warm-up.
  const serverBefore = await db.connections();
  const stack = await startStack(run, db, o, profiles && run.startsWith('mongoplex') ? path.join(profiles, run, String(round)) : undefined);
  try {
    const mongoplexPids = (): number[] => (stack.mongoplex ? processTree(stack.mongoplex.pid!) : []);
    const envoyPids = (): number[] => (stack.envoyPid ? [stack.envoyPid] : []);
    const relayPids = (): number[] => (stack.relayPid ? [stack.relayPid] : []);
    // One unmeasured second first: a process just started spends its first operations compiling.
    await runMode(run, stack.port, db, { ...o, seconds: 1 });
    const traced: Array<[string, number[]]> = syscalls ? [['mongoplex', mongoplexPids()], ['envoy', envoyPids()]] : [];
    const traces = traced.filter(([, p]) => p.length > 0).map(([name, p]) => [name, new SyscallCount(p)] as const);
    let heapBytes = 0;
    const stopCounting = stack.mongoplex?.onStdoutLine((line) => {
      const a = /\ballocated=(\d+)/.exec(line);
      if (a) heapBytes += Number(a[1]);
    });
    const m0 = cpuTime(mongoplexPids());
    const e0 = cpuTime(envoyPids());
    const n0 = cpuTime(relayPids());
    const r = await runMode(run, stack.port, db, o, serverBefore);
    stopCounting?.();
    const m = cpuPerOp(m0, cpuTime(mongoplexPids()), r.ops);
    const e = cpuPerOp(e0, cpuTime(envoyPids()), r.ops);
    const n = cpuPerOp(n0, cpuTime(relayPids()), r.ops);
    const counted: Record<string, unknown> = {};
    for (const [name, t] of traces) counted[name] = await t.perOp(r.ops);
    // After the load, so the garbage of thousands of closed clients is not collected during it.
    // Envoy's tcp_proxy and the relay hold two sockets per client (client and server side): stay under the file limit.
    const fdsPerClient = run === 'envoy-tcp-proxy' || run === 'node-relay' ? 2 : 1;
    const idle = run === 'direct' ? {} : await idleMemory(stack.port, idleCounts.filter((c) => c * fdsPerClient + 500 <= openFileLimit()), { mongoplex: mongoplexPids, envoy: envoyPids, nodeRelay: relayPids });
    return {
      ...r,
      mongoplexCpuUsPerOp: m.usPerOp,
      mongoplexKernelShare: m.kernelShare,
      envoyCpuUsPerOp: e.usPerOp,
      envoyKernelShare: e.kernelShare,
      nodeRelayCpuUsPerOp: n.usPerOp,
      nodeRelayKernelShare: n.kernelShare,
      mongoplexHeapBytesPerOp: r.ops ? Math.round(heapBytes / r.ops) : 0,
      details: { idleKbPerClient: idle, ...(syscalls ? { syscallsPerOp: counted } : {}) },
    };
  } finally {
    await stack.stop();
  }
}

/**
 * Opens idle clients up to each count (each handshaken with `hello`, then silent) and reads
 * every process's resident memory: KB added per client since only one was open.
 */
async function idleMemory(port: number, counts: number[], processes: Record<string, () => number[]>): Promise<Record<string, Record<number, number>>> {
  if (counts.length === 0) return {};
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1000));
  const rss = (): Record<string, number> => Object.fromEntries(Object.entries(processes).map(([k, pids]) => [k, rssKb(pids())]));
  // One client first, so what every process allocates for its first client (pools, buffers) is in the baseline.
  const clients: LoadClient[] = [await handshaken(port)];
  await settle();
  const base = rss();
  const out: Record<string, Record<number, number>> = Object.fromEntries([...Object.keys(processes), 'total'].map((k) => [k, {}]));
  try {
    for (const n of [...counts].sort((a, b) => a - b)) {
      while (clients.length < n + 1) {
        clients.push(...await Promise.all(Array.from({ length: Math.min(200, n + 1 - clients.length) }, () => handshaken(port))));
      }
      await settle();
      const now = rss();
      let total = 0;
      for (const k of Object.keys(processes)) {
        const kb = Number(((now[k]! - base[k]!) / n).toFixed(2));
        out[k]![n] = kb;
        total += kb;
      }
      out.total![n] = Number(total.toFixed(2));
    }
  } finally {
    for (const c of clients) c.destroy();
    await settle();
  }
  return out;
}

/** A client connection handshaken with `hello`, within 10 s (a stuck proxy fails the bench instead of hanging it). */
async function handshaken(port: number): Promise<LoadClient> {
  const c = await LoadClient.connect(port);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      c.command({ hello: 1, helloOk: true, client: { driver: { name: 'mongoplex-bench', version: '0' } }, $db: 'admin' }),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no hello reply within 10 s on port ${port}`)), 10_000))),
    ]);
  } catch (err) {
    c.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return c;
}

/** bench/node-relay.ts in front of the server, as a child process, once it listens (within 10 s). */
async function startNodeRelay(db: FerretDB): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, [path.join(__dirname, 'node-relay.js'), db.host, String(db.port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const { port } = await firstJsonLine<{ port: number }>(child, () => true, (code, signal) => `node-relay ${howItEnded(code, signal)} before it listened`, { ms: 10_000, message: 'node-relay was not listening within 10 s' });
    return { port, child };
  } catch (err) {
    await terminate(child);
    throw err;
  }
}

/** The soft limit on open files this process (and the processes it starts) has. */
function openFileLimit(): number {
  const m = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m ? Number(m[1]) : 1024;
}

/** `strace -c -f` attached to running processes; `perOp` detaches and divides its counts by the operations. */
class SyscallCount {
  private readonly child: ChildProcess;
  private readonly out: string;
  constructor(pids: number[]) {
    this.out = path.join(tmpdir(), `mongoplex-strace-${pids[0]}-${Date.now()}.txt`);
    this.child = spawn('strace', ['-c', '-f', '-o', this.out, ...pids.flatMap((p) => ['-p', String(p)])], { stdio: 'ignore' });
  }

  async perOp(ops: number): Promise<Record<string, number>> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGINT');
    await exited;
    const calls: Record<string, number> = {};
    // "% time  seconds  usecs/call  calls  errors  syscall", then a total line.
    for (const line of readFileSync(this.out, 'utf8').split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 5 || !/^\d/.test(f[0]!)) continue;
      const name = f[f.length - 1]!;
      const count = Number(f[3]);
      if (name !== 'total' && count > 0) calls[name] = Number((count / ops).toFixed(3));
    }
    rmSync(this.out, { force: true });
    const total = Object.values(calls).reduce((a, b) => a + b, 0);
    return { total: Number(total.toFixed(3)), ...Object.fromEntries(Object.entries(calls).sort((a, b) => b[1] - a[1]).slice(0, 10)) };
  }
}

/** The ratios the speed targets are stated in, from one invocation. */
function summary(results: SpeedResult[], idleCounts: number[]): Record<string, unknown> {
  const find = (run: string): SpeedResult | undefined => results.find((r) => r.mode === run);
  const ratio = (a: number | undefined, b: number | undefined): number | null => (a && b ? Number((a / b).toFixed(3)) : null);
  const direct = find('direct');
  const out: Record<string, unknown> = { summary: 'speed' };
  out.opsPerSecVsDirect = Object.fromEntries(results.filter((r) => r !== direct).map((r) => [r.mode, ratio(r.opsPerSec, direct?.opsPerSec)]));
  out.extProcVsTcpMongoplexCpu = ratio(find('mongoplex-ext-proc')?.mongoplexCpuUsPerOp, find('mongoplex-tcp')?.mongoplexCpuUsPerOp);
  out.tcpVsEnvoyTcpProxyCpu = ratio(find('mongoplex-tcp')?.mongoplexCpuUsPerOp, find('envoy-tcp-proxy')?.envoyCpuUsPerOp);
  // What Node itself costs: a relay doing nothing but moving bytes, against Envoy's and mongoplex's.
  out.nodeRelayVsEnvoyTcpProxyCpu = ratio(find('node-relay')?.nodeRelayCpuUsPerOp, find('envoy-tcp-proxy')?.envoyCpuUsPerOp);
  out.tcpVsNodeRelayCpu = ratio(find('mongoplex-tcp')?.mongoplexCpuUsPerOp, find('node-relay')?.nodeRelayCpuUsPerOp);
  // The --workers sweep: each mongoplex mode's ops/s with N workers against its 1-worker run.
  const scaled = results.map((r) => ({ r, run: parseRun(r.mode) })).filter((x) => x.run.workers > 1);
  if (scaled.length > 0) out.opsPerSecVsOneWorker = Object.fromEntries(scaled.map(({ r, run }) => [r.mode, ratio(r.opsPerSec, find(run.mode)?.opsPerSec)]));
  const most = Math.max(...idleCounts, 0);
  const idle = (run: string): Record<string, Record<number, number>> | undefined => ((find(run)?.details as Array<{ idleKbPerClient: Record<string, Record<number, number>> }> | undefined)?.[0]?.idleKbPerClient);
  if (most > 0) out[`idleKbPerClientAt${most}`] = Object.fromEntries(results.filter((r) => r !== direct).map((r) => [r.mode, idle(r.mode)?.total?.[most] ?? null]));
  return out;
}

/** What bench/speed-baseline.json holds: ops/s against direct before the hot-path work, per mode. */
interface Baseline {
  readonly measured: string;
  readonly command: string;
  readonly opsPerSecVsDirect: Record<string, number>;
}

/** One line per speed target: its value, its limit and whether it is met; then what the taps cost, shown. */
function budgetLines(results: SpeedResult[], sum: Record<string, unknown>, idleCounts: number[]): Array<Record<string, unknown>> {
  const baseline = JSON.parse(readFileSync(path.resolve(__dirname, '..', '..', 'bench', 'speed-baseline.json'), 'utf8')) as Baseline;
  const find = (run: string): SpeedResult | undefined => results.find((r) => r.mode === run);
  const most = Math.max(...idleCounts, 0);
  const idleMongoplex = (run: string): number | null => {
    const d = find(run)?.details as Array<{ idleKbPerClient?: Record<string, Record<number, number>> }> | undefined;
    return d?.[0]?.idleKbPerClient?.mongoplex?.[most] ?? null;
  };
  const vsDirect = sum.opsPerSecVsDirect as Record<string, number | null>;
  const check = (budget: string, value: number | null | undefined, limit: number, atMost: boolean): Record<string, unknown> => ({
    budget, value: value ?? null, limit: `${atMost ? '≤' : '≥'} ${limit}`,
    result: value === null || value === undefined ? 'NOT MEASURED' : (atMost ? value <= limit : value >= limit) ? 'PASS' : 'FAIL',
  });
  const lines = [
    check('tcpVsEnvoyTcpProxyCpu', sum.tcpVsEnvoyTcpProxyCpu as number | null, 1.5, true),
    check('extProcVsTcpMongoplexCpu', sum.extProcVsTcpMongoplexCpu as number | null, 1.3, true),
    check(`idleKbPerClientInMongoplexAt${most}: mongoplex-tcp`, idleMongoplex('mongoplex-tcp'), 4, true),
    check(`idleKbPerClientInMongoplexAt${most}: mongoplex-ext-proc`, idleMongoplex('mongoplex-ext-proc'), 8, true),
    ...['mongoplex-tcp', 'mongoplex-ext-proc'].map((m) => check(`opsPerSecVsDirect: ${m} (baseline ${baseline.measured})`, vsDirect[m], baseline.opsPerSecVsDirect[m]!, false)),
  ];
  const costs = results.filter((r) => parseRun(r.mode).taps).map((r) => {
    const plain = find(r.mode.slice(0, -WITH_TAPS.length));
    return {
      cost: `${r.mode}: capture + mirror + access log`,
      cpuUsPerOp: { off: plain?.mongoplexCpuUsPerOp ?? null, on: r.mongoplexCpuUsPerOp },
      heapBytesPerOp: { off: plain?.mongoplexHeapBytesPerOp ?? null, on: r.mongoplexHeapBytesPerOp },
      opsPerSec: { off: plain?.opsPerSec ?? null, on: r.opsPerSec },
    };
  });
  const heap = results.filter((r) => r.mode.startsWith('mongoplex')).map((r) => ({ allocation: r.mode, heapBytesPerOp: r.mongoplexHeapBytesPerOp }));
  return [...lines, ...costs, ...heap];
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Where a function's code lives, coarsely: mongoplex's own folder, a package, a Node module, or V8's pseudo-frames. */
function moduleOf(frame: ProfileNode['callFrame']): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/dist\/(filter\/[^/]+|bench|scripts)\//.exec(url);
  if (own) return own[1]!;
  if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:').split('/')[0]!;
  return url;
}

/** Self time by function and by module across the CPU profiles in `dir` (all rounds), as shares of the sampled time. */
function summariseProfiles(dir: string): Record<string, unknown> {
  const byFunction = new Map<string, number>();
  const byModule = new Map<string, number>();
  let total = 0;
  let idle = 0;
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else if (e.name.endsWith('.cpuprofile')) files.push(path.join(d, e.name));
    }
  };
  walk(dir);
  for (const f of files) {
    const p = JSON.parse(readFileSync(f, 'utf8')) as { nodes: ProfileNode[] };
    for (const n of p.nodes) {
      const hits = n.hitCount ?? 0;
      if (hits === 0) continue;
      total += hits;
      if (n.callFrame.functionName === '(idle)') {
        idle += hits;
        continue;
      }
      const fn = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url ? `${path.basename(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
      byFunction.set(fn, (byFunction.get(fn) ?? 0) + hits);
      const mod = moduleOf(n.callFrame);
      byModule.set(mod, (byModule.get(mod) ?? 0) + hits);
    }
  }
  const busy = total - idle;
  const top = (m: Map<string, number>, n: number): Record<string, number> => Object.fromEntries([...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => [k, Number((v / busy).toFixed(3))]));
  return { files: files.length, dir, busyShare: total ? Number((busy / total).toFixed(3)) : 0, byModule: top(byModule, 15), byFunction: top(byFunction, 25) };
}
