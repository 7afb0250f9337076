import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { startMongoplex } from './support/mongoplex';
import { MONITOR_CONNECTIONS, useFerretDB } from './support/setup';
import { proxyStats } from '../filter/admin/views';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

describe('connection pooling', () => {
  let proxy: Awaited<ReturnType<typeof startMongoplex>>;

  before(async () => {
    proxy = await startMongoplex(db.address, { upstream: { maxPoolSize: 8, maxConnecting: 2, waitQueueTimeoutMs: 60_000 } });
  });
  after(async () => {
    await proxy?.stop();
  });

  it('serves 500 concurrent client connections over at most 8 pooled server connections, with zero errors', async () => {
    const seed = await new MongoClient(proxy.uri).connect();
    await seed.db('pool').collection('items').insertMany(Array.from({ length: 50 }, (_, i) => ({ _id: i, v: i })) as never);
    await seed.close();
    const serverBefore = await db.connections();

    // 250 driver clients, each holding two application connections (plus the driver's own
    // monitoring connection): 500+ client connections to the proxy at once.
    const clients = Array.from({ length: 250 }, () => new MongoClient(proxy.uri, { maxPoolSize: 2, minPoolSize: 2 }));
    await Promise.all(clients.map((c) => c.connect()));
    let errors = 0;
    let ops = 0;
    try {
      await Promise.all(clients.flatMap((c, ci) => [0, 1].map(async (k) => {
        const col = c.db('pool').collection('items');
        for (let round = 0; round < 2; round++) {
          try {
            const id = (ci * 2 + k + round) % 50;
            const doc = await col.findOne({ _id: id } as never);
            assert.equal(doc?.v, id);
            await col.insertOne({ client: ci, k, round });
            // FerretDB's SQLite backend holds one of its 100 SQLite connections per open cursor
            // and stalls every query once they are gone, so only one connection in ten drains a
            // multi-batch cursor; the others read a single batch.
            const batchSize = (ci * 2 + k) % 10 === 0 ? 6 : 101;
            const batch = await col.find({ _id: { $lt: 20 } } as never, { batchSize }).toArray();
            assert.equal(batch.length, 20);
            ops += 3;
          } catch (err) {
            errors++;
            throw err;
          }
        }
      })));
      const clientConnections = proxy.proxy.clientCount;
      assert.ok(clientConnections >= 500, `proxy served ${clientConnections} client connections at once`);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
    const serverAfter = await db.connections();
    const opened = serverAfter.accepted - serverBefore.accepted;
    const stats = proxyStats(proxy.proxy);
    assert.equal(errors, 0);
    assert.equal(ops, 500 * 2 * 3);
    // The server's own accept counter: every connection it ever saw from the proxy during the
    // run, so the peak was at most this.
    // The server also counts mongoplex's one heartbeat connection.
    assert.ok(serverAfter.open <= 8 + MONITOR_CONNECTIONS, `FerretDB holds ${serverAfter.open} open connections`);
    assert.ok(opened + serverBefore.open <= 8 + MONITOR_CONNECTIONS, `FerretDB accepted ${opened} new connections (had ${serverBefore.open})`);
    assert.ok(stats.pools[0]!.total <= 8);
  });
});

describe('cursors on a server that stalls new queries while cursors are open (FerretDB: one SQLite connection per open cursor)', () => {
  let proxy: Awaited<ReturnType<typeof startMongoplex>>;

  before(async () => {
    proxy = await startMongoplex(db.address); // the default pool
  });
  after(async () => {
    await proxy?.stop();
  });

  it('150 clients each inserting then draining a cursor in batches of 5 all finish: getMores never wait behind stuck new queries', async () => {
    const clients = await Promise.all(Array.from({ length: 150 }, () => new MongoClient(proxy.uri, { maxPoolSize: 1 }).connect()));
    const guard = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the clients did not finish within 90 s (deadlock)')), 90_000).unref());
    try {
      const counts = await Promise.race([guard, Promise.all(clients.map(async (c, i) => {
        const col = c.db('cursordeadlock').collection(`c${i}`);
        await col.insertMany(Array.from({ length: 20 }, (_, k) => ({ k })));
        return (await col.find({}, { batchSize: 5 }).toArray()).length;
      }))]);
      assert.deepEqual(new Set(counts), new Set([20]));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});
