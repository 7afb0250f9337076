import { after, before } from 'node:test';
import { MongoClient, type MongoClientOptions } from 'mongodb';
import type { ConfigInput } from '../../filter/config';
import { FerretDB } from '../../scripts/ferretdb';
import { startMongoplex, type TestMongoplex } from './mongoplex';

/** Connections mongoplex keeps to each upstream server besides its pool: the monitor's heartbeat (readiness, topology). */
export const MONITOR_CONNECTIONS = 1;

/**
 * The test file's one FerretDB: call at the top level of a test file; it starts before the
 * file's first test and stops after its last. Suites in the file share it, each in databases
 * of its own.
 */
export function useFerretDB(): FerretDB {
  const db = new FerretDB();
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
