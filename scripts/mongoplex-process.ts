import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { freePort } from './ports';
import { firstJsonLine, terminate } from './process';

const MAIN = path.resolve(__dirname, '..', 'filter', 'main.js');

/** What mongoplex's `listening` line says: host:port of each listener (null: off). */
interface Listening {
  readonly tcp: string | null;
  readonly grpcPort: number | null;
  readonly admin: string | null;
}

/** Benchmarks that compare paths, not process counts, run mongoplex as one process (workers: auto would fork one per core). */
export const ONE_PROCESS: Readonly<Record<string, string>> = { MONGOPLEX_WORKERS: '1' };

/** mongoplex as its own process (as deployed), configured by MONGOPLEX_* variables: for benchmarks, and for tests that kill it. */
export class MongoplexProcess {
  private constructor(private readonly child: ChildProcess, readonly listening: Listening) {}

  /** `nodeArgs` go to node itself (e.g. `--cpu-prof`, which NODE_OPTIONS does not allow). */
  static async start(env: Record<string, string>, args: string[] = [], nodeArgs: string[] = []): Promise<MongoplexProcess> {
    const child = spawn(process.execPath, [...nodeArgs, MAIN, ...args], {
      env: { ...process.env, MONGOPLEX_LOG_LEVEL: process.env.MONGOPLEX_TEST_LOG ?? 'warn', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const listening = await firstJsonLine<Listening>(child, (line) => line.includes('"listening"'), (code) => `mongoplex exited with ${code}`);
    return new MongoplexProcess(child, listening);
  }

  /** A mongoplex pooling at most `poolSize` connections to `upstream`, its TCP ingress on a free port; `env` adds settings (benchmarks). */
  static async pooling(upstream: string, poolSize: number, env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<{ proxy: MongoplexProcess; port: number }> {
    const port = await freePort();
    const proxy = await MongoplexProcess.start({ MONGOPLEX_LISTEN_PORT: String(port), MONGOPLEX_UPSTREAM_SERVERS: upstream, MONGOPLEX_UPSTREAM_MAX_POOL_SIZE: String(poolSize), ...env }, [], nodeArgs);
    return { proxy, port };
  }

  /** Calls `listener` with each line mongoplex writes to stdout from now on (e.g. node's --trace-gc-nvp lines); returns what stops it. */
  onStdoutLine(listener: (line: string) => void): () => void {
    const lines = createInterface({ input: this.child.stdout! });
    lines.on('line', listener);
    return () => lines.close();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Sends a signal; resolves with the exit code once the process has exited. */
  async signal(signal: NodeJS.Signals): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    const exited = new Promise<number | null>((r) => this.child.once('exit', (code) => r(code)));
    this.child.kill(signal);
    return exited;
  }

  /** Sends a signal without waiting for anything (SIGHUP: reload). */
  notify(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** SIGKILL: the process vanishes without closing anything. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await terminate(this.child);
  }
}
