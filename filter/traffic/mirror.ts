import { BSON, Long } from 'bson';
import { LogLimiter, type Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import { ServerAddress } from '../upstream/address';
import type { UpstreamConnection } from '../upstream/connection';
import { UpstreamPool } from '../upstream/pool';
import { newRequestId, readHeader, type WireMessage } from '../wire/header';
import { encodeOpMsg, parseOpMsg } from '../wire/opmsg';
import { readReply } from '../wire/peek';
import { portableBody, replyDigest } from './portable';
import { collectionOf, NamespaceFilter, writesThroughPipeline, type ForwardedCommand, type TrafficTap } from './taps';

/** `mirror.*` settings. */
export interface MirrorSettings {
  /** The shadow server (host:port); null: no mirroring. */
  readonly target: string | null;
  /** Fraction of eligible reads sent to the shadow. */
  readonly fraction: number;
  readonly namespaces: readonly string[];
  /** Connections to the shadow (and so reads in flight there). */
  readonly poolSize: number;
  /** Reads waiting for the shadow; more are dropped and counted. */
  readonly maxQueue: number;
  /** Bytes those waiting reads may hold (request + the primary's reply). */
  readonly queueBytes: number;
  /** A shadow read (connect included) not answered in this long is dropped, its connection closed. */
  readonly timeoutMs: number;
}

/** Reads the mirror copies; aggregate only without $out/$merge. Never inside a transaction. */
const MIRRORED = new Set(['find', 'aggregate', 'count', 'distinct']);
/** Namespaces tracked one by one in the differences table; the rest are summed as `(other)`. */
const MAX_NAMESPACES = 1000;

interface Mirrored {
  readonly request: Buffer;
  readonly primaryReply: Buffer;
  readonly ns: string;
  readonly db: string;
  readonly size: number;
}

export interface MirrorStatus {
  readonly target: string | null;
  readonly fraction: number;
  readonly sent: number;
  readonly matched: number;
  readonly differed: number;
  readonly dropped: Record<string, number>;
  readonly queued: number;
  readonly queuedBytes: number;
  readonly inFlight: number;
  readonly namespaces: Record<string, { matched: number; differed: number }>;
}

/**
 * Sends a fraction of the reads clients make to a shadow server, after the client has its
 * reply from the primary path, and compares the two replies by digest. The client's path only
 * copies the request and the reply into a bounded queue (dropping and counting when it is full);
 * a slow or stopped shadow fills the queue, never a client's wait.
 */
export class Mirror implements TrafficTap {
  readonly active: boolean;
  private readonly pool: UpstreamPool | undefined;
  private readonly filter: NamespaceFilter;
  private queue: Mirrored[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private sent = 0;
  private matched = 0;
  private differed = 0;
  private readonly dropped: Record<string, number> = {};
  private readonly byNamespace = new Map<string, { matched: number; differed: number }>();
  private readonly logs = new LogLimiter(5, 60_000);
  /** After a failed or timed-out shadow read, reads are dropped at once until then (one probe per period). */
  private unavailableUntil = 0;
  private closed = false;

  constructor(private readonly settings: MirrorSettings, connect: { appName: string; connectTimeoutMs: number }, private readonly log: Logger) {
    this.filter = new NamespaceFilter(settings.namespaces);
    this.active = settings.target !== null && settings.fraction > 0;
    if (settings.target !== null) {
      this.pool = new UpstreamPool(ServerAddress.parse(settings.target), {
        maxPoolSize: settings.poolSize, minPoolSize: 0, maxConnecting: settings.poolSize, maxIdleTimeMs: 60_000,
        waitQueueTimeoutMs: settings.timeoutMs, maxWaitQueueSize: settings.poolSize,
        connectTimeoutMs: Math.min(settings.timeoutMs, connect.connectTimeoutMs), appName: `${connect.appName}-mirror`, compressors: [], via: undefined,
      });
    }
  }

  forwarded(e: ForwardedCommand): void {
    if (this.closed || !e.replyBody || e.cmd.inTransaction) return;
    if (!MIRRORED.has(e.cmd.name.toLowerCase())) return;
    const collection = collectionOf(e.cmd);
    if (!this.filter.matches(e.cmd.db, collection)) return;
    if (this.settings.fraction < 1 && Math.random() >= this.settings.fraction) return;
    if (e.cmd.name.toLowerCase() === 'aggregate' && writesThroughPipeline(e.forwarded)) return;
    if (this.unavailableUntil > performance.now()) return this.drop('shadow_unavailable');
    const size = e.forwarded.length + e.replyBody.length;
    if (this.queue.length >= this.settings.maxQueue || this.queuedBytes + size > this.settings.queueBytes) return this.drop('queue_full');
    this.queue.push({ request: Buffer.from(e.forwarded), primaryReply: Buffer.from(e.replyBody), ns: `${e.cmd.db}.${collection ?? ''}`, db: e.cmd.db ?? 'admin', size });
    this.queuedBytes += size;
    this.pump();
  }

  private pump(): void {
    while (this.inFlight < this.settings.poolSize && this.queue.length > 0) {
      const item = this.queue.shift()!;
      this.queuedBytes -= item.size;
      this.inFlight++;
      void this.send(item).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private drop(reason: string): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
    Metrics.mirrorRequests.add(1, { result: `dropped_${reason}` });
  }

  private async send(item: Mirrored): Promise<void> {
    let conn: UpstreamConnection;
    try {
      conn = await this.pool!.checkOut();
    } catch (err) {
      return this.failed(err as Error, /timed out/.test((err as Error).message));
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      conn.close('timeout', `mirror: no reply within ${this.settings.timeoutMs} ms`);
    }, this.settings.timeoutMs);
    try {
      const reply = await conn.request(portableRequest(item.request), { compressible: false, moreToCome: false });
      this.sent++;
      const body = parseOpMsg(reply as WireMessage).body;
      this.compare(item, body);
      const cursor = readReply(body).cursor;
      if (cursor?.id && cursor.id !== 0n) {
        const coll = cursor.ns?.slice(cursor.ns.indexOf('.') + 1) ?? '';
        await conn.request(encodeOpMsg(newRequestId(), 0, BSON.serialize({ killCursors: coll, cursors: [Long.fromBigInt(cursor.id)], $db: item.db })), { compressible: false, moreToCome: false });
      }
    } catch (err) {
      this.failed(err as Error, timedOut);
    } finally {
      clearTimeout(timer);
      this.pool!.checkIn(conn);
    }
  }

  /**
   * A shadow read failed (or timed out): counted, and the shadow is treated as unavailable for
   * `timeoutMs` — what is queued and what arrives meanwhile is dropped at once rather than left
   * to wait for a server that is not answering.
   */
  private failed(err: Error, timedOut: boolean): void {
    if (this.closed) return this.drop('stopped');
    this.drop(timedOut ? 'timeout' : 'error');
    this.unavailableUntil = performance.now() + this.settings.timeoutMs;
    for (const item of this.queue.splice(0)) {
      this.queuedBytes -= item.size;
      this.drop('shadow_unavailable');
    }
    if (this.logs.allow(this.log, 'mirror_error')) this.log.warn({ target: this.settings.target, err: err.message }, 'mirror: shadow read failed; dropping mirrored reads for mirror.timeoutMs');
  }

  private compare(item: Mirrored, shadowBody: Buffer): void {
    const primary = replyDigest(item.primaryReply);
    const shadow = replyDigest(shadowBody);
    const same = primary.digest === shadow.digest;
    if (same) this.matched++;
    else this.differed++;
    Metrics.mirrorRequests.add(1, { result: same ? 'matched' : 'differed' });
    let entry = this.byNamespace.get(item.ns);
    if (!entry) {
      const key = this.byNamespace.size < MAX_NAMESPACES ? item.ns : '(other)';
      entry = this.byNamespace.get(key) ?? { matched: 0, differed: 0 };
      this.byNamespace.set(key, entry);
    }
    if (same) entry.matched++;
    else entry.differed++;
    if (!same && this.logs.allow(this.log, `differ:${item.ns}`)) {
      this.log.info({ ns: item.ns, primary: { ok: primary.ok, code: primary.code, bytes: item.primaryReply.length, digest: primary.digest }, shadow: { ok: shadow.ok, code: shadow.code, bytes: shadowBody.length, digest: shadow.digest } }, 'mirror: shadow reply differs from the primary');
    }
  }

  status(): MirrorStatus {
    return {
      target: this.settings.target, fraction: this.settings.fraction, sent: this.sent, matched: this.matched, differed: this.differed,
      dropped: { ...this.dropped }, queued: this.queue.length, queuedBytes: this.queuedBytes, inFlight: this.inFlight,
      namespaces: Object.fromEntries(this.byNamespace),
    };
  }

  close(): void {
    this.closed = true;
    for (const _ of this.queue.splice(0)) this.drop('stopped');
    this.queuedBytes = 0;
    this.pool?.close();
  }
}

/** The client's request for the shadow: no session, no cluster time of the primary's cluster; sequences as sent. */
function portableRequest(bytes: Buffer): Buffer {
  const msg = parseOpMsg({ header: readHeader(bytes), bytes });
  return encodeOpMsg(newRequestId(), 0, portableBody(msg.body, ['lsid']), 0, msg.sequences);
}
