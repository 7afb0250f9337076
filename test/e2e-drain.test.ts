import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { MongoplexProcess } from '../scripts/mongoplex-process';
import { acceptsConnections, consecutiveFreePorts, freePort } from '../scripts/ports';
import { useFaultRelay } from './support/fault-relay';
import { startEnvoyFront } from '../scripts/envoy';
import { RawClient } from './support/raw-client';
import { useFerretDB } from './support/setup';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

/** Documents in `<dbName>.drain`, counted on FerretDB directly (not through the proxy under test). */
async function storedInFerretDB(dbName: string): Promise<number> {
  const direct = await new MongoClient(db.uri).connect();
  try {
    return await direct.db(dbName).collection('drain').countDocuments();
  } finally {
    await direct.close();
  }
}

describe('SIGTERM drains: every request already sent is answered before its client is closed', () => {
  const fault = useFaultRelay(() => db);

  it('10 inserts in flight at SIGTERM all get their replies, each applied exactly once; new clients are refused; the process exits 0', async () => {
    const port = await freePort();
    const admin = await freePort();
    const proxy = await MongoplexProcess.start({
      MONGOPLEX_LISTEN_PORT: String(port),
      MONGOPLEX_UPSTREAM_SERVERS: fault.relay.address,
      MONGOPLEX_ADMIN_PORT: String(admin),
      MONGOPLEX_LISTEN_DRAIN_TIMEOUT_MS: '10000',
      MONGOPLEX_LISTEN_DRAIN_NOTICE_MS: '0',
    });
    const clients = await Promise.all(Array.from({ length: 10 }, () => RawClient.connect(port)));
    try {
      for (const c of clients) assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
      fault.relay.hold(); // the server applies the inserts; their replies wait
      const replies = clients.map((c, i) => c.command({ insert: 'drain', documents: [{ client: i }], $db: 'drain' }));
      await new Promise((r) => setTimeout(r, 300));
      const exit = proxy.signal('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await acceptsConnections(port), false, 'no new connections while draining');
      const ready = await fetch(`http://127.0.0.1:${admin}/readyz`);
      assert.equal(ready.status, 503, '/readyz fails while draining');
      assert.match(JSON.stringify(await ready.json()), /draining/);
      fault.relay.release();
      const answered = await Promise.all(replies);
      assert.deepEqual(answered.map((r) => [r.ok, r.n]), Array.from({ length: 10 }, () => [1, 1]), 'every in-flight insert was answered');
      for (const c of clients) await c.closedPromise; // then closed, between requests
      assert.equal(await exit, 0);
      assert.equal(await storedInFerretDB('drain'), 10, 'each insert applied once');
    } finally {
      fault.relay.release();
      for (const c of clients) c.destroy();
      await proxy.stop();
    }
  });

  it('a client that keeps the proxy busy past listen.drainTimeoutMs is closed at the deadline, and the process still exits', async () => {
    const port = await freePort();
    const proxy = await MongoplexProcess.start({
      MONGOPLEX_LISTEN_PORT: String(port),
      MONGOPLEX_UPSTREAM_SERVERS: fault.relay.address,
      MONGOPLEX_LISTEN_DRAIN_TIMEOUT_MS: '1000',
      MONGOPLEX_LISTEN_DRAIN_NOTICE_MS: '0',
    });
    const c = await RawClient.connect(port);
    try {
      assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
      fault.relay.hold();
      void c.command({ ping: 1, $db: 'admin' }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
      const started = Date.now();
      assert.equal(await proxy.signal('SIGTERM'), 0);
      const took = Date.now() - started;
      assert.ok(took >= 900 && took < 4000, `exited ${took} ms after SIGTERM`);
    } finally {
      fault.relay.release();
      c.destroy();
      await proxy.stop();
    }
  });
});

describe('POST /drain, then SIGTERM (a Kubernetes preStop hook, then the kubelet\'s signal)', () => {
  const fault = useFaultRelay(() => db);

  it('the SIGTERM waits for the drain the POST started and the process exits at its deadline, not after a second full drain', async () => {
    const port = await freePort();
    const admin = await freePort();
    const proxy = await MongoplexProcess.start({
      MONGOPLEX_LISTEN_PORT: String(port),
      MONGOPLEX_UPSTREAM_SERVERS: fault.relay.address,
      MONGOPLEX_ADMIN_PORT: String(admin),
      MONGOPLEX_LISTEN_DRAIN_TIMEOUT_MS: '20000',
      MONGOPLEX_LISTEN_DRAIN_NOTICE_MS: '0',
    });
    const c = await RawClient.connect(port);
    try {
      assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
      fault.relay.hold(); // the client's request stays unanswered: it cannot be closed before the deadline
      void c.command({ ping: 1, $db: 'admin' }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
      const started = Date.now();
      const r = await fetch(`http://127.0.0.1:${admin}/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ timeoutMs: 1500 }) });
      assert.equal(r.status, 202);
      assert.equal(await proxy.signal('SIGTERM'), 0);
      const took = Date.now() - started;
      assert.ok(took >= 1400 && took < 8000, `exited ${took} ms after POST /drain (its deadline: 1500 ms; a second drain would take 20 s)`);
    } finally {
      fault.relay.release();
      c.destroy();
      await proxy.stop();
    }
  });
});

describe('SIGTERM drains through Envoy ext_proc too', () => {
  const fault = useFaultRelay(() => db);

  it('5 inserts in flight through Envoy all get their replies and are applied once; Envoy then closes those clients and refuses new ones at once', async () => {
    // Two workers, each an endpoint of Envoy's ext_proc cluster: SIGTERM to the primary drains both.
    const grpc = await consecutiveFreePorts(2);
    const proxy = await MongoplexProcess.start({
      MONGOPLEX_WORKERS: '2',
      MONGOPLEX_LISTEN_PORT: 'null',
      MONGOPLEX_LISTEN_GRPC: `127.0.0.1:${grpc}`,
      MONGOPLEX_UPSTREAM_SERVERS: fault.relay.address,
      MONGOPLEX_LISTEN_DRAIN_TIMEOUT_MS: '10000',
      MONGOPLEX_LISTEN_DRAIN_NOTICE_MS: '0',
    });
    const front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc }, workers: 2 } });
    const clients = await Promise.all(Array.from({ length: 5 }, () => RawClient.connect(front.port)));
    try {
      for (const c of clients) assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
      fault.relay.hold();
      const replies = clients.map((c, i) => c.command({ insert: 'drain', documents: [{ client: i }], $db: 'drain_envoy' }));
      await new Promise((r) => setTimeout(r, 300));
      const exit = proxy.signal('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      // Envoy opens a client's ext_proc stream at its first bytes: mongoplex takes no new ones.
      const late = await RawClient.connect(front.port);
      const lateStarted = Date.now();
      const lateAnswer = late.command({ ping: 1, $db: 'admin' }).catch(() => undefined);
      await Promise.race([late.closedPromise, new Promise((r) => setTimeout(r, 5000))]);
      assert.equal(late.closed, true, 'a new client through Envoy is closed');
      assert.ok(Date.now() - lateStarted < 2000, `closed after ${Date.now() - lateStarted} ms`);
      assert.equal(await lateAnswer, undefined, 'and gets no reply');
      fault.relay.release();
      const answered = await Promise.all(replies);
      assert.deepEqual(answered.map((r) => [r.ok, r.n]), Array.from({ length: 5 }, () => [1, 1]), 'every in-flight insert was answered');
      for (const c of clients) await c.closedPromise;
      assert.equal(await exit, 0);
      assert.ok(front.envoy.running, 'Envoy keeps running');
      assert.equal(await storedInFerretDB('drain_envoy'), 5, 'each insert applied once');
    } finally {
      fault.relay.release();
      for (const c of clients) c.destroy();
      await front.envoy.stop();
      await proxy.stop();
    }
  });
});
