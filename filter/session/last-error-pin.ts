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

/**
 * getLastError is connection state on servers ≤ 5.0: after an unacknowledged write, the
 * client's next getLastError must run on the upstream connection that carried the write
 * (dvara's semantics). The pin holds that connection out of the pool until the getLastError,
 * the next other command, or `timeoutMs`, whichever comes first. The last answer is kept, so a
 * repeated getLastError answers the same way, as the server would.
 */
export class LastErrorPin {
  private held: { pool: UpstreamPool; conn: UpstreamConnection; timer: NodeJS.Timeout } | undefined;
  /** The last getLastError answer, until the next other command. */
  lastAnswer: Document | undefined;

  constructor(private readonly timeoutMs: number) {}

  hasPin(): boolean {
    return this.held !== undefined;
  }

  hold(pool: UpstreamPool, conn: UpstreamConnection): void {
    this.release();
    const timer = setTimeout(() => this.release(), this.timeoutMs);
    timer.unref();
    this.held = { pool, conn, timer };
  }

  /** Hands the pinned connection over (the caller checks it in or pins it again). */
  take(): { pool: UpstreamPool; conn: UpstreamConnection } | undefined {
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
}
