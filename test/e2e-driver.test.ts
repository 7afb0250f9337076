import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient, MongoServerError } from 'mongodb';
import { Metrics } from '../filter/telemetry/metrics';
import { useFerretDB, useProxiedDriver } from './support/setup';
import { proxyStats } from '../filter/admin/views';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

/** The official driver through mongoplex against real FerretDB: what an application sees. */
describe('official driver through mongoplex (TCP ingress, FerretDB upstream)', () => {
  const stack = useProxiedDriver(() => db.address, { mongoplex: { upstream: { maxPoolSize: 4 } }, driver: { maxPoolSize: 5 } });

  it('sees mongoplex as the standalone server behind it, with the fields drivers require', async () => {
    const hello = await stack.client.db('admin').command({ hello: 1 });
    assert.equal(hello.msg, undefined, 'FerretDB is a standalone: no mongos promises');
    assert.equal(hello.setName, undefined);
    assert.equal(hello.isWritablePrimary, true);
    assert.equal(typeof hello.logicalSessionTimeoutMinutes, 'number');
    assert.equal(hello.maxBsonObjectSize, 16 * 1024 * 1024);
    assert.ok(hello.maxWireVersion >= 17 && hello.maxWireVersion <= 25);
    assert.notEqual(hello.connectionId, 42, 'connectionId is the proxy-local one, not the upstream one');
    assert.equal(hello.topologyVersion, undefined);
  });

  it('inserts, finds, updates and deletes documents', async () => {
    const col = stack.client.db('crud').collection<{ _id: number; name: string }>('people');
    await col.insertMany([{ _id: 1, name: 'ada' }, { _id: 2, name: 'grace' }, { _id: 3, name: 'linus' }]);
    assert.deepEqual(await col.findOne({ _id: 2 }), { _id: 2, name: 'grace' });
    const upd = await col.updateOne({ _id: 3 }, { $set: { name: 'ken' } });
    assert.equal(upd.modifiedCount, 1);
    const del = await col.deleteOne({ _id: 1 });
    assert.equal(del.deletedCount, 1);
    assert.deepEqual(await col.find({}, { sort: { _id: 1 } }).toArray(), [{ _id: 2, name: 'grace' }, { _id: 3, name: 'ken' }]);
  });

  it('runs ordered and unordered bulk writes', async () => {
    const col = stack.client.db('crud').collection('bulk');
    const res = await col.bulkWrite([
      { insertOne: { document: { _id: 'a', n: 1 } } },
      { insertOne: { document: { _id: 'b', n: 2 } } },
      { updateOne: { filter: { _id: 'a' }, update: { $inc: { n: 10 } } } },
      { deleteOne: { filter: { _id: 'b' } } },
    ] as never, { ordered: true });
    assert.equal(res.insertedCount, 2);
    assert.equal(res.modifiedCount, 1);
    assert.equal(res.deletedCount, 1);
    const many = Array.from({ length: 2500 }, (_, i) => ({ i }));
    const r2 = await col.insertMany(many, { ordered: false });
    assert.equal(r2.insertedCount, 2500);
    assert.equal(await col.countDocuments({ i: { $exists: true } }), 2500);
  });

  it('runs aggregation pipelines', async () => {
    const col = stack.client.db('crud').collection('agg');
    await col.insertMany(Array.from({ length: 100 }, (_, i) => ({ g: i % 3, v: i })));
    const out = await col.aggregate([{ $group: { _id: '$g', total: { $sum: '$v' } } }, { $sort: { _id: 1 } }]).toArray();
    assert.deepEqual(out, [{ _id: 0, total: 1683 }, { _id: 1, total: 1617 }, { _id: 2, total: 1650 }]);
  });

  it('passes server errors through unchanged (duplicate key)', async () => {
    const col = stack.client.db('crud').collection('dups');
    await col.insertOne({ _id: 'x' } as never);
    await assert.rejects(col.insertOne({ _id: 'x' } as never), (err: unknown) => {
      assert.ok(err instanceof MongoServerError);
      assert.equal(err.code, 11000);
      assert.match(err.message, /duplicate key/);
      return true;
    });
    await assert.rejects(stack.client.db('crud').command({ noSuchCommandAtAll: 1 }), (err: unknown) => {
      assert.ok(err instanceof MongoServerError);
      assert.equal(err.code, 59);
      return true;
    });
  });

  it('stores and reads back a document near the 16 MB limit', async () => {
    const col = stack.client.db('crud').collection('big');
    const payload = 'x'.repeat(16 * 1024 * 1024 - 1024);
    await col.insertOne({ _id: 'big', payload } as never);
    const back = await col.findOne({ _id: 'big' } as never);
    assert.equal(back?.payload.length, payload.length);
  });

  it('with auth.mode none, refuses client authentication with a clear error instead of mixing identities on pooled connections', async () => {
    const c = new MongoClient(stack.proxy.uri.replace('mongodb://', 'mongodb://user:pass@'), { serverSelectionTimeoutMS: 3000 });
    await assert.rejects(c.connect(), /mongoplex runs with auth.mode none: clients do not log in/);
    await c.close();
  });

  it('drains cursors with a small batchSize while many clients share few upstream connections', async () => {
    const col = stack.client.db('crud').collection('cursors');
    await col.insertMany(Array.from({ length: 300 }, (_, i) => ({ _id: i, pad: 'p'.repeat(100) })) as never);
    const clients = await Promise.all(Array.from({ length: 20 }, () => new MongoClient(stack.proxy.uri, { maxPoolSize: 2 }).connect()));
    const routed = (reason: string): number => Metrics.commands.value({ handling: 'forwarded', route: reason });
    const before = { cursor: routed('cursor'), unknown: routed('cursor_unknown') };
    try {
      const results = await Promise.all(clients.flatMap((c) => [0, 1].map(async () => {
        const docs = await c.db('crud').collection('cursors').find({}, { batchSize: 7, sort: { _id: 1 } }).toArray();
        return docs.map((d) => d._id as unknown as number);
      })));
      for (const ids of results) assert.deepEqual(ids, Array.from({ length: 300 }, (_, i) => i));
      const stats = proxyStats(stack.proxy.proxy);
      assert.ok(stats.pools[0]!.total <= 4, `pool stayed within maxPoolSize 4 (was ${stats.pools[0]!.total})`);
      assert.equal(stack.proxy.proxy.cursors.size, 0, 'exhausted cursors leave no routes behind');
      // 40 cursors of 300 documents in batches of 7: 42 getMores each, all found by their route.
      assert.equal(routed('cursor') - before.cursor, 40 * 42);
      assert.equal(routed('cursor_unknown') - before.unknown, 0);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('forgets a cursor route when the client kills the cursor', async () => {
    const col = stack.client.db('crud').collection('cursors');
    const cursor = col.find({}, { batchSize: 5 });
    await cursor.next();
    assert.equal(stack.proxy.proxy.cursors.size, 1);
    await cursor.close();
    assert.equal(stack.proxy.proxy.cursors.size, 0);
  });
});
