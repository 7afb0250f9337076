import type { Document } from 'bson';
import type { UpstreamConnection } from '../upstream/connection';
import type { UpstreamPool } from '../upstream/pool';
import { Metrics } from '../telemetry/metrics';
import { ErrorCode, errorDocument } from '../wire/errors';
import { LEGACY_REMOVED_WIRE_VERSION } from '../wire/header';

/** Commands that read the previous operation's outcome from the connection it ran on. */
export function isLastErrorCommand(name: string): boolean {
  const n = name.toLowerCase();
  return n === 'getlasterror' || n === 'getpreverror';
}

const WRITE_COMMANDS: ReadonlySet<string> = new Set(['insert', 'update', 'delete']);

/** Commands whose unacknowledged (w:0) form leaves an outcome for getLastError. */
export function isWriteCommand(name: string): boolean {
  return WRITE_COMMANDS.has(name.toLowerCase());
}

/** A connection held for one client, and the pool it goes back to. */
export interface HeldConnection {
  readonly pool: UpstreamPool;
  readonly conn: UpstreamConnection;
}

/** getLastError was removed in MongoDB 5.1: newer servers keep no outcome to pin for. */
export const NO_GETLASTERROR_WIRE_VERSION = LEGACY_REMOVED_WIRE_VERSION;

/** At most a quarter of a pool (at least one connection) may be pinned for getLastError. */
export function lastErrorPinsPerServer(maxPoolSize: number): number {
  return Math.max(1, Math.floor(maxPoolSize / 4));
}

/**
 * Every getLastError pin in the process, per pool, oldest first. Pins may never cost the pool:
 * at most `maxPerPool(pool)` at once (the oldest beyond that is reclaimed), and when a request
 * has to wait for one of a pool's connections, the oldest pin on that pool is reclaimed too.
 * Reclaiming asks the pinned connection for the outcome itself (getLastError) and keeps the
 * answer for the client, then returns the connection to the pool.
 */
export class LastErrorPins {
  private readonly byPool = new Map<UpstreamPool, Set<LastErrorPin>>();

  constructor(private readonly maxPerPool: (pool: UpstreamPool) => number, private readonly captureTimeoutMs: number) {}

  get size(): number {
    let n = 0;
    for (const s of this.byPool.values()) n += s.size;
    return n;
  }

  add(pool: UpstreamPool, pin: LastErrorPin): void {
    let set = this.byPool.get(pool);
    if (!set) this.byPool.set(pool, (set = new Set()));
    set.add(pin);
    while (set.size > this.maxPerPool(pool)) this.reclaimOldest(pool, 'cap');
  }

  remove(pool: UpstreamPool, pin: LastErrorPin): void {
    const set = this.byPool.get(pool);
    set?.delete(pin);
    if (set?.size === 0) this.byPool.delete(pool);
  }

  /** A request waits for one of `pool`'s connections: give it a pinned one, if any. */
  reclaimOldest(pool: UpstreamPool, reason: 'cap' | 'pool_waiting'): boolean {
    const oldest = this.byPool.get(pool)?.values().next().value;
    if (!oldest) return false;
    Metrics.lastErrorPinsReclaimed.add(1, { reason });
    oldest.reclaim(this.captureTimeoutMs);
    return true;
  }
}

/**
 * getLastError is connection state on servers ≤ 5.0: after an unacknowledged write, the
 * client's next getLastError must run on the upstream connection that carried the write
 * (dvara's semantics). The pin holds that connection out of the pool until the getLastError,
 * the next other command, or `timeoutMs`, whichever comes first — or until the registry
 * reclaims it, in which case the outcome is read at once and kept. The last answer is kept, so
 * a repeated getLastError answers the same way, as the server would. Servers without
 * getLastError (5.1+) are never pinned for.
 */
export class LastErrorPin {
  private held: (HeldConnection & { timer: NodeJS.Timeout }) | undefined;
  private closed = false;
  /**
   * What a getLastError gets when no connection is pinned, until the next other command: the
   * last answer, or the outcome read when the pin was reclaimed (a promise while it is read).
   */
  lastAnswer: Document | Promise<Document> | undefined;

  constructor(private readonly timeoutMs: number, private readonly registry: LastErrorPins) {}

  /** Keeps the connection for this client; a closed client's connection (or one to a server without getLastError) goes straight back. */
  hold(pool: UpstreamPool, conn: UpstreamConnection): void {
    this.release();
    if (this.closed || conn.description.maxWireVersion >= NO_GETLASTERROR_WIRE_VERSION) {
      pool.checkIn(conn);
      return;
    }
    const timer = setTimeout(() => this.release(), this.timeoutMs);
    timer.unref();
    this.held = { pool, conn, timer };
    this.registry.add(pool, this);
  }

  /** Whether a connection is pinned for this client now. */
  get pinned(): boolean {
    return this.held !== undefined;
  }

  /** Hands the pinned connection over (the caller checks it in or pins it again). */
  take(): HeldConnection | undefined {
    const h = this.held;
    if (!h) return undefined;
    clearTimeout(h.timer);
    this.held = undefined;
    this.registry.remove(h.pool, this);
    return { pool: h.pool, conn: h.conn };
  }

  release(): void {
    const h = this.take();
    h?.pool.checkIn(h.conn);
  }

  /** Another client needs the connection: read the outcome now, keep it, give the connection back. */
  reclaim(timeoutMs: number): void {
    const h = this.take();
    if (!h) return;
    const outcome = readOutcome(h.conn, timeoutMs).finally(() => h.pool.checkIn(h.conn));
    this.lastAnswer = outcome;
    void outcome.then((doc) => {
      if (this.lastAnswer === outcome) this.lastAnswer = doc;
    });
  }

  /** The client is gone: give the connection back and never hold another. */
  close(): void {
    this.closed = true;
    this.release();
  }
}

/** getLastError on the connection that ran the write; a failure becomes the error the client gets. */
async function readOutcome(conn: UpstreamConnection, timeoutMs: number): Promise<Document> {
  const timer = setTimeout(() => conn.close('timeout', `getLastError timed out after ${timeoutMs} ms`), timeoutMs);
  try {
    return await conn.command('admin', { getLastError: 1 });
  } catch (err) {
    return errorDocument(ErrorCode.HostUnreachable, `mongoplex could not read the outcome of the previous unacknowledged write: ${(err as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}
