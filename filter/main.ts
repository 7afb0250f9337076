#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, environmentVariables, loadConfig } from './config';
import { createLogger } from './log';
import { startServer } from './server';
import { startTelemetry } from './telemetry/sdk';
import { envoyConfigCommand, ENVOY_CONFIG_USAGE } from './envoy/cli';

const USAGE = `usage: mongoplex [--config FILE] [--print-env]
       mongoplex envoy-config --help

  --config FILE   YAML or JSON configuration (default: $MONGOPLEX_CONFIG, else built-in defaults)
  --print-env     list every MONGOPLEX_* environment setting and the config path it overrides`;

async function main(): Promise<void> {
  if (process.argv[2] === 'envoy-config') {
    if (process.argv.includes('--help')) {
      console.log(ENVOY_CONFIG_USAGE);
      return;
    }
    try {
      process.stdout.write(envoyConfigCommand(process.argv.slice(3)));
    } catch (err) {
      console.error(`mongoplex envoy-config: ${(err as Error).message}\n${ENVOY_CONFIG_USAGE}`);
      process.exit(2);
    }
    return;
  }
  let args;
  try {
    args = parseArgs({ options: { config: { type: 'string' }, 'print-env': { type: 'boolean' }, help: { type: 'boolean' } } }).values;
  } catch (err) {
    console.error(`mongoplex: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }
  if (args['print-env']) {
    for (const [name, path] of environmentVariables()) console.log(`${name}\t${path.join('.')}`);
    return;
  }
  let config;
  try {
    config = loadConfig({ file: args.config ?? process.env.MONGOPLEX_CONFIG });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`mongoplex: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.log.level);
  const stopTelemetry = await startTelemetry(log);
  const server = await startServer(config, log);
  // One line on stdout that scripts can wait for.
  console.log(JSON.stringify({ event: 'listening', tcp: server.tcp ? `${server.tcp.address}:${server.tcp.port}` : null, grpcPort: server.grpcPort ?? null, admin: server.admin ? `${server.admin.address}:${server.admin.port}` : null }));
  let stopping = false;
  // First signal: drain (clients get the replies to what they sent), then stop. A second one stops at once.
  const stop = (signal: string): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: stopping without waiting for clients');
      process.exit(1);
    }
    stopping = true;
    const timeoutMs = config.listen.drainTimeoutMs;
    log.info({ signal, clients: server.proxy.clientCount, timeoutMs }, 'draining: no new clients; open ones are closed once their requests are answered');
    server.drain(timeoutMs)
      .then((left) => {
        if (left > 0) log.warn({ clients: left }, 'drain deadline reached: closing the remaining clients');
        else log.info('drained: every client closed between requests');
        return server.stop();
      })
      .then(() => stopTelemetry?.())
      .then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err) => {
  console.error('mongoplex: fatal:', err);
  process.exit(1);
});
