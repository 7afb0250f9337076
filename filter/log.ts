import pino from 'pino';

/** Structured JSON logs on stderr (stdout stays free for the dev stack's connection string). */
export type Logger = pino.Logger;

export function createLogger(level: string, name = 'mongoplex'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}

/**
 * Lines a client can cause at will (malformed input, limits hit) are rate-limited per reason:
 * at most `burst` lines per reason per `windowMs`; the rest are counted, and the first line of
 * the reason's next window says how many were left out. The metrics still count every event.
 */
export class LogLimiter {
  private readonly windows = new Map<string, { start: number; count: number; suppressed: number }>();

  constructor(private readonly burst = 10, private readonly windowMs = 10_000) {}

  /** Whether to log this occurrence of `reason` now. */
  allow(log: Logger, reason: string, now = Date.now()): boolean {
    let w = this.windows.get(reason);
    if (!w || now - w.start >= this.windowMs) {
      if (w && w.suppressed > 0) log.warn({ reason, suppressed: w.suppressed, windowMs: this.windowMs }, 'similar log lines were left out (rate limit per reason)');
      w = { start: now, count: 0, suppressed: 0 };
      this.windows.set(reason, w);
    }
    if (w.count < this.burst) {
      w.count++;
      return true;
    }
    w.suppressed++;
    return false;
  }
}

/** The process's limiter for client-caused lines. */
export const clientCausedLogs = new LogLimiter();
