import type { Document } from 'bson';
import type { UpstreamConnection } from '../upstream/connection';
import type { UpstreamPool } from '../upstream/pool';

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

/**
 * getLastError is connection state on servers ≤ 5.0: after an unacknowledged write, the
 * client's next getLastError must run on the upstream connection that carried the write
 * (dvara's semantics). The pin holds that connection out of the pool until the getLastError,
 * the next other command, or `timeoutMs`, whichever comes first. The last answer is kept, so a
 * repeated getLastError answers the same way, as the server would.
 */
export class LastErrorPin {
  private held: (HeldConnection & { timer: NodeJS.Timeout }) | undefined;
  private closed = false;
  /** The last getLastError answer, until the next other command. */
  lastAnswer: Document | undefined;

  constructor(private readonly timeoutMs: number) {}

  /** Keeps the connection for this client; a closed client's connection goes straight back. */
  hold(pool: UpstreamPool, conn: UpstreamConnection): void {
    this.release();
    if (this.closed) {
      pool.checkIn(conn);
      return;
    }
    const timer = setTimeout(() => this.release(), this.timeoutMs);
    timer.unref();
    this.held = { pool, conn, timer };
  }

  /** Hands the pinned connection over (the caller checks it in or pins it again). */
  take(): HeldConnection | undefined {
    const h = this.held;
    if (!h) return undefined;
    clearTimeout(h.timer);
    this.held = undefined;
    return { pool: h.pool, conn: h.conn };
  }

  release(): void {
    const h = this.take();
    h?.pool.checkIn(h.conn);
  }

  /** The client is gone: give the connection back and never hold another. */
  close(): void {
    this.closed = true;
    this.release();
  }
}
