import { loadConfig, type ConfigInput } from '../../filter/config';
import { createLogger } from '../../filter/log';
import { startServer, type RunningServer } from '../../filter/server';

/** An in-process mongoplex on a free loopback port, pooling to the given upstream. */
export async function startMongoplex(upstream: string, overrides: ConfigInput = {}): Promise<RunningServer & { uri: string; port: number }> {
  const config = loadConfig({
    env: {},
    overrides: {
      ...overrides,
      listen: { host: '127.0.0.1', port: 0, ...overrides.listen },
      upstream: { servers: [upstream], ...overrides.upstream },
      log: { level: (process.env.MONGOPLEX_TEST_LOG ?? 'silent') as 'silent' },
    },
  });
  const server = await startServer(config, createLogger(config.log.level));
  if (!server.tcp) throw new Error('test mongoplex needs its TCP ingress');
  return Object.assign(server, { uri: `mongodb://127.0.0.1:${server.tcp.port}/`, port: server.tcp.port });
}
