import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Binary, BSON, Long, UUID, type Document } from 'bson';
import { ServerAddress } from '../upstream/address';
import { UpstreamConnection } from '../upstream/connection';
import { newRequestId } from '../wire/header';
import { encodeOpMsg, MsgFlag, parseOpMsg } from '../wire/opmsg';
import { readReply } from '../wire/peek';
import { readCapture, type CaptureRecord } from './format';
import { portableBody } from './portable';
import { writesThroughPipeline } from './taps';

/**
 * `mongoplex replay`: sends a capture's commands to another server, one connection per
 * recorded client connection, each connection's commands in their recorded order — at the
 * recorded pace (`speed` 1), faster (`speed` N) or back to back — and compares what comes
 * back with what was recorded.
 */

export interface ReplayOptions {
  readonly files: readonly string[];
  /** host:port of the server to replay against. */
  readonly target: string;
  /** Pace multiplier; Infinity: as fast as possible. */
  readonly speed: number;
  readonly readsOnly: boolean;
  readonly connectTimeoutMs: number;
  /** Called often with (done, total, errors) while the replay runs. */
  readonly onProgress?: (done: number, total: number, differences: number) => void;
}

/** Commands that change data or schema: skipped by `--reads-only`. */
const WRITES = new Set([
  'insert', 'update', 'delete', 'findandmodify', 'bulkwrite', 'create', 'drop', 'dropdatabase', 'createindexes',
  'dropindexes', 'renamecollection', 'collmod', 'committransaction', 'aborttransaction', 'applyops',
]);
const TXN_FIELDS = ['txnNumber', 'autocommit', 'startTransaction', 'recoveryToken'];

export interface LatencySummary {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

export interface GroupReport {
  readonly count: number;
  readonly skipped: number;
  readonly recordedMs: LatencySummary;
  readonly replayedMs: LatencySummary;
  /** Commands whose replayed result code differs from the recorded one (0 = ok). */
  readonly errorCodeDifferences: number;
  /** "recorded→replayed" code pairs that differed, with counts. */
  readonly codeChanges: Record<string, number>;
  readonly replyBytes: { readonly recorded: number; readonly replayed: number; readonly differing: number };
}

export interface ReplayReport {
  readonly target: string;
  readonly files: readonly string[];
  readonly speed: number | 'max';
  readonly readsOnly: boolean;
  readonly connections: number;
  readonly records: number;
  readonly replayed: number;
  readonly skipped: number;
  /** Seconds the capture spanned, and the replay took. */
  readonly recordedSeconds: number;
  readonly replaySeconds: number;
  readonly total: GroupReport;
  readonly byCommand: Record<string, GroupReport>;
  readonly byCollection: Record<string, GroupReport>;
}

interface Outcome {
  readonly record: CaptureRecord;
  readonly skipped: boolean;
  readonly ms: number;
  /** 0 for ok, else the error code (-1: no reply / network error). */
  readonly code: number;
  readonly replyBytes: number;
}

/** `mongodb://host:port[/db][?options]` or `host:port` → host:port; anything this replay cannot honour is refused by name. */
export function replayTarget(uri: string): string {
  if (uri.startsWith('mongodb+srv://')) throw new Error('mongodb+srv:// targets are not supported: give mongodb://host:port');
  const m = /^mongodb:\/\/(?:([^@/]*)@)?([^/?]+)(?:[/?].*)?$/.exec(uri);
  const hosts = m ? m[2]! : uri;
  if (m?.[1] !== undefined) throw new Error('the target has credentials: replay does not authenticate yet (replay against a server without access control, or through a mongoplex in front of it)');
  if (hosts.includes(',')) throw new Error(`the target names several hosts (${hosts}): give the one server to replay against`);
  return ServerAddress.parse(hosts.includes(':') ? hosts : `${hosts}:27017`).toString();
}

export async function loadRecords(files: readonly string[]): Promise<CaptureRecord[]> {
  const records: CaptureRecord[] = [];
  for (const file of files) {
    for await (const item of readCapture(file)) if ('body' in item) records.push(item);
  }
  return records;
}

export async function replay(options: ReplayOptions): Promise<ReplayReport> {
  const records = await loadRecords(options.files);
  const byConn = new Map<number, CaptureRecord[]>();
  for (const r of records) {
    let list = byConn.get(r.conn);
    if (!list) byConn.set(r.conn, (list = []));
    list.push(r);
  }
  for (const list of byConn.values()) list.sort((a, b) => a.t - b.t);
  const t0 = records.reduce((m, r) => Math.min(m, r.t), Infinity);
  const tEnd = records.reduce((m, r) => Math.max(m, r.t + r.ms), 0);
  const state = new ReplayState(options);
  const started = performance.now();
  const ticker = options.onProgress && setInterval(() => options.onProgress!(state.outcomes.length, records.length, state.differences), 200);
  try {
    await Promise.all([...byConn.values()].map((list) => state.replayConnection(list, started, t0)));
  } finally {
    if (ticker) clearInterval(ticker);
    options.onProgress?.(state.outcomes.length, records.length, state.differences);
  }
  const outcomes = state.outcomes;
  const group = (key: (o: Outcome) => string): Record<string, GroupReport> => {
    const m = new Map<string, Outcome[]>();
    for (const o of outcomes) {
      const k = key(o);
      let l = m.get(k);
      if (!l) m.set(k, (l = []));
      l.push(o);
    }
    return Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)).map(([k, l]) => [k, summarize(l)]));
  };
  return {
    target: options.target,
    files: options.files,
    speed: Number.isFinite(options.speed) ? options.speed : 'max',
    readsOnly: options.readsOnly,
    connections: byConn.size,
    records: records.length,
    replayed: outcomes.filter((o) => !o.skipped).length,
    skipped: outcomes.filter((o) => o.skipped).length,
    recordedSeconds: records.length ? (tEnd - t0) / 1000 : 0,
    replaySeconds: (performance.now() - started) / 1000,
    total: summarize(outcomes),
    byCommand: group((o) => o.record.cmd),
    byCollection: group((o) => (o.record.coll === undefined ? `${o.record.db} (no collection)` : `${o.record.db}.${o.record.coll}`)),
  };
}

class ReplayState {
  readonly outcomes: Outcome[] = [];
  differences = 0;
  /** Recorded `server/cursorId` → the id the replayed command returned. */
  private readonly cursors = new Map<string, bigint>();
  /** Recorded lsid (hex) → the lsid used in the replay (fresh, so transaction numbers start clean). */
  private readonly sessions = new Map<string, Binary>();

  constructor(private readonly options: ReplayOptions) {}

  async replayConnection(records: CaptureRecord[], started: number, t0: number): Promise<void> {
    let conn: UpstreamConnection | undefined;
    try {
      for (const r of records) {
        if (Number.isFinite(this.options.speed)) {
          const due = started + (r.t - t0) / this.options.speed;
          const wait = due - performance.now();
          if (wait > 1) await new Promise((res) => setTimeout(res, wait));
        }
        const request = this.prepare(r);
        if (!request) {
          this.outcomes.push({ record: r, skipped: true, ms: 0, code: 0, replyBytes: 0 });
          continue;
        }
        const sentAt = performance.now();
        let code = -1;
        let replyBytes = 0;
        const moreToCome = (r.flags & MsgFlag.moreToCome) !== 0;
        try {
          conn ??= await UpstreamConnection.connect(ServerAddress.parse(this.options.target), {
            connectTimeoutMs: this.options.connectTimeoutMs, appName: 'mongoplex-replay', compressors: [], via: undefined,
          });
          const reply = await conn.request(request, { compressible: false, moreToCome });
          if (reply) {
            replyBytes = reply.bytes.length;
            const info = readReply(parseOpMsg(reply).body);
            code = info.ok ? 0 : (info.code ?? -1);
            if (r.cursorId !== undefined && info.cursor?.id !== undefined) this.cursors.set(`${r.server}/${r.cursorId}`, info.cursor.id);
          } else code = 0;
        } catch {
          if (conn?.closed) conn = undefined;
        }
        const recordedCode = r.ok || moreToCome ? 0 : (r.code ?? -1);
        if (recordedCode !== code) this.differences++;
        this.outcomes.push({ record: r, skipped: false, ms: performance.now() - sentAt, code, replyBytes });
      }
    } finally {
      conn?.close('pool_closed', 'replay finished');
    }
  }

  /** The recorded command as it goes to the target; undefined: skipped (`--reads-only`). */
  private prepare(r: CaptureRecord): Buffer | undefined {
    const name = r.cmd.toLowerCase();
    const readsOnly = this.options.readsOnly;
    if (readsOnly && (WRITES.has(name) || (name === 'aggregate' && writesThroughPipeline(r.body)))) return undefined;
    const doc = BSON.deserialize(portableBody(r.body), { promoteValues: false, bsonRegExp: true });
    if (readsOnly) for (const f of TXN_FIELDS) delete doc[f]; // a transaction's reads run on their own
    const lsid = doc.lsid as Document | undefined;
    if (lsid?.id instanceof Binary) {
      const key = lsid.id.toString('hex');
      let replayed = this.sessions.get(key);
      if (!replayed) this.sessions.set(key, (replayed = new UUID(randomUUID()).toBinary()));
      doc.lsid = { ...lsid, id: replayed };
    }
    const remap = (id: unknown): unknown => {
      const v = id instanceof Long ? id.toBigInt() : undefined;
      const mapped = v === undefined ? undefined : this.cursors.get(`${r.server}/${v}`);
      return mapped === undefined ? id : Long.fromBigInt(mapped);
    };
    if (name === 'getmore') doc.getMore = remap(doc.getMore);
    if (name === 'killcursors' && Array.isArray(doc.cursors)) doc.cursors = doc.cursors.map(remap);
    return encodeOpMsg(newRequestId(), 0, BSON.serialize(doc), r.flags & MsgFlag.moreToCome, r.seqs.map((s) => ({ identifier: s.identifier, documents: [...s.documents] })));
  }
}

function percentiles(values: number[]): LatencySummary {
  if (values.length === 0) return { p50: 0, p95: 0, p99: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => round(s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: round(s[s.length - 1]!) };
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}

function summarize(outcomes: Outcome[]): GroupReport {
  const done = outcomes.filter((o) => !o.skipped);
  const codeChanges: Record<string, number> = {};
  let errorCodeDifferences = 0;
  let differing = 0;
  let recordedBytes = 0;
  let replayedBytes = 0;
  for (const o of done) {
    const moreToCome = (o.record.flags & MsgFlag.moreToCome) !== 0;
    const recorded = o.record.ok || moreToCome ? 0 : (o.record.code ?? -1);
    if (recorded !== o.code) {
      errorCodeDifferences++;
      const k = `${recorded}→${o.code}`;
      codeChanges[k] = (codeChanges[k] ?? 0) + 1;
    }
    recordedBytes += o.record.replyBytes;
    replayedBytes += o.replyBytes;
    if (o.record.replyBytes !== o.replyBytes) differing++;
  }
  return {
    count: outcomes.length,
    skipped: outcomes.length - done.length,
    recordedMs: percentiles(done.map((o) => o.record.ms)),
    replayedMs: percentiles(done.map((o) => o.ms)),
    errorCodeDifferences,
    codeChanges,
    replyBytes: { recorded: recordedBytes, replayed: replayedBytes, differing },
  };
}

/** The report as a person reads it: totals, then one line per command and per collection. */
export function formatReport(r: ReplayReport): string {
  const lines: string[] = [];
  lines.push(`replayed ${r.replayed} of ${r.records} commands (${r.skipped} skipped) from ${r.connections} connections against ${r.target}`);
  lines.push(`capture spanned ${r.recordedSeconds.toFixed(2)} s; replay took ${r.replaySeconds.toFixed(2)} s at speed ${r.speed}`);
  lines.push(`error-code differences: ${r.total.errorCodeDifferences}${r.total.errorCodeDifferences ? ` (${Object.entries(r.total.codeChanges).map(([k, n]) => `${k}: ${n}`).join(', ')})` : ''}`);
  const table = (title: string, groups: Record<string, GroupReport>): void => {
    lines.push('', `${title.padEnd(28)} ${'count'.padStart(6)} ${'recorded p50/p95/p99 ms'.padStart(26)} ${'replayed p50/p95/p99 ms'.padStart(26)} ${'code diffs'.padStart(10)} ${'size diffs'.padStart(10)}`);
    for (const [k, g] of Object.entries(groups)) {
      const p = (l: LatencySummary): string => `${l.p50.toFixed(2)}/${l.p95.toFixed(2)}/${l.p99.toFixed(2)}`;
      lines.push(`${k.slice(0, 28).padEnd(28)} ${String(g.count).padStart(6)} ${p(g.recordedMs).padStart(26)} ${p(g.replayedMs).padStart(26)} ${String(g.errorCodeDifferences).padStart(10)} ${String(g.replyBytes.differing).padStart(10)}`);
    }
  };
  table('command', r.byCommand);
  table('collection', r.byCollection);
  return lines.join('\n');
}

/** A progress bar on a terminal; a line every few seconds otherwise. */
export function progressPrinter(stream: NodeJS.WriteStream): (done: number, total: number, differences: number) => void {
  let lastLine = 0;
  let finished = false;
  return (done, total, differences) => {
    if (finished) return;
    finished = done === total;
    const pct = total ? Math.floor((done / total) * 100) : 100;
    if (stream.isTTY) {
      const width = 30;
      const filled = Math.round((pct / 100) * width);
      stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(pct).padStart(3)}% ${done}/${total} commands, ${differences} code differences${done === total ? '\n' : ''}`);
    } else if (done === total || Date.now() - lastLine > 5000) {
      lastLine = Date.now();
      stream.write(`replay: ${pct}% (${done}/${total} commands, ${differences} code differences)\n`);
    }
  };
}

export function writeJsonReport(file: string, report: ReplayReport): void {
  const text = JSON.stringify(report, null, 2);
  if (file === '-') process.stdout.write(`${text}\n`);
  else writeFileSync(file, text);
}
