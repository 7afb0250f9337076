import * as path from 'node:path';
import { ConfigError, loadConfig } from '../filter/config';
import { createLogger } from '../filter/log';
import { startServer } from '../filter/server';
import { buildBootstrap } from '../filter/envoy/bootstrap';
import { startTelemetry } from '../filter/telemetry/sdk';
import { Envoy } from './envoy';
import { FerretDB } from './ferretdb';

/**
 * The dev stack (`npm run dev`): an embedded FerretDB (data kept in .cache/dev/), mongoplex, and
 * a real Envoy whose listener streams client connections to mongoplex over network ext_proc.
 * Prints the connection string; Ctrl-C stops everything.
 * MONGOPLEX_UPSTREAM_SERVERS=host:port puts the stack in front of your own MongoDB instead.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const PORTS = {
  envoy: Number(process.env.DEV_ENVOY_PORT ?? 27017),
  envoyAdmin: Number(process.env.DEV_ENVOY_ADMIN_PORT ?? 9902),
  ferretdb: Number(process.env.DEV_FERRETDB_PORT ?? 27018),
  grpc: Number(process.env.DEV_GRPC_PORT ?? 50051),
  admin: Number(process.env.DEV_ADMIN_PORT ?? 9901),
};

async function main(): Promise<void> {
  const ownUpstream = process.env.MONGOPLEX_UPSTREAM_SERVERS;
  const cleanups: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    let db: FerretDB | undefined;
    if (!ownUpstream) {
      db = await FerretDB.start({ dir: process.env.DEV_DATA_DIR ?? path.join(ROOT, '.cache', 'dev', 'ferretdb'), port: PORTS.ferretdb });
      cleanups.push(() => db!.stop());
    }
    const config = loadConfig({
      file: process.env.MONGOPLEX_CONFIG,
      overrides: {
        listen: { grpc: `127.0.0.1:${PORTS.grpc}` },
        admin: { port: PORTS.admin },
        ...(db ? { upstream: { servers: [db.address] } } : {}),
      },
    });
    const log = createLogger(config.log.level);
    const stopTelemetry = await startTelemetry(log);
    if (stopTelemetry) cleanups.push(stopTelemetry);
    const server = await startServer(config, log);
    cleanups.push(() => server.stop());
    const envoy = await Envoy.start(buildBootstrap({
      admin: { host: '127.0.0.1', port: PORTS.envoyAdmin },
      listeners: [{ name: 'main', host: '127.0.0.1', port: PORTS.envoy }],
      ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: PORTS.grpc } },
    }), PORTS.envoyAdmin);
    cleanups.push(() => envoy.stop());
    console.log('');
    console.log(`  upstream:        ${config.upstream.servers.join(', ')}${db ? ' (embedded FerretDB, data in .cache/dev/ferretdb)' : ''}`);
    console.log(`  mongoplex:       ext_proc gRPC 127.0.0.1:${PORTS.grpc}${server.tcp ? `, TCP ${server.tcp.address}:${server.tcp.port}` : ''}, admin http://127.0.0.1:${PORTS.admin}/stats`);
    console.log(`  envoy:           listener 127.0.0.1:${PORTS.envoy} (network ext_proc), admin http://127.0.0.1:${PORTS.envoyAdmin}/`);
    console.log('');
    console.log('  connect with:');
    console.log(`    mongodb://127.0.0.1:${PORTS.envoy}/`);
    console.log('');
    console.log('  Ctrl-C stops the stack.');
  } catch (err) {
    await stopAll();
    if (err instanceof ConfigError) {
      console.error(`mongoplex: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const stop = (): void => {
    void stopAll().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error('dev stack failed:', err);
  process.exit(1);
});
