import { statSync } from 'node:fs';
import type { TlsOptions } from 'node:tls';
import type { Logger } from '../log';
import { loadPemFiles } from '../pem-files';
import { Metrics } from '../telemetry/metrics';

/** listen.tls: the PEM files of the TCP ingress's TLS. */
export interface ListenTls {
  readonly certFile: string | null;
  readonly keyFile: string | null;
  readonly caFile: string | null;
  readonly requireClientCert: boolean;
}

/** How often the files' modification times are checked. */
const CHECK_EVERY_MS = 1000;

/**
 * The TCP ingress's TLS files, re-read when one changes (a renewed certificate is used for new
 * connections without a restart). A set that does not load (a half-written file, a key that
 * does not match) is logged and counted, and the last good one stays in use.
 */
export class ReloadingTlsFiles {
  private stamp: string;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(options: TlsOptions) => void>();

  /** The options new connections get: the last set of files that loaded. */
  current: TlsOptions;

  /** Reads and checks the files now: a ConfigError names the one that is wrong. */
  constructor(private readonly tls: ListenTls, private readonly log: Logger) {
    this.stamp = this.readStamp();
    this.current = this.load();
  }

  /** Calls `apply` with every set of options loaded from now on, checking while anyone listens. */
  onChange(apply: (options: TlsOptions) => void): () => void {
    this.listeners.add(apply);
    this.timer ??= setInterval(() => this.check(), CHECK_EVERY_MS).unref();
    return () => {
      this.listeners.delete(apply);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  private files(): string[] {
    return [this.tls.certFile!, this.tls.keyFile!, ...(this.tls.caFile ? [this.tls.caFile] : [])];
  }

  private readStamp(): string {
    return this.files().map((f) => {
      try {
        return String(statSync(f).mtimeMs);
      } catch {
        return 'missing';
      }
    }).join('/');
  }

  private load(): TlsOptions {
    const files = loadPemFiles('listen.tls', this.tls);
    return { ...files, ...(files.ca ? { requestCert: true, rejectUnauthorized: this.tls.requireClientCert } : {}) };
  }

  private check(): void {
    const stamp = this.readStamp();
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    try {
      this.current = this.load();
    } catch (err) {
      Metrics.tlsReloads.add(1, { result: 'failed' });
      this.log.error({ err: (err as Error).message }, 'listen.tls files changed but do not load; the previous certificate stays in use');
      return;
    }
    Metrics.tlsReloads.add(1, { result: 'ok' });
    this.log.info({ certFile: this.tls.certFile }, 'listen.tls files reloaded');
    for (const apply of this.listeners) apply(this.current);
  }
}
