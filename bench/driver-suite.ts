import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { FerretDB } from '../scripts/ferretdb';
import { MongoplexProcess } from '../scripts/mongoplex-process';
import { consecutiveFreePorts } from '../scripts/ports';
import { startEnvoyFront } from '../scripts/envoy';

/**
 * `npm run bench -- driver-suite`: pymongo's own test suite (the release scripts/install-drivers.sh
 * pins, with the test tree of the same release: scripts/install-pymongo-suite.sh) against
 * FerretDB directly, through mongoplex's TCP ingress and through Envoy ext_proc — each path with
 * a FerretDB of its own. Prints one JSON line per path (counts by outcome), one per test whose
 * outcome differs from direct (with each path's message), and a summary that groups the
 * differences by their first message. Not part of CI: it takes long.
 *
 * Options: `--paths direct,tcp,envoy`, `--files test_collection.py,...` (default: every sync
 * test file, pytest marker `default`), `--minutes N` per path (the run is killed after it).
 */

type Path = 'direct' | 'tcp' | 'envoy';
const PATHS: readonly Path[] = ['direct', 'tcp', 'envoy'];
const ROOT = path.resolve(__dirname, '..', '..');
const RESULTS = path.join(ROOT, '.cache', 'pymongo-suite', 'results');

/**
 * Tests left out of every path, with why: each would end the whole pytest session on
 * FerretDB, so nothing after it would run.
 */
const DESELECTED: Record<string, string> = {
  // It arms SIGALRM for a $where query that takes 1.5 s; FerretDB refuses $where at once, so the
  // alarm raises KeyboardInterrupt during whichever test runs next, and pytest stops there.
  'test/test_client.py::TestClient::test_interrupt_signal': 'its SIGALRM outlives it on FerretDB and interrupts the session',
};

type Outcome = 'passed' | 'failed' | 'error' | 'skipped';
interface Result {
  readonly outcome: Outcome;
  readonly message: string;
}

function unescapeXml(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&#10;/g, ' ').replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n))).replace(/&amp;/g, '&');
}

function attribute(tag: string, name: string): string {
  const m = new RegExp(`\\s${name}="([^"]*)"`).exec(tag);
  return m ? unescapeXml(m[1]!) : '';
}

/** pytest's JUnit XML: test id (`class::name`) → outcome and the first line of its message. */
export function parseJunit(xml: string): Map<string, Result> {
  const results = new Map<string, Result>();
  const testcase = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (let m = testcase.exec(xml); m; m = testcase.exec(xml)) {
    const tag = m[1]!;
    const body = m[3] ?? '';
    const child = /<(failure|error|skipped)\b([^>]*?)\/?>/.exec(body);
    const outcome: Outcome = child ? (child[1] === 'failure' ? 'failed' : (child[1] as Outcome)) : 'passed';
    const message = child ? attribute(child[2]!, 'message').split('\n')[0]!.slice(0, 300) : '';
    results.set(`${attribute(tag, 'classname')}::${attribute(tag, 'name')}`, { outcome, message });
  }
  return results;
}

/** The test paths pytest is given: the listed files, else the whole tree (marker `default` keeps the sync tests). */
function testFiles(files: string | undefined): string[] {
  return files ? files.split(',').map((f) => path.join('test', f)) : ['test'];
}

/** pytest on one path; its report goes to `xml`, what it prints to `log`. */
function runPytest(python: string, suite: string, port: number, xml: string, log: string, files: string[], minutes: number): Promise<number | null> {
  return new Promise((resolve) => {
    const out = openSync(log, 'w');
    const child = spawn(python, ['-m', 'pytest', ...files, '-p', 'no:cacheprovider', '-q', '-o', 'addopts=', '-m', 'default', '-o', 'faulthandler_timeout=300', ...Object.keys(DESELECTED).flatMap((t) => ['--deselect', t]), `--junitxml=${xml}`], {
      cwd: suite,
      env: { ...process.env, DB_IP: '127.0.0.1', DB_PORT: String(port) },
      stdio: ['ignore', out, out],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), minutes * 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      closeSync(out);
      resolve(code);
    });
  });
}

/** One path's stack: FerretDB, and mongoplex (and Envoy) in front of it. */
async function withPath<T>(via: Path, f: (port: number) => Promise<T>): Promise<T> {
  const db = await FerretDB.start();
  const stops: Array<() => Promise<void>> = [() => db.stop()];
  try {
    if (via === 'direct') return await f(db.port);
    const first = await consecutiveFreePorts(3);
    const [port, grpc, admin] = [first, first + 1, first + 2];
    const mongoplex = await MongoplexProcess.start({
      MONGOPLEX_UPSTREAM_SERVERS: db.address,
      MONGOPLEX_LISTEN_PORT: String(port),
      MONGOPLEX_LISTEN_GRPC: `127.0.0.1:${grpc}`,
      MONGOPLEX_ADMIN_PORT: String(admin),
      MONGOPLEX_WORKERS: '1',
      MONGOPLEX_LOG_LEVEL: 'error',
    });
    stops.unshift(() => mongoplex.stop());
    if (via === 'tcp') return await f(port);
    const front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
    stops.unshift(() => front.envoy.stop());
    return await f(front.port);
  } finally {
    for (const stop of stops) await stop().catch(() => undefined);
  }
}

export async function runDriverSuite(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      paths: { type: 'string', default: PATHS.join(',') },
      files: { type: 'string' },
      minutes: { type: 'string', default: '40' },
    },
  });
  const paths = values.paths.split(',') as Path[];
  if (paths.some((p) => !PATHS.includes(p)) || !paths.includes('direct')) throw new Error('--paths: some of direct,tcp,envoy, with direct (the baseline)');
  const [python, suite] = execFileSync('bash', [path.join(ROOT, 'scripts', 'install-pymongo-suite.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split(' ') as [string, string];
  rmSync(RESULTS, { recursive: true, force: true });
  mkdirSync(RESULTS, { recursive: true });
  const files = testFiles(values.files);
  const results = new Map<Path, Map<string, Result>>();
  for (const via of paths) {
    const started = Date.now();
    const xml = path.join(RESULTS, `${via}.xml`);
    const log = path.join(RESULTS, `${via}.log`);
    const code = await withPath(via, (port) => runPytest(python, suite, port, xml, log, files, Number(values.minutes)));
    let parsed = new Map<string, Result>();
    try {
      parsed = parseJunit(readFileSync(xml, 'utf8'));
    } catch {
      // no report: the run was killed or pytest could not start; the counts say 0
    }
    results.set(via, parsed);
    const counts: Record<Outcome, number> = { passed: 0, failed: 0, error: 0, skipped: 0 };
    for (const r of parsed.values()) counts[r.outcome]++;
    console.log(JSON.stringify({ path: via, exitCode: code, seconds: Math.round((Date.now() - started) / 1000), tests: parsed.size, ...counts, report: xml, log }));
  }
  const direct = results.get('direct')!;
  const byCause = new Map<string, number>();
  let differing = 0;
  for (const [id, base] of direct) {
    const others = paths.filter((p) => p !== 'direct').map((p) => [p, results.get(p)!.get(id)] as const);
    if (others.every(([, r]) => r?.outcome === base.outcome)) continue;
    differing++;
    const line: Record<string, unknown> = { test: id, direct: `${base.outcome}${base.message ? `: ${base.message}` : ''}` };
    for (const [p, r] of others) line[p] = r ? `${r.outcome}${r.message ? `: ${r.message}` : ''}` : 'missing';
    console.log(JSON.stringify(line));
    const proxied = others.find(([, r]) => r && r.outcome !== base.outcome)?.[1];
    const cause = `${base.outcome} → ${proxied?.outcome ?? 'missing'}: ${(proxied?.message || base.message).replace(/\d+/g, 'N').slice(0, 120)}`;
    byCause.set(cause, (byCause.get(cause) ?? 0) + 1);
  }
  const causes = [...byCause].sort((a, b) => b[1] - a[1]).map(([cause, tests]) => ({ cause, tests }));
  console.log(JSON.stringify({ summary: 'driver-suite', driver: `pymongo ${path.basename(suite).replace('pymongo-', '')}`, date: new Date().toISOString().slice(0, 10), testsDirect: direct.size, differing, causes, deselected: DESELECTED }));
}
