import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { freePort, waitFor } from './ports';
import { terminate } from './process';

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

/**
 * A real FerretDB v1 (SQLite backend) on a free loopback port with its own data directory.
 * Its debug address serves Prometheus metrics: the server's own view of how many connections
 * the proxy really holds.
 */
export class FerretDB {
  private constructor(
    private readonly child: ChildProcess,
    readonly host: string,
    readonly port: number,
    readonly debugPort: number,
    readonly dir: string,
    private readonly keepData: boolean,
  ) {}

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  get uri(): string {
    return `mongodb://${this.address}/?directConnection=true`;
  }

  /**
   * Starts FerretDB. Without options: free ports and a temporary data directory removed on
   * stop (tests, benchmarks). With `dir`, the data is kept (the dev stack).
   */
  static async start(options: { dir?: string; port?: number; debugPort?: number } = {}): Promise<FerretDB> {
    const bin = ferretdbBinary();
    const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'mongoplex-ferretdb-'));
    mkdirSync(dir, { recursive: true });
    const port = options.port ?? (await freePort());
    const debugPort = options.debugPort ?? (await freePort());
    const log = createWriteStream(path.join(dir, 'ferretdb.log'));
    const child = spawn(bin, [
      '--handler=sqlite',
      `--sqlite-url=file:${dir}/`,
      `--listen-addr=127.0.0.1:${port}`,
      `--state-dir=${dir}`,
      '--telemetry=disable',
      `--debug-addr=127.0.0.1:${debugPort}`,
      '--log-level=error',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const db = new FerretDB(child, '127.0.0.1', port, debugPort, dir, options.dir !== undefined);
    await waitFor('FerretDB readiness', async () => {
      if (child.exitCode !== null) throw new Error(`FerretDB exited with ${child.exitCode} (log: ${dir}/ferretdb.log)`);
      const r = await fetch(`http://127.0.0.1:${debugPort}/debug/readyz`);
      return r.ok ? true : undefined;
    });
    return db;
  }

  async metrics(): Promise<string> {
    const r = await fetch(`http://127.0.0.1:${this.debugPort}/debug/metrics`);
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
    await terminate(this.child);
    if (!this.keepData) rmSync(this.dir, { recursive: true, force: true });
  }
}
