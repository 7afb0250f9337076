import { after, before } from 'node:test';
import { MongoClient, type MongoClientOptions } from 'mongodb';
import type { ConfigInput } from '../../filter/config';
import { FerretDB, type FerretDBOptions } from '../../scripts/ferretdb';
import { startEnvoyFront, type EnvoyFront } from '../../scripts/envoy';
import { freePort } from '../../scripts/ports';
import { startMongoplex, type TestMongoplex } from './mongoplex';

/** Connections mongoplex keeps to each upstream server besides its pool: the monitor's heartbeat (readiness, topology). */
export const MONITOR_CONNECTIONS = 1;

/**
 * The test file's one FerretDB: call at the top level of a test file; it starts before the
 * file's first test and stops after its last. Suites in the file share it, each in databases
 * of its own.
 */
export function useFerretDB(options: FerretDBOptions = {}): FerretDB {
  const db = new FerretDB(options);
  before(() => db.start());
  after(() => db.stop());
  return db;
}

/** mongoplex and a driver client through it, for one suite. */
export interface ProxiedDriver {
  readonly proxy: TestMongoplex;
  readonly client: MongoClient;
}

/**
 * Inside a `describe`: an in-process mongoplex (TCP ingress) pooling to `upstream()`, and an
 * official driver client connected through it; both closed after the suite.
 */
export function useProxiedDriver(upstream: () => string, options: { mongoplex?: ConfigInput; driver?: MongoClientOptions } = {}): ProxiedDriver {
  const state: { proxy?: TestMongoplex; client?: MongoClient } = {};
  before(async () => {
    state.proxy = await startMongoplex(upstream(), options.mongoplex);
    state.client = await new MongoClient(state.proxy.uri, options.driver).connect();
  });
  after(async () => {
    await state.client?.close();
    await state.proxy?.stop();
  });
  return {
    get proxy() {
      return state.proxy!;
    },
    get client() {
      return state.client!;
    },
  };
}

/** Inside a `describe`: an in-process mongoplex serving TCP and ext_proc, with a real Envoy in front of the latter. */
export function useFrontedMongoplex(upstream: () => string, overrides: () => Parameters<typeof startMongoplex>[1]): { proxy: () => TestMongoplex; uri: (via: 'tcp' | 'envoy') => string } {
  let proxy: TestMongoplex;
  let front: EnvoyFront;
  before(async () => {
    const grpc = await freePort();
    const o = overrides() ?? {};
    proxy = await startMongoplex(upstream(), { ...o, listen: { grpc: `127.0.0.1:${grpc}` } });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
  });
  after(async () => {
    await front?.envoy.stop();
    await proxy?.stop();
  });
  return { proxy: () => proxy, uri: (via) => (via === 'tcp' ? proxy.uri : front.uri) };
}

