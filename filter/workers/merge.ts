/**
 * Adding up what the workers' admin endpoints say, for the primary's admin endpoint.
 *
 * JSON (/stats, /clients, /pools, ...): counts add up; lists are joined, each entry marked with
 * the worker it came from; durations and times (keys ending in Ms or At) take the largest; a
 * few settings every worker has alike (SAME) are shown once; other values that differ are
 * listed per worker.
 */

import { ROW_MEASURE, type CommandStatsRow, type SortKey } from '../traffic/command-stats';

/** Values that are settings, alike in every worker: shown once, not added. */
const SAME: ReadonlySet<string> = new Set(['fraction', 'queueBytes', 'settings', 'timeoutMs', 'target']);

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(v: unknown): v is { [key: string]: Json } {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** `values[i]` came from worker `workers[i]`. */
export function mergeJson(values: Json[], workers: readonly number[], key = ''): Json {
  const present = values.map((v, i) => ({ v, worker: workers[i]! })).filter((e) => e.v !== undefined);
  if (present.length === 0) return null;
  if (SAME.has(key)) return present[0]!.v;
  const all = present.map((e) => e.v);
  if (all.every((v) => typeof v === 'number')) {
    const nums = all as number[];
    return /(Ms|At)$/.test(key) ? Math.max(...nums) : nums.reduce((a, b) => a + b, 0);
  }
  if (all.every((v) => typeof v === 'boolean')) return all.some(Boolean);
  if (all.every(Array.isArray)) return present.flatMap((e) => (e.v as Json[]).map((item) => (isObject(item) ? { worker: e.worker, ...item } : item)));
  if (all.every(isObject)) {
    const keys = new Set(all.flatMap((o) => Object.keys(o as object)));
    const out: { [key: string]: Json } = {};
    for (const k of keys) {
      const field = present.filter((e) => (e.v as { [key: string]: Json })[k] !== undefined);
      out[k] = mergeJson(field.map((e) => (e.v as { [key: string]: Json })[k]!), field.map((e) => e.worker), k);
    }
    return out;
  }
  const distinct = new Set(all.map((v) => JSON.stringify(v)));
  return distinct.size === 1 ? all[0]! : present.map((e) => ({ worker: e.worker, value: e.v }));
}

/**
 * Per-command statistics rows (/stats commandStats, /commands) of the same db, collection,
 * callsite and command, as one row: counts and bytes add up, the mean is weighted by count,
 * the maximum is the largest. Sorted by `sort`, most first.
 */
export function mergeCommandRows(rows: Json[], sort: SortKey = 'count'): Json[] {
  const byKey = new Map<string, { [key: string]: Json }>();
  for (const row of rows) {
    if (!isObject(row)) continue;
    const { worker: _worker, ...r } = row;
    const key = JSON.stringify([r.db, r.collection, r.callsite, r.command]);
    const into = byKey.get(key);
    if (!into) {
      byKey.set(key, r);
      continue;
    }
    const n = Number(into.count) + Number(r.count);
    into.meanMs = n === 0 ? 0 : (Number(into.meanMs) * Number(into.count) + Number(r.meanMs) * Number(r.count)) / n;
    into.maxMs = Math.max(Number(into.maxMs), Number(r.maxMs));
    for (const k of ['errors', 'documents', 'bytesIn', 'bytesOut']) into[k] = Number(into[k]) + Number(r[k]);
    into.count = n;
  }
  const by = ROW_MEASURE[sort];
  return [...byKey.values()].sort((a, b) => by(b as unknown as CommandStatsRow) - by(a as unknown as CommandStatsRow));
}

/** /readyz: ready when every worker is; each reason says whose it is. */
export function mergeReadiness(reports: Array<{ worker: number; body: Json | undefined; error?: string }>): { ready: boolean; reasons: string[]; workers: Json[] } {
  const reasons: string[] = [];
  for (const r of reports) {
    if (r.error !== undefined || !isObject(r.body)) {
      reasons.push(`worker ${r.worker}: ${r.error ?? 'no readiness report'}`);
      continue;
    }
    const own = Array.isArray(r.body.reasons) ? r.body.reasons : [];
    for (const reason of own) reasons.push(`worker ${r.worker}: ${String(reason)}`);
    if (r.body.ready !== true && own.length === 0) reasons.push(`worker ${r.worker}: not ready`);
  }
  return { ready: reasons.length === 0, reasons, workers: reports.map((r) => ({ worker: r.worker, ...(isObject(r.body) ? r.body : { error: r.error ?? null }) })) };
}

/** Fields of a history sample that are levels of one moment or per-second rates: they add up across workers. */
const HISTORY_SUMS = ['clients', 'upstream', 'inUse', 'maxPool', 'waiting', 'commandsPerSecond'] as const;
/** Fields where the workers' largest is the truthful bound (a latency percentile of the union is at most the largest worker's). */
const HISTORY_MAX = ['oldestWaitMs', 'p50Ms', 'p99Ms'] as const;

/** /stats/history: the workers' samples of the same second added up (percentiles: the largest worker's). */
export function mergeHistory(sampleLists: Json[][]): Json[] {
  const bySecond = new Map<number, { [key: string]: Json }>();
  for (const samples of sampleLists) {
    for (const s of samples) {
      if (!isObject(s) || typeof s.t !== 'number') continue;
      const second = Math.floor(s.t / 1000) * 1000;
      const into = bySecond.get(second);
      if (!into) {
        bySecond.set(second, { ...s, t: second });
        continue;
      }
      for (const k of HISTORY_SUMS) into[k] = Number(into[k] ?? 0) + Number(s[k] ?? 0);
      for (const k of HISTORY_MAX) {
        const a = into[k];
        const b = s[k];
        into[k] = typeof a === 'number' && typeof b === 'number' ? Math.max(a, b) : (a ?? b ?? null);
      }
    }
  }
  return [...bySecond.values()].sort((a, b) => (a.t as number) - (b.t as number));
}

/**
 * Prometheus text of several processes as one: samples of the same series (name and labels)
 * add up, which is right for counters, histograms (buckets, sums and counts) and mongoplex's
 * gauges (all of them counts of connections, requests or bytes); `target_info` and other
 * series that are not mongoplex's own are kept once.
 */
export function mergePrometheus(texts: string[]): string {
  const help = new Map<string, string[]>();
  const order: string[] = [];
  const samples = new Map<string, { family: string; value: number; own: boolean }>();
  for (const text of texts) {
    let family = '';
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('#')) {
        const m = /^# (HELP|TYPE) (\S+)/.exec(line);
        if (!m) continue;
        family = m[2]!;
        if (!help.has(family)) {
          help.set(family, []);
          order.push(family);
        }
        const lines = help.get(family)!;
        if (!lines.some((l) => l.startsWith(`# ${m[1]} `))) lines.push(line);
        continue;
      }
      const space = line.lastIndexOf(' ');
      // A sample line: series, value (exporter lines carry no timestamp).
      const series = line.slice(0, space);
      const value = Number(line.slice(space + 1));
      if (!family) {
        family = series.replace(/\{.*$/, '');
        if (!help.has(family)) {
          help.set(family, []);
          order.push(family);
        }
      }
      const seen = samples.get(series);
      const own = family.startsWith('mongoplex_');
      if (!seen) samples.set(series, { family, value, own });
      else if (own) seen.value += value;
    }
  }
  const out: string[] = [];
  for (const family of order) {
    out.push(...help.get(family)!);
    for (const [series, s] of samples) if (s.family === family) out.push(`${series} ${formatValue(s.value)}`);
  }
  return `${out.join('\n')}\n`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
