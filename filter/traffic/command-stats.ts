import { metrics, type Attributes, type ObservableResult } from '@opentelemetry/api';
import { collectionOf, type ForwardedCommand, type TrafficTap } from './taps';
import { batchSize } from '../wire/peek';
import { bucketOf, LATENCY_BUCKETS_MS } from '../telemetry/metrics';

/**
 * Command latencies since the last look, in the histogram buckets (for the status page's
 * percentiles): fixed size, reset at each look.
 */
export class LatencyWindow {
  private readonly counts = new Uint32Array(LATENCY_BUCKETS_MS.length + 1);
  private n = 0;

  record(ms: number): void {
    this.counts[bucketOf(LATENCY_BUCKETS_MS, ms)]!++;
    this.n++;
  }

  /** Count and p50/p99 (each the upper bound of its bucket) since the last call; then starts over. */
  take(): { count: number; p50Ms: number | undefined; p99Ms: number | undefined } {
    const out = { count: this.n, p50Ms: this.quantile(0.5), p99Ms: this.quantile(0.99) };
    this.counts.fill(0);
    this.n = 0;
    return out;
  }

  private quantile(q: number): number | undefined {
    if (this.n === 0) return undefined;
    const want = Math.ceil(q * this.n);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= want) return LATENCY_BUCKETS_MS[i] ?? Infinity;
    }
    return undefined;
  }
}

/** One row of the statistics: a (db, collection, command) or a (callsite, command). */
export interface CommandStatsRow {
  readonly db?: string;
  readonly collection?: string;
  readonly callsite?: string;
  readonly command: string;
  readonly count: number;
  readonly errors: number;
  readonly meanMs: number;
  readonly maxMs: number;
  /** Documents returned in cursor batches (find, aggregate, getMore, listCollections…). */
  readonly documents: number;
  /** Request bytes from the client, reply bytes to it. */
  readonly bytesIn: number;
  readonly bytesOut: number;
}

type SortKey = 'count' | 'errors' | 'time' | 'documents' | 'bytes';

class Entry {
  count = 0;
  errors = 0;
  totalMs = 0;
  maxMs = 0;
  documents = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Label sets for the exported series, made once per row. */
  readonly ok: Attributes;
  readonly failed: Attributes;
  constructor(readonly labels: Record<string, string>) {
    this.ok = { ...labels, result: 'ok' };
    this.failed = { ...labels, result: 'error' };
  }

  add(ms: number, error: boolean, documents: number, bytesIn: number, bytesOut: number): void {
    this.count++;
    if (error) this.errors++;
    this.totalMs += ms;
    if (ms > this.maxMs) this.maxMs = ms;
    this.documents += documents;
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
  }

  row(): CommandStatsRow {
    return {
      ...this.labels, command: this.labels.command!, count: this.count, errors: this.errors,
      meanMs: this.count ? this.totalMs / this.count : 0, maxMs: this.maxMs,
      documents: this.documents, bytesIn: this.bytesIn, bytesOut: this.bytesOut,
    };
  }
}

/** Label value for everything past a table's bound. */
export const OVERFLOW = '_other';
/** Label value for a command that names no collection (or no database). */
export const NONE = '-';

/**
 * A table with at most `max` rows, keyed by up to three label values (a table of two passes ''
 * as the third); past that, new label combinations share one overflow row (every label
 * `_other`), so the number of exported series never grows without bound. Rows are found
 * through one map per label, so counting a command builds no key string.
 */
class BoundedTable {
  private readonly rows = new Map<string, Map<string, Map<string, Entry>>>();
  private count = 0;
  private overflowRow: Entry | undefined;
  constructor(private readonly max: number, private readonly names: readonly string[]) {}

  get(a: string, b: string, c = ''): Entry {
    let byB = this.rows.get(a);
    let byC = byB?.get(b);
    const e = byC?.get(c);
    if (e) return e;
    if (this.count >= this.max) {
      return (this.overflowRow ??= new Entry(Object.fromEntries(this.names.map((n) => [n, OVERFLOW]))));
    }
    if (!byB) this.rows.set(a, (byB = new Map()));
    if (!byC) byB.set(b, (byC = new Map()));
    const values = [a, b, c];
    const created = new Entry(Object.fromEntries(this.names.map((n, i) => [n, values[i]!])));
    byC.set(c, created);
    this.count++;
    return created;
  }

  get size(): number {
    return this.count;
  }

  all(): Entry[] {
    const out: Entry[] = [];
    for (const byB of this.rows.values()) for (const byC of byB.values()) for (const e of byC.values()) out.push(e);
    if (this.overflowRow) out.push(this.overflowRow);
    return out;
  }
}

/**
 * Per-command, per-collection and per-callsite statistics of forwarded commands (the figures
 * Envoy's mongo_proxy keeps): counts, errors, time, documents returned, bytes each way. Bounded
 * tables; exported as OpenTelemetry observable counters (read at collection time, so the
 * per-command cost is a map lookup and a few additions), and as top-N tables on /stats.
 */
export class CommandStats implements TrafficTap {
  readonly active: boolean;
  private readonly collections: BoundedTable;
  private readonly callsites: BoundedTable;
  private readonly stopExport: () => void;
  /** Latencies since the status history last sampled them. */
  readonly window = new LatencyWindow();

  constructor(options: { enabled: boolean; maxEntries: number; maxCallsites: number }) {
    this.active = options.enabled;
    this.collections = new BoundedTable(options.maxEntries, ['db', 'collection', 'command']);
    this.callsites = new BoundedTable(options.maxCallsites, ['callsite', 'command']);
    this.stopExport = this.export();
  }

  forwarded(e: ForwardedCommand): void {
    const ms = e.durationMs;
    this.window.record(ms);
    let documents = 0;
    if (e.replyBody && e.replyInfo?.cursor) {
      try {
        documents = batchSize(e.replyBody) ?? 0;
      } catch {
        // the reply was already read once; a batch that cannot be counted counts as none
      }
    }
    const cmd = e.cmd;
    const bytesIn = e.request.bytes.length;
    this.collections.get(cmd.db ?? NONE, collectionOf(cmd) ?? NONE, cmd.name).add(ms, e.failed, documents, bytesIn, e.replyBytes);
    if (cmd.callsite !== undefined) this.callsites.get(cmd.callsite, cmd.name).add(ms, e.failed, documents, bytesIn, e.replyBytes);
  }

  /** The `limit` busiest rows of each table, by `sort`. */
  top(limit: number, sort: SortKey = 'count'): { collections: CommandStatsRow[]; callsites: CommandStatsRow[]; rows: number; callsiteRows: number } {
    return {
      collections: topRows(this.collections, limit, sort),
      callsites: topRows(this.callsites, limit, sort),
      rows: this.collections.size,
      callsiteRows: this.callsites.size,
    };
  }

  close(): void {
    this.stopExport();
  }

  private export(): () => void {
    const meter = metrics.getMeter('mongoplex');
    const series: Array<[string, string, (t: Entry) => Array<[number, Attributes]>, 'collections' | 'callsites']> = [
      ['mongoplex.collection.commands', 'Forwarded commands by db, collection, command and result (ok, error)', (t) => [[t.count - t.errors, t.ok], [t.errors, t.failed]], 'collections'],
      ['mongoplex.collection.time_spent_ms', 'Milliseconds from forwarding a command to its reply, summed, by db, collection and command', (t) => [[t.totalMs, t.labels]], 'collections'],
      ['mongoplex.collection.documents_returned', 'Documents returned in cursor batches, by db, collection and command', (t) => [[t.documents, t.labels]], 'collections'],
      ['mongoplex.collection.bytes_received', 'Request bytes received from clients, by db, collection and command', (t) => [[t.bytesIn, t.labels]], 'collections'],
      ['mongoplex.collection.bytes_sent', 'Reply bytes sent to clients, by db, collection and command', (t) => [[t.bytesOut, t.labels]], 'collections'],
      ['mongoplex.callsite.commands', 'Forwarded commands whose comment names a callsite, by callsite, command and result', (t) => [[t.count - t.errors, t.ok], [t.errors, t.failed]], 'callsites'],
      ['mongoplex.callsite.time_spent_ms', 'Milliseconds from forwarding to reply, summed, by callsite and command', (t) => [[t.totalMs, t.labels]], 'callsites'],
    ];
    const offs = series.map(([name, description, values, table]) => {
      const counter = meter.createObservableCounter(name, { description });
      const callback = (r: ObservableResult): void => {
        for (const entry of this[table].all()) for (const [v, a] of values(entry)) r.observe(v, a);
      };
      counter.addCallback(callback);
      return () => counter.removeCallback(callback);
    });
    return () => offs.forEach((off) => off());
  }
}

function topRows(table: BoundedTable, limit: number, sort: SortKey): CommandStatsRow[] {
  const measure: Record<SortKey, (e: Entry) => number> = {
    count: (e) => e.count, errors: (e) => e.errors, time: (e) => e.totalMs, documents: (e) => e.documents, bytes: (e) => e.bytesIn + e.bytesOut,
  };
  const by = measure[sort];
  return table.all().sort((a, b) => by(b) - by(a)).slice(0, limit).map((e) => e.row());
}

export const SORT_KEYS: readonly SortKey[] = ['count', 'errors', 'time', 'documents', 'bytes'];

/** The sort keys measured on a row (as /commands shows it): the order several processes' merged rows are put in. */
export const ROW_MEASURE: Record<SortKey, (r: CommandStatsRow) => number> = {
  count: (r) => r.count, errors: (r) => r.errors, time: (r) => r.meanMs * r.count, documents: (r) => r.documents, bytes: (r) => r.bytesIn + r.bytesOut,
};
export type { SortKey };
