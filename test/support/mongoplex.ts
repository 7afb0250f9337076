import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { loadConfig, type ConfigInput } from '../../filter/config';
import { terminate } from '../../scripts/process';
import { createLogger } from '../../filter/log';
import { startServer, type RunningServer } from '../../filter/server';

const MAIN = path.resolve(__dirname, '..', '..', 'filter', 'main.js');

/** An in-process mongoplex configured by `overrides` (no environment, quiet logs). */
export async function startConfigured(overrides: ConfigInput): Promise<RunningServer> {
  const config = loadConfig({
    env: {},
    overrides: { ...overrides, log: { level: (process.env.MONGOPLEX_TEST_LOG ?? 'silent') as 'silent' } },
  });
  return startServer(config, createLogger(config.log.level));
}

/** An in-process mongoplex on a free loopback port, pooling to the given upstream. */
export async function startMongoplex(upstream: string, overrides: ConfigInput = {}): Promise<RunningServer & { uri: string; port: number }> {
  const server = await startConfigured({
    ...overrides,
    listen: { host: '127.0.0.1', port: 0, ...overrides.listen },
    upstream: { servers: [upstream], ...overrides.upstream },
  });
  if (!server.tcp) throw new Error('test mongoplex needs its TCP ingress');
  return Object.assign(server, { uri: `mongodb://127.0.0.1:${server.tcp.port}/`, port: server.tcp.port });
}

/** mongoplex as its own process (as deployed): for killing it, and for benchmarks. */
export class MongoplexProcess {
  private constructor(private readonly child: ChildProcess, readonly listening: { tcp: string | null; grpcPort: number | null }) {}

  static async start(env: Record<string, string>): Promise<MongoplexProcess> {
    const child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, MONGOPLEX_LOG_LEVEL: process.env.MONGOPLEX_TEST_LOG ?? 'warn', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const listening = await new Promise<{ tcp: string | null; grpcPort: number | null }>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`mongoplex exited with ${code}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.includes('"listening"')) resolve(JSON.parse(line) as { tcp: string | null; grpcPort: number | null });
      });
    });
    return new MongoplexProcess(child, listening);
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
