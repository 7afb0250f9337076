import assert from 'node:assert/strict';
import { MongoClient, MongoServerError } from 'mongodb';
import type { ReplicaSetFixture } from './replica-set-fixture';

/**
 * Application-level scenarios shared by every path into mongoplex (TCP, Envoy ext_proc,
 * Envoy sidecar, upstream through Envoy): what a driver user must see whichever path is used.
 */

export async function crudRoundTrip(uri: string, db: string): Promise<void> {
  const client = await new MongoClient(uri, { maxPoolSize: 3 }).connect();
  try {
    const col = client.db(db).collection<{ _id: number; name: string }>('people');
    await col.insertMany([{ _id: 1, name: 'ada' }, { _id: 2, name: 'grace' }]);
    await col.updateOne({ _id: 2 }, { $set: { name: 'hopper' } });
    assert.deepEqual(await col.find({}, { sort: { _id: 1 } }).toArray(), [{ _id: 1, name: 'ada' }, { _id: 2, name: 'hopper' }]);
    await assert.rejects(col.insertOne({ _id: 1, name: 'again' }), (e: unknown) => e instanceof MongoServerError && e.code === 11000);
    assert.equal((await col.deleteMany({})).deletedCount, 2);
    const agg = await client.db(db).collection('nums').insertMany(Array.from({ length: 30 }, (_, i) => ({ v: i })));
    assert.equal(agg.insertedCount, 30);
    const [sum] = await client.db(db).collection('nums').aggregate([{ $group: { _id: null, s: { $sum: '$v' } } }]).toArray();
    assert.equal(sum?.s, 435);
    const big = 'b'.repeat(15 * 1024 * 1024);
    await client.db(db).collection('big').insertOne({ _id: 'big', big } as never);
    assert.equal((await client.db(db).collection('big').findOne({ _id: 'big' } as never))?.big.length, big.length);
  } finally {
    await client.close();
  }
}

/** `clients` driver clients each drain two cursors in batches of 7 at once. */
export async function concurrentCursors(uri: string, db: string, clients: number): Promise<void> {
  const seed = await new MongoClient(uri).connect();
  await seed.db(db).collection('cursors').insertMany(Array.from({ length: 200 }, (_, i) => ({ _id: i })) as never);
  await seed.close();
  const all = await Promise.all(Array.from({ length: clients }, () => new MongoClient(uri, { maxPoolSize: 2 }).connect()));
  try {
    const results = await Promise.all(all.flatMap((c) => [0, 1].map(() =>
      c.db(db).collection('cursors').find({}, { batchSize: 7, sort: { _id: 1 } }).toArray())));
    for (const docs of results) assert.deepEqual(docs.map((d) => d._id), Array.from({ length: 200 }, (_, i) => i));
  } finally {
    await Promise.all(all.map((c) => c.close()));
  }
}

/** `clients` driver clients × 2 connections each, each connection doing a find and an insert. */
export async function manyClientConnections(uri: string, db: string, clients: number): Promise<number> {
  const all = Array.from({ length: clients }, () => new MongoClient(uri, { maxPoolSize: 2, minPoolSize: 2 }));
  await Promise.all(all.map((c) => c.connect()));
  let ops = 0;
  try {
    await Promise.all(all.flatMap((c, i) => [0, 1].map(async (k) => {
      const col = c.db(db).collection('many');
      await col.insertOne({ i, k });
      assert.ok(await col.findOne({ i, k }));
      ops += 2;
    })));
  } finally {
    await Promise.all(all.map((c) => c.close()));
  }
  return ops;
}

/**
 * Concurrent retryable inserts with a step-down in the middle; returns the former primary and
 * the inserts that still reached it afterwards (refused by it, then retried by the driver).
 */
export async function insertsAcrossStepDown(client: MongoClient, rs: ReplicaSetFixture, collection: string, writers: number, perWriter: number): Promise<{ formerPrimary: number; refusedByFormerPrimary: number }> {
  const col = client.db('rs').collection(collection);
  const formerPrimary = rs.primary;
  let atStepDown = -1;
  await Promise.all(Array.from({ length: writers }, (_, w) => (async () => {
    for (let i = 0; i < perWriter; i++) {
      await col.insertOne({ _id: `${w}-${i}` } as never);
      if (w === 0 && i === Math.floor(perWriter / 4)) {
        atStepDown = rs.executed.length;
        rs.stepDown();
      }
    }
  })()));
  assert.notEqual(rs.primary, formerPrimary);
  assert.equal(await col.countDocuments({}), writers * perWriter, 'every write stored exactly once');
  const refusedByFormerPrimary = rs.executed.slice(atStepDown).filter((e) => e.command === 'insert' && e.member === formerPrimary).length;
  return { formerPrimary, refusedByFormerPrimary };
}
