import { loadConfig, type ConfigInput } from '../../filter/config';
import { createLogger } from '../../filter/log';
import { startServer, type RunningServer } from '../../filter/server';

/** An in-process mongoplex configured by `overrides` (no environment, quiet logs). */
export async function startConfigured(overrides: ConfigInput): Promise<RunningServer> {
  const config = loadConfig({
    env: {},
    overrides: { ...overrides, log: { level: (process.env.MONGOPLEX_TEST_LOG ?? 'silent') as 'silent' } },
  });
  return startServer(config, createLogger(config.log.level));
}

/** An in-process mongoplex with its TCP ingress on a free loopback port. */
export type TestMongoplex = RunningServer & { readonly uri: string; readonly port: number };

/** An in-process mongoplex on a free loopback port, pooling to the given upstream. */
export async function startMongoplex(upstream: string, overrides: ConfigInput = {}): Promise<TestMongoplex> {
  const server = await startConfigured({
    ...overrides,
    listen: { host: '127.0.0.1', port: 0, ...overrides.listen },
    upstream: { servers: [upstream], ...overrides.upstream },
  });
  if (!server.tcp) throw new Error('test mongoplex needs its TCP ingress');
  return Object.assign(server, { uri: `mongodb://127.0.0.1:${server.tcp.port}/`, port: server.tcp.port });
}
