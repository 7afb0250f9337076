import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { BSON, type Long } from 'bson';
import { startMongoplex } from './support/mongoplex';
import { RawClient } from './support/raw-client';
import { useFaultRelay } from './support/fault-relay';
import { waitFor } from '../scripts/ports';
import { MONITOR_CONNECTIONS, useFerretDB } from './support/setup';
import { Metrics } from '../filter/telemetry/metrics';
import { proxyStats } from '../filter/admin/views';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

type Running = Awaited<ReturnType<typeof startMongoplex>>;
type PoolStats = { total: number; idle: number; holdingCursors: number; waiting: number };
const poolOf = (p: Running): PoolStats => proxyStats(p.proxy).pools[0]!;

describe('pool limits end in clear Mongo errors', () => {
  const fault = useFaultRelay(() => db);
  let proxy: Running;

  before(async () => {
    proxy = await startMongoplex(fault.relay.address, { upstream: { maxPoolSize: 1, waitQueueTimeoutMs: 200, maxWaitQueueSize: 1 } });
  });
  after(async () => {
    fault.relay.release();
    await proxy?.stop();
  });

  it('a request that waits past waitQueueTimeoutMs gets NetworkInterfaceExceededTimeLimit, then a full queue gets a retryable overload error', async () => {
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => RawClient.connect(proxy.port)));
    assert.equal((await a!.command({ ping: 1, $db: 'admin' })).ok, 1); // warm: the one pooled connection exists
    fault.relay.hold();
    const slow = a!.command({ ping: 1, $db: 'admin' }); // occupies the only pooled connection
    await waitFor('the request to be upstream', async () => (poolOf(proxy).idle === 0 ? true : undefined));
    const waiting = b!.command({ ping: 1, $db: 'admin' });
    await waitFor('a waiter', async () => (poolOf(proxy).waiting === 1 ? true : undefined));
    const refused = await c!.command({ ping: 1, $db: 'admin' });
    assert.equal(refused.codeName, 'IngressRequestRateLimitExceeded');
    assert.deepEqual(refused.errorLabels, ['SystemOverloadedError', 'RetryableError']);
    const timedOut = await waiting;
    assert.equal(timedOut.ok, 0);
    assert.equal(timedOut.codeName, 'NetworkInterfaceExceededTimeLimit');
    assert.match(timedOut.errmsg, /timed out after 200 ms waiting for a connection/);
    fault.relay.release();
    assert.equal((await slow).ok, 1, 'the held request completes once the server answers');
    for (const x of [a, b, c]) x!.destroy();
  });

  it('a getMore the proxy fails itself (no connection in time) kills its cursor upstream instead of leaving it open', async () => {
    const [a, b] = await Promise.all([0, 1].map(() => RawClient.connect(proxy.port)));
    await a!.command({ insert: 'abandon', documents: Array.from({ length: 10 }, (_, i) => ({ i })), $db: 'limits' });
    const first = await a!.command({ find: 'abandon', batchSize: 2, $db: 'limits' });
    const cursorId = (first.cursor as { id: Long }).id;
    assert.equal(proxy.proxy.cursors.size, 1);
    const killsBefore = await db.metricSum('ferretdb_client_requests_total{command="killCursors"');
    fault.relay.hold();
    const slow = b!.command({ ping: 1, $db: 'admin' });
    await waitFor('the only connection to be busy', async () => (poolOf(proxy).idle === 0 ? true : undefined));
    const failed = await a!.command({ getMore: cursorId, collection: 'abandon', $db: 'limits' });
    assert.equal(failed.codeName, 'NetworkInterfaceExceededTimeLimit');
    assert.equal(proxy.proxy.cursors.size, 0, 'the route is forgotten');
    fault.relay.release();
    await slow;
    await waitFor('killCursors to reach the server', async () =>
      ((await db.metricSum('ferretdb_client_requests_total{command="killCursors"')) > killsBefore ? true : undefined));
    a!.destroy();
    b!.destroy();
  });
});

describe('pool reaping', () => {
  let proxy: Running;

  before(async () => {
    proxy = await startMongoplex(db.address, { upstream: { maxPoolSize: 2, maxIdleTimeMs: 100 } });
  });
  after(async () => {
    await proxy?.stop();
  });

  it('closes idle connections but keeps the one whose cursor is still open (FerretDB kills cursors with their connection)', async () => {
    const client = await new MongoClient(proxy.uri).connect();
    try {
      const col = client.db('reap').collection('c');
      await col.insertMany(Array.from({ length: 10 }, (_, i) => ({ _id: i })) as never);
      const cursor = col.find({}, { batchSize: 3 });
      await cursor.next();
      assert.equal(poolOf(proxy).holdingCursors, 1);
      // Two janitor sweeps later the connection is long past maxIdleTimeMs.
      await new Promise((r) => setTimeout(r, 2200));
      assert.equal(poolOf(proxy).total, 1, 'the cursor-holding connection survived the reaper');
      const rest = await cursor.toArray();
      assert.equal(rest.length, 9);
      await waitFor('the idle connection to be reaped', async () => (poolOf(proxy).total === 0 ? true : undefined), 5000);
      assert.equal((await db.connections()).open, MONITOR_CONNECTIONS, 'FerretDB agrees: no pooled connection left, only the heartbeat');
    } finally {
      await client.close();
    }
  });
});

describe('a stalled upstream: requests already sent get an answer in time', () => {
  const fault = useFaultRelay(() => db);
  let proxy: Running;

  before(async () => {
    proxy = await startMongoplex(fault.relay.address, { upstream: { maxPoolSize: 2, socketTimeoutMs: 1500, maxTimeGraceMs: 300 } });
  });
  after(async () => {
    fault.relay.release();
    await proxy?.stop();
  });

  it('a command with maxTimeMS gets MaxTimeMSExpired at maxTimeMS + upstream.maxTimeGraceMs, its connection discarded, and the pool serves the next one', async () => {
    const c = await RawClient.connect(proxy.port);
    await c.command({ insert: 'stall', documents: [{ a: 1 }], $db: 'limits' });
    const closedBefore = Metrics.upstreamConnectionsClosed.value({ server: fault.relay.address, reason: 'timeout' });
    fault.relay.hold();
    const started = Date.now();
    const r = await c.command({ find: 'stall', maxTimeMS: 200, $db: 'limits' });
    const took = Date.now() - started;
    assert.equal(r.codeName, 'MaxTimeMSExpired');
    assert.match(r.errmsg, /did not answer within maxTimeMS 200 ms \+ 300 ms \(upstream\.maxTimeGraceMs\)/);
    assert.ok(took >= 480 && took < 1400, `answered after ${took} ms`);
    assert.equal(Metrics.upstreamConnectionsClosed.value({ server: fault.relay.address, reason: 'timeout' }), closedBefore + 1);
    fault.relay.release();
    assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    c.destroy();
  });

  it('without maxTimeMS, upstream.socketTimeoutMs answers NetworkTimeout, labelled RetryableWriteError for a retryable write', async () => {
    const c = await RawClient.connect(proxy.port);
    await c.command({ ping: 1, $db: 'admin' });
    fault.relay.hold();
    const started = Date.now();
    const r = await c.command({ insert: 'stall', documents: [{ b: 1 }], lsid: { id: new BSON.UUID() }, txnNumber: new BSON.Long(1), $db: 'limits' });
    const took = Date.now() - started;
    assert.equal(r.codeName, 'NetworkTimeout');
    assert.match(r.errmsg, /did not answer within 1500 ms \(upstream\.socketTimeoutMs\)/);
    assert.deepEqual(r.errorLabels, ['RetryableWriteError']);
    assert.ok(took >= 1400 && took < 2500, `answered after ${took} ms`);
    fault.relay.release();
    c.destroy();
  });

  it('a getMore that times out drops its cursor route', async () => {
    const c = await RawClient.connect(proxy.port);
    await c.command({ insert: 'stallcur', documents: Array.from({ length: 10 }, (_, i) => ({ i })), $db: 'limits' });
    const first = await c.command({ find: 'stallcur', batchSize: 2, $db: 'limits' });
    const id = (first.cursor as { id: Long }).id;
    const routes = proxy.proxy.cursors.size;
    fault.relay.hold();
    const r = await c.command({ getMore: id, collection: 'stallcur', maxTimeMS: 100, $db: 'limits' });
    assert.equal(r.codeName, 'MaxTimeMSExpired');
    assert.equal(proxy.proxy.cursors.size, routes - 1, 'the route is forgotten');
    fault.relay.release();
    c.destroy();
  });
});
