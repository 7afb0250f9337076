import * as path from 'node:path';
import { ConfigError, loadConfig } from '../filter/config';
import { createLogger } from '../filter/log';
import { startServer } from '../filter/server';
import { FerretDB } from './ferretdb';

/**
 * The dev stack (`npm run dev`): an embedded FerretDB (data kept in .cache/dev/) and mongoplex
 * in front of it; prints the connection string and stops everything on Ctrl-C.
 * Set MONGOPLEX_UPSTREAM_SERVERS to put mongoplex in front of your own MongoDB instead.
 */
const ROOT = path.resolve(__dirname, '..', '..');

async function main(): Promise<void> {
  const ownUpstream = process.env.MONGOPLEX_UPSTREAM_SERVERS;
  let db: FerretDB | undefined;
  if (!ownUpstream) {
    db = await FerretDB.start({ dir: path.join(ROOT, '.cache', 'dev', 'ferretdb'), port: Number(process.env.DEV_FERRETDB_PORT ?? 27018) });
  }
  let config;
  try {
    config = loadConfig({
      file: process.env.MONGOPLEX_CONFIG,
      overrides: ownUpstream ? { admin: { port: 9901 } } : { upstream: { servers: [db!.address] }, admin: { port: 9901 } },
    });
  } catch (err) {
    await db?.stop();
    if (err instanceof ConfigError) {
      console.error(`mongoplex: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const server = await startServer(config, createLogger(config.log.level));
  if (!server.tcp) throw new Error('the dev stack needs the TCP ingress (listen.port)');
  const host = server.tcp.address;
  console.log('');
  console.log(`  upstream:   ${config.upstream.servers.join(', ')}${db ? ' (embedded FerretDB, data in .cache/dev/ferretdb)' : ''}`);
  console.log(`  admin:      http://${server.admin?.address}:${server.admin?.port}/stats`);
  console.log(`  connect with:`);
  console.log(`    mongodb://${host}:${server.tcp.port}/`);
  console.log('');
  console.log('  Ctrl-C stops the stack.');
  const stop = async (): Promise<void> => {
    await server.stop();
    await db?.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

main().catch((err) => {
  console.error('dev stack failed:', err);
  process.exit(1);
});
