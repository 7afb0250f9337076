import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { renderedDom, screenshot, tableRows, textById } from '../scripts/chromium';
import { FerretDB } from '../scripts/ferretdb';
import { MongoplexProcess, ONE_PROCESS } from '../scripts/mongoplex-process';
import { freePort } from '../scripts/ports';
import { parseModes, printWithRatios, runMode, seedItems, workloadOptions, type Options } from './pool';
import { cpuMs, perOp, runRounds, sideBySideOptions, type ModeResult } from './rounds';

/**
 * `npm run bench -- operations`: what the operator's instruments cost clients, in one
 * invocation — the same workload through mongoplex (TCP ingress) with per-collection
 * statistics and the slow log off, on (the default), and on with an access log of every
 * command. Rounds alternate the order; figures are their means. Then one more, unmeasured
 * `stats-on` run loads the status page in headless chromium under the same load: its figures
 * are compared with /stats and a screenshot is saved under `--out` (default .cache/bench).
 */

const MODES = ['stats-off', 'stats-on', 'stats-and-access-log'] as const;
type Mode = (typeof MODES)[number];

interface OperationsResult extends ModeResult {
  accessLogLines?: number;
}

export async function runOperationsBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...sideBySideOptions(MODES),
      out: { type: 'string', default: path.resolve(__dirname, '..', '..', '.cache', 'bench') },
    },
  });
  const o = workloadOptions(values);
  const modes = parseModes(values.modes, MODES);
  const db = await FerretDB.start();
  const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-bench-operations-'));
  mkdirSync(values.out, { recursive: true });
  let page: unknown;
  try {
    await seedItems(db);
    const rounds = Number(values.rounds);
    const results = await runRounds(modes, rounds, (mode, round) => runOperationsMode(mode, round, o, db, dir));
    printWithRatios(results, 'stats-off', (r, base) => ({ mongoplexCpuPerOpRatio: Number((r.mongoplexCpuUsPerOp / base.mongoplexCpuUsPerOp).toFixed(3)) }));
    // One more, unmeasured run with the browser on the page (chromium would skew the figures).
    await runOperationsMode('stats-on', rounds, o, db, dir, async (admin) => (page = await lookAtStatusPage(admin, values.out, dir)));
    console.log(JSON.stringify({ statusPage: page }));
  } finally {
    await db.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runOperationsMode(mode: Mode, round: number, o: Options, db: FerretDB, dir: string, look?: (admin: number) => Promise<unknown>): Promise<OperationsResult> {
  const admin = await freePort();
  const env: Record<string, string> = { MONGOPLEX_ADMIN_PORT: String(admin) };
  if (mode === 'stats-off') Object.assign(env, { MONGOPLEX_STATS_ENABLED: 'false', MONGOPLEX_LOG_SLOW_MS: '0' });
  if (mode === 'stats-and-access-log') Object.assign(env, { MONGOPLEX_ACCESS_LOG_PATH: path.join(dir, `access-${round}.log`), MONGOPLEX_ACCESS_LOG_MAX_PER_SECOND: '1000000' });
  const { proxy, port: tcp } = await MongoplexProcess.pooling(db.address, o.poolSize, { ...ONE_PROCESS, ...env });
  try {
    const cpu0 = cpuMs(proxy.pid!);
    const running = runMode(mode, tcp, db, o);
    // The page is looked at once the load has run for a while (a few seconds of history).
    const looked = look ? new Promise((r) => setTimeout(r, Math.min(3000, (o.seconds * 1000) / 2))).then(() => look(admin)) : undefined;
    const r = await running;
    await looked;
    const cpu = perOp(cpuMs(proxy.pid!) - cpu0, r.ops);
    const stats = (await (await fetch(`http://127.0.0.1:${admin}/stats`)).json()) as { counters: Record<string, Record<string, number>> };
    const lines = stats.counters['mongoplex.access_log.lines'] ?? {};
    return { ...r, mongoplexCpuUsPerOp: cpu, details: mode === 'stats-and-access-log' ? { accessLogLines: lines } : {} };
  } finally {
    await proxy.stop();
  }
}

/** Loads the status page under load: the figures it shows next to /stats, and a screenshot. */
async function lookAtStatusPage(admin: number, out: string, dir: string): Promise<unknown> {
  const url = `http://127.0.0.1:${admin}/`;
  const dom = await renderedDom(url, path.join(dir, 'chromium-dom'));
  const stats = (await (await fetch(`${url}stats`)).json()) as { clients: number; pools: Array<{ total: number; maxPoolSize: number }>; commandStats: { collections: Array<{ db: string; collection: string; command: string }> } };
  const file = path.join(out, 'status-page.png');
  await screenshot(url, file, path.join(dir, 'chromium-shot'));
  const shown = { clients: textById(dom, 'clients'), upstream: textById(dom, 'upstream'), maxPool: textById(dom, 'maxPool'), rate: textById(dom, 'rate'), p99Ms: textById(dom, 'p99'), top: tableRows(dom, 'collections')[0]?.slice(0, 3) };
  const fromStats = { clients: stats.clients, upstream: stats.pools.reduce((n, p) => n + p.total, 0), maxPool: stats.pools.reduce((n, p) => n + p.maxPoolSize, 0), top: [stats.commandStats.collections[0]?.db, stats.commandStats.collections[0]?.collection, stats.commandStats.collections[0]?.command] };
  const num = (s: string | undefined): number => Number((s ?? '').replace(/,/g, ''));
  const match = num(shown.clients) === fromStats.clients && num(shown.upstream) === fromStats.upstream && num(shown.maxPool) === fromStats.maxPool && JSON.stringify(shown.top) === JSON.stringify(fromStats.top);
  return { screenshot: file, shown, stats: fromStats, match };
}
