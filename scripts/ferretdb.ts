import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { freePort, waitFor } from './ports';
import { onUnexpectedExit, terminate } from './process';

const ROOT = path.resolve(__dirname, '..', '..');

/** Path of the FerretDB binary the project's install script builds (building it if needed). */
export function ferretdbBinary(): string {
  return execFileSync('bash', [path.join(ROOT, 'scripts', 'install-ferretdb.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

/** Connections FerretDB itself has accepted and closed, from its Prometheus metrics. */
export interface ServerConnections {
  accepted: number;
  closed: number;
  open: number;
}

export interface FerretDBOptions {
  dir?: string;
  port?: number;
  debugPort?: number;
  /**
   * Access control on, with this first user in `admin` (FerretDB's `--test-enable-new-auth`:
   * SCRAM-SHA-1 and SCRAM-SHA-256, createUser, usersInfo with showCredentials).
   */
  auth?: { username: string; password: string };
  /**
   * `--repl-set-name`: hello then carries this `setName` and FerretDB's own address as `hosts`,
   * so drivers take it for a one-member replica set (retryable writes: FerretDB takes
   * `txnNumber` and ignores it).
   */
  replSetName?: string;
  /** Also listen with TLS (on `tlsPort`) with these PEM files; caFile: client certificates are required and verified. */
  tls?: { certFile: string; keyFile: string; caFile?: string };
}

/** Where a FerretDB runs, once started. */
interface Running {
  readonly child: ChildProcess;
  readonly port: number;
  readonly debugPort: number;
  readonly tlsPort: number | undefined;
  readonly dir: string;
}

/**
 * A real FerretDB v1 (SQLite backend) on a loopback port with its own data directory. Its
 * debug address serves Prometheus metrics: the server's own view of how many connections the
 * proxy really holds. Created first and started later, so a test file can declare its one
 * FerretDB at the top and start it in a `before` hook.
 */
export class FerretDB {
  readonly host = '127.0.0.1';
  private running: Running | undefined;
  private readonly exitListeners: Array<(how: string) => void> = [];

  /**
   * Without options: free ports and a temporary data directory removed on stop (tests,
   * benchmarks). With `dir`, the data is kept (the dev stack).
   */
  constructor(private readonly options: FerretDBOptions = {}) {}

  static async start(options: FerretDBOptions = {}): Promise<FerretDB> {
    const db = new FerretDB(options);
    await db.start();
    return db;
  }

  private get state(): Running {
    if (!this.running) throw new Error('FerretDB is not started');
    return this.running;
  }

  get port(): number {
    return this.state.port;
  }

  get debugPort(): number {
    return this.state.debugPort;
  }

  /** The TLS listener's port (options.tls). */
  get tlsPort(): number {
    const p = this.state.tlsPort;
    if (p === undefined) throw new Error('FerretDB was started without tls');
    return p;
  }

  get dir(): string {
    return this.state.dir;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  get uri(): string {
    return `mongodb://${this.address}/?directConnection=true`;
  }

  async start(): Promise<void> {
    const bin = ferretdbBinary();
    const dir = this.options.dir ?? mkdtempSync(path.join(tmpdir(), 'mongoplex-ferretdb-'));
    mkdirSync(dir, { recursive: true });
    const port = this.options.port ?? (await freePort());
    const debugPort = this.options.debugPort ?? (await freePort());
    const tls = this.options.tls;
    const tlsPort = tls ? await freePort() : undefined;
    const log = createWriteStream(path.join(dir, 'ferretdb.log'));
    const child = spawn(bin, [
      '--handler=sqlite',
      `--sqlite-url=file:${dir}/`,
      `--listen-addr=${this.host}:${port}`,
      `--state-dir=${dir}`,
      '--telemetry=disable',
      `--debug-addr=${this.host}:${debugPort}`,
      '--log-level=error',
      ...(this.options.replSetName ? [`--repl-set-name=${this.options.replSetName}`] : []),
      ...(tls ? [`--listen-tls=${this.host}:${tlsPort}`, `--listen-tls-cert-file=${tls.certFile}`, `--listen-tls-key-file=${tls.keyFile}`, ...(tls.caFile ? [`--listen-tls-ca-file=${tls.caFile}`] : [])] : []),
      ...(this.options.auth ? ['--test-enable-new-auth', `--setup-username=${this.options.auth.username}`, `--setup-password=${this.options.auth.password}`, '--setup-database=admin'] : []),
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    this.running = { child, port, debugPort, tlsPort, dir };
    onUnexpectedExit(child, () => this.running?.child !== child, (how) => {
      for (const l of this.exitListeners) l(how);
    });
    await waitFor('FerretDB readiness', async () => {
      if (child.exitCode !== null) throw new Error(`FerretDB exited with ${child.exitCode} (log: ${dir}/ferretdb.log)`);
      const r = await fetch(`http://${this.host}:${debugPort}/debug/readyz`);
      return r.ok ? true : undefined;
    });
  }

  get pid(): number | undefined {
    return this.running?.child.pid;
  }

  get logFile(): string {
    return path.join(this.dir, 'ferretdb.log');
  }

  /** Called when the process ends on its own (crashed, killed), not through `stop()`. */
  onUnexpectedExit(listener: (how: string) => void): void {
    this.exitListeners.push(listener);
  }

  async metrics(): Promise<string> {
    const r = await fetch(`http://${this.host}:${this.debugPort}/debug/metrics`);
    return r.text();
  }

  /** Sum of every sample of a metric family; `name` may include the start of a label set. */
  async metricSum(name: string): Promise<number> {
    let sum = 0;
    const prefixes = name.includes('{') ? [name] : [name + '{', name + ' '];
    for (const line of (await this.metrics()).split('\n')) {
      if (prefixes.some((p) => line.startsWith(p))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }

  async connections(): Promise<ServerConnections> {
    const accepted = await this.metricSum('ferretdb_client_accepts_total');
    const closed = await this.metricSum('ferretdb_client_duration_seconds_count');
    return { accepted, closed, open: accepted - closed };
  }

  async stop(): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.running = undefined;
    await terminate(r.child);
    if (this.options.dir === undefined) rmSync(r.dir, { recursive: true, force: true });
  }
}
