import SonicBoom from 'sonic-boom';
import { LogLimiter, type Logger } from '../log';
import { collectionOf, type ForwardedCommand, type TrafficTap } from './taps';
import { Metrics } from '../telemetry/metrics';
import { NONE } from './command-stats';

export interface CommandLogSettings {
  /** Access log file, `-` for stdout, null: no access log. */
  readonly path: string | null;
  /** Fraction of commands written to the access log. */
  readonly sampleRate: number;
  /** Most access-log lines per second; the rest are counted, not written. */
  readonly maxPerSecond: number;
  /** Lines waiting to be written may hold this many bytes; more are dropped and counted. */
  readonly bufferBytes: number;
  /** Commands slower than this are logged at warn on the main log (0: never). */
  readonly slowMs: number;
}

/** What the access log and the slow-command log say about one command. */
export interface CommandLine {
  time: string;
  client: string;
  appName?: string;
  db: string;
  collection: string;
  command: string;
  durationMs: number;
  server: string;
  /** 0 when the command succeeded, else the server's or the proxy's error code (-1: none given). */
  code: number;
  bytesIn: number;
  bytesOut: number;
}

/**
 * The access log (JSON lines, sampled and rate-limited, written asynchronously with a bounded
 * buffer) and the slow-command log (warn lines on the main log, rate-limited) of forwarded
 * commands.
 */
export class CommandLog implements TrafficTap {
  readonly active: boolean;
  private readonly out: SonicBoom | undefined;
  private tokens: number;
  private refilledAt = Date.now();
  private readonly slowLines = new LogLimiter(20, 10_000);
  private closed = false;

  constructor(private readonly settings: CommandLogSettings, private readonly log: Logger) {
    this.tokens = settings.maxPerSecond;
    if (settings.path !== null) {
      this.out = new SonicBoom({ ...(settings.path === '-' ? { fd: 1 } : { dest: settings.path, mkdir: true, mode: 0o640 }), sync: false, minLength: 4096, maxLength: settings.bufferBytes });
      this.out.on('drop', () => Metrics.accessLogLines.add(1, { result: 'dropped_buffer_full' }));
      this.out.on('error', (err: Error) => log.error({ err: err.message, path: settings.path }, 'access log write failed'));
    }
    this.active = this.out !== undefined || settings.slowMs > 0;
  }

  forwarded(e: ForwardedCommand): void {
    const durationMs = e.durationMs;
    const slow = this.settings.slowMs > 0 && durationMs >= this.settings.slowMs;
    const logged = this.out !== undefined && this.admit();
    if (!slow && !logged) return;
    const line: CommandLine = {
      time: new Date().toISOString(), client: e.client.remote, ...(e.client.appName !== undefined ? { appName: e.client.appName } : {}),
      db: e.cmd.db ?? NONE, collection: collectionOf(e.cmd) ?? NONE, command: e.cmd.name,
      durationMs: Math.round(durationMs * 1000) / 1000, server: e.server, code: e.failed ? (e.errorCode ?? -1) : 0, bytesIn: e.request.bytes.length, bytesOut: e.replyBytes,
    };
    if (logged) {
      this.out!.write(JSON.stringify(line) + '\n');
      Metrics.accessLogLines.add(1, { result: 'written' });
    }
    if (slow && this.slowLines.allow(this.log, 'slow_command')) {
      const { time: _time, ...fields } = line; // the log line has its own time
      this.log.warn({ ...fields, slowMs: this.settings.slowMs }, 'slow command');
    }
  }

  /** Sampling, then the per-second rate limit (a token bucket refilled continuously). */
  private admit(): boolean {
    if (this.settings.sampleRate < 1 && Math.random() >= this.settings.sampleRate) {
      Metrics.accessLogLines.add(1, { result: 'sampled_out' });
      return false;
    }
    const now = Date.now();
    const max = this.settings.maxPerSecond;
    this.tokens = Math.min(max, this.tokens + ((now - this.refilledAt) * max) / 1000);
    this.refilledAt = now;
    if (this.tokens < 1) {
      Metrics.accessLogLines.add(1, { result: 'rate_limited' });
      return false;
    }
    this.tokens--;
    return true;
  }

  /** Writes what is buffered and closes the file. */
  close(): Promise<void> {
    const out = this.out;
    if (!out || this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => {
      out.once('close', () => resolve());
      out.once('error', () => resolve());
      out.end();
    });
  }
}
