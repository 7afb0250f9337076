import { parseArgs } from 'node:util';
import { Long } from 'bson';
import { FerretDB } from '../scripts/ferretdb';
import { freePort } from '../scripts/ports';
import { LoadClient } from './load-client';
import { MongoplexProcess, ONE_PROCESS } from '../scripts/mongoplex-process';
import { startEnvoyFront } from '../scripts/envoy';

/**
 * `npm run bench -- pool`: the same workload against FerretDB directly and through
 * mongoplex, in one invocation. C client connections (raw sockets, each handshaken like a
 * driver connection) of which `busy` at a time run a mix of find-by-_id, inserts and
 * multi-batch finds with getMore. Prints one JSON object per mode.
 */

export interface Options {
  clients: number;
  busy: number;
  seconds: number;
  poolSize: number;
  /**
   * 'mixed': 60% find-by-_id, 30% insert, 10% multi-batch find; 'reads': find-by-_id only;
   * 'ping': forwarded pings, the cheapest server round trip (shows the proxy's own cost);
   * 'small-reads': find-by-_id in a 10-document collection (the cheapest real query on FerretDB).
   */
  mix: 'mixed' | 'reads' | 'ping' | 'small-reads';
}

export interface Result {
  mode: string;
  clients: number;
  busy: number;
  seconds: number;
  upstreamConnections: number;
  ops: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  firstError?: string;
}

const DOCS = 1000;
export const MIXES: ReadonlyArray<Options['mix']> = ['mixed', 'reads', 'ping', 'small-reads'];

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function op(c: LoadClient, mix: Options['mix'], seq: number): Promise<void> {
  const check = (d: Record<string, unknown>): Record<string, unknown> => {
    if (d.ok !== 1) throw new Error(`${String(d.codeName)}: ${String(d.errmsg)}`);
    return d;
  };
  if (mix === 'ping') {
    check(await c.command({ ping: 1, $db: 'admin' }));
    return;
  }
  if (mix === 'small-reads') {
    check(await c.command({ find: 'few', filter: { _id: seq % 10 }, limit: 1, singleBatch: true, $db: 'bench' }));
    return;
  }
  const kind = mix === 'reads' ? 0 : Math.floor(Math.random() * 100);
  if (kind < 60) {
    check(await c.command({ find: 'items', filter: { _id: seq % DOCS }, limit: 1, singleBatch: true, $db: 'bench' }));
  } else if (kind < 90) {
    check(await c.command({ insert: 'writes', documents: [{ seq, at: new Date() }], $db: 'bench' }));
  } else {
    const first = check(await c.command({ find: 'items', filter: { _id: { $lt: 50 } }, batchSize: 10, $db: 'bench' }));
    let id = (first.cursor as { id: Long }).id;
    while (!id.isZero()) {
      const more = check(await c.command({ getMore: id, collection: 'items', batchSize: 10, $db: 'bench' }));
      id = (more.cursor as { id: Long }).id;
    }
  }
}

/**
 * Runs the load on `port`. upstreamConnections is the peak of the server's open connections
 * above `before` (default: the count when the load starts; pass an earlier count to include
 * connections a proxy opened before, e.g. during a warm-up).
 */
export async function runMode(mode: string, port: number, db: FerretDB, o: Options, before?: { open: number }): Promise<Result> {
  before ??= await db.connections();
  const clients: LoadClient[] = [];
  for (let i = 0; i < o.clients; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, o.clients - i) }, async () => {
      const c = await LoadClient.connect(port);
      await c.command({ hello: 1, helloOk: true, client: { driver: { name: 'mongoplex-bench', version: '0' } }, $db: 'admin' });
      return c;
    }));
    clients.push(...batch);
  }
  let peak = 0;
  const sampler = setInterval(() => {
    db.connections().then((s) => { peak = Math.max(peak, s.open - before.open); }, () => undefined);
  }, 100);
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let seq = 0;
  const idle = [...clients];
  const deadline = Date.now() + o.seconds * 1000;
  const started = performance.now();
  await Promise.all(Array.from({ length: o.busy }, async () => {
    while (Date.now() < deadline) {
      // Every operation runs on a different client connection than the last: most are idle.
      const c = idle.splice(Math.floor(Math.random() * idle.length), 1)[0]!;
      const t = performance.now();
      try {
        await op(c, o.mix, seq++);
        latencies.push(performance.now() - t);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
      idle.push(c);
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  clearInterval(sampler);
  const after = await db.connections();
  peak = Math.max(peak, after.open - before.open);
  for (const c of clients) c.destroy();
  latencies.sort((a, b) => a - b);
  const r: Result = {
    mode,
    clients: o.clients,
    busy: o.busy,
    seconds: Number(elapsed.toFixed(2)),
    upstreamConnections: peak,
    ops: latencies.length,
    opsPerSec: Math.round(latencies.length / elapsed),
    p50Ms: Number(percentile(latencies, 50).toFixed(2)),
    p99Ms: Number(percentile(latencies, 99).toFixed(2)),
    errors,
  };
  if (firstError) r.firstError = firstError;
  return r;
}

const MODES = ['direct', 'envoy-tcp-proxy', 'mongoplex-tcp', 'mongoplex-envoy-sidecar', 'mongoplex-envoy-ext-proc'] as const;
type Mode = (typeof MODES)[number];

export async function runPoolBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      clients: { type: 'string', default: '1000' },
      busy: { type: 'string', default: '50' },
      seconds: { type: 'string', default: '10' },
      'pool-size': { type: 'string', default: '8' },
      mix: { type: 'string', default: 'mixed' },
      modes: { type: 'string', default: MODES.join(',') },
    },
  });
  const o = workloadOptions(values);
  const modes = parseModes(values.modes, MODES);
  const db = await FerretDB.start();
  const stops: Array<() => Promise<void>> = [() => db.stop()];
  try {
    await seedItems(db);
    const results: Result[] = [];
    for (const mode of modes) {
      const port = await startMode(mode, db, o, stops);
      results.push(await runMode(mode, port, db, o));
    }
    printWithRatios(results, 'direct', (r, base) => ({ upstreamConnectionsRatio: Number((r.upstreamConnections / base.upstreamConnections).toFixed(4)) }));
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}

/** The workload options every load benchmark shares, checked. */
export function workloadOptions(values: { clients: string; busy: string; seconds: string; 'pool-size': string; mix: string }): Options {
  const o: Options = { clients: Number(values.clients), busy: Number(values.busy), seconds: Number(values.seconds), poolSize: Number(values['pool-size']), mix: values.mix as Options['mix'] };
  if (!(o.clients > 0 && o.busy > 0 && o.busy <= o.clients && o.seconds > 0 && o.poolSize > 0) || !MIXES.includes(o.mix)) {
    throw new Error(`options: --clients N --busy M (M <= N) --seconds S --pool-size P (all positive) --mix ${MIXES.join('|')} --modes a,b,...`);
  }
  return o;
}

/** `--modes a,b` checked against the benchmark's modes. */
export function parseModes<M extends string>(list: string, known: readonly M[]): M[] {
  const modes = list.split(',') as M[];
  for (const m of modes) if (!known.includes(m)) throw new Error(`unknown mode '${m}' (known: ${known.join(', ')})`);
  return modes;
}

/** One JSON line per mode, then one per mode with its ratios to the `baseline` mode (plus `extra` ratios). */
export function printWithRatios<R extends Result>(results: R[], baseline: string, extra: (r: R, base: R) => Record<string, number> = () => ({})): void {
  for (const r of results) console.log(JSON.stringify(r));
  const base = results.find((r) => r.mode === baseline) ?? results[0]!;
  for (const r of results) {
    if (r === base) continue;
    console.log(JSON.stringify({
      mode: r.mode,
      vs: base.mode,
      opsPerSecRatio: Number((r.opsPerSec / base.opsPerSec).toFixed(3)),
      p50Ratio: Number((r.p50Ms / base.p50Ms).toFixed(3)),
      p99Ratio: Number((r.p99Ms / base.p99Ms).toFixed(3)),
      ...extra(r, base),
    }));
  }
}

/** The documents the workload reads (`bench.items`, ids 0..DOCS-1). */
export async function seedItems(db: FerretDB): Promise<void> {
  const seed = await LoadClient.connect(db.port);
  for (let i = 0; i < DOCS; i += 500) {
    await seed.command({ insert: 'items', documents: Array.from({ length: 500 }, (_, k) => ({ _id: i + k, v: 'x'.repeat(100) })), $db: 'bench' });
  }
  await seed.command({ insert: 'few', documents: Array.from({ length: 10 }, (_, k) => ({ _id: k, v: 'x'.repeat(100) })), $db: 'bench' });
  seed.destroy();
}

/** Starts what a mode needs (mongoplex in its own process, a real Envoy); returns the port clients dial. */
async function startMode(mode: Mode, db: FerretDB, o: Options, stops: Array<() => Promise<void>>): Promise<number> {
  if (mode === 'direct') return db.port;
  if (mode === 'envoy-tcp-proxy') {
    const front = await startEnvoyFront({ ingress: { kind: 'tcp_proxy', upstream: { host: db.host, port: db.port } } });
    stops.push(() => front.envoy.stop());
    return front.port;
  }
  const grpc = await freePort();
  const { proxy, port: tcp } = await MongoplexProcess.pooling(db.address, o.poolSize, { ...ONE_PROCESS, MONGOPLEX_LISTEN_GRPC: `127.0.0.1:${grpc}` });
  stops.push(() => proxy.stop());
  if (mode === 'mongoplex-tcp') return tcp;
  const front = await startEnvoyFront({
    ingress: mode === 'mongoplex-envoy-sidecar' ? { kind: 'sidecar', filterTcp: { host: '127.0.0.1', port: tcp } } : { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } },
  });
  stops.push(() => front.envoy.stop());
  return front.port;
}
