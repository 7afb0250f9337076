import { Metrics } from '../telemetry/metrics';

/** Why the gate opened again. */
export type ResumeReason = 'resumed' | 'pause_expired' | 'stopped';

/**
 * PAUSE / RESUME (PgBouncer's): while paused, commands that would be forwarded wait here
 * (requests already forwarded finish; the handshake and what the proxy answers itself go on).
 * Each client has at most one command waiting (a session handles its messages one at a time),
 * so the held set is bounded by the client limit; and every pause has a deadline, after which
 * the gate opens by itself.
 */
export class PauseGate {
  private held: { promise: Promise<void>; open: () => void; timer: NodeJS.Timeout; since: number; until: number } | undefined;
  /** Commands waiting now. */
  waiting = 0;

  constructor(private readonly onResume: (reason: ResumeReason, heldMs: number) => void = () => {}) {}

  get paused(): boolean {
    return this.held !== undefined;
  }

  status(now = Date.now()): { paused: boolean; waiting: number; pausedForMs?: number; resumesInMs?: number } {
    const h = this.held;
    return h ? { paused: true, waiting: this.waiting, pausedForMs: now - h.since, resumesInMs: Math.max(0, h.until - now) } : { paused: false, waiting: 0 };
  }

  /** Holds commands from now on, for at most `maxMs` (a new pause restarts the deadline). */
  pause(maxMs: number): void {
    const now = Date.now();
    if (this.held) {
      clearTimeout(this.held.timer);
      this.held.until = now + maxMs;
      this.held.timer = setTimeout(() => this.resume('pause_expired'), maxMs);
      return;
    }
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.held = { promise, open, since: now, until: now + maxMs, timer: setTimeout(() => this.resume('pause_expired'), maxMs) };
  }

  /** Lets every held command go on; false if the gate was open. */
  resume(reason: ResumeReason = 'resumed'): boolean {
    const h = this.held;
    if (!h) return false;
    this.held = undefined;
    clearTimeout(h.timer);
    h.open();
    this.onResume(reason, Date.now() - h.since);
    return true;
  }

  /** Undefined when open (no wait); else resolves when the gate opens. */
  pass(): Promise<void> | undefined {
    const h = this.held;
    if (!h) return undefined;
    this.waiting++;
    Metrics.pausedCommands.add(1);
    return h.promise.finally(() => this.waiting--);
  }
}
