import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON, Long } from 'bson';
import { MongoClient } from 'mongodb';
import { waitFor } from '../scripts/ports';
import { ReplicaSetFixture } from './support/replica-set-fixture';
import { startMongoplex } from './support/mongoplex';
import { RawClient } from './support/raw-client';
import { useFerretDB } from './support/setup';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

describe('load-balanced clients (loadBalanced=true)', () => {
  let fleet: ReplicaSetFixture;
  let proxy: Awaited<ReturnType<typeof startMongoplex>>;

  before(async () => {
    fleet = new ReplicaSetFixture(db, 'fleet', 2, 'mongos');
    await fleet.start();
    proxy = await startMongoplex(fleet.addresses[0]!, { topology: { mode: 'mongos', heartbeatMs: 300 }, upstream: { servers: fleet.addresses } });
  });
  after(async () => {
    await proxy?.stop();
    await fleet?.stop();
  });

  it('the official driver in load-balanced mode runs CRUD, cursors and a transaction', async () => {
    const client = await new MongoClient(`${proxy.uri}?loadBalanced=true`).connect();
    try {
      const col = client.db('lb').collection('c');
      await col.insertMany(Array.from({ length: 25 }, (_, i) => ({ i })));
      assert.equal((await col.find({}, { batchSize: 4 }).toArray()).length, 25);
      const session = client.startSession();
      await session.withTransaction(async () => {
        await col.insertOne({ tx: 1 }, { session });
        await col.updateOne({ tx: 1 }, { $set: { ok: true } }, { session });
      });
      await session.endSession();
      assert.equal(await col.countDocuments({ tx: 1, ok: true }), 1);
    } finally {
      await client.close();
    }
  });

  it('hello carries a serviceId; when the client vanishes, its cursors are killed and its transaction aborted upstream', async () => {
    const c = await RawClient.connect(proxy.port);
    const hello = await c.command({ hello: 1, loadBalanced: true, $db: 'admin' });
    assert.ok(hello.serviceId instanceof BSON.ObjectId);
    assert.equal(hello.msg, 'isdbgrid');
    await c.command({ insert: 'gone', documents: Array.from({ length: 10 }, (_, i) => ({ i })), $db: 'lb' });
    const found = await c.command({ find: 'gone', batchSize: 2, $db: 'lb' });
    const cursorId = (found.cursor as { id: Long }).id;
    assert.ok(!cursorId.isZero());
    const lsid = { id: new BSON.UUID() };
    const txn = await c.command({ insert: 'gone', documents: [{ in: 'txn' }], lsid, txnNumber: Long.fromNumber(1), startTransaction: true, autocommit: false, $db: 'lb' });
    assert.equal(txn.ok, 1);
    c.destroy();
    const lsidHex = Buffer.from(lsid.id.buffer).toString('hex');
    const killed = await waitFor('killCursors upstream', async () =>
      fleet.executed.find((e) => e.command === 'killCursors' && (e.doc.cursors as Long[]).some((id) => id.equals(cursorId))));
    assert.equal(killed.db, 'lb');
    const aborted = await waitFor('abortTransaction upstream', async () =>
      fleet.executed.find((e) => e.command === 'abortTransaction' && e.lsid === lsidHex));
    assert.equal(aborted.txnNumber, 1);
  });

  it('a plain (not load-balanced) client that vanishes leaves cursor cleanup to the server', async () => {
    const c = await RawClient.connect(proxy.port);
    await c.command({ hello: 1, $db: 'admin' });
    const found = await c.command({ find: 'gone', batchSize: 2, $db: 'lb' });
    const cursorId = (found.cursor as { id: Long }).id;
    c.destroy();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(fleet.executed.some((e) => e.command === 'killCursors' && (e.doc.cursors as Long[]).some((id) => id.equals(cursorId))), false);
  });
});
