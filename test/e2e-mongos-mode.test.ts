import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { ReplicaSetFixture } from './support/replica-set-fixture';
import { startMongoplex } from './support/mongoplex';
import { insertsAcrossStepDown } from './support/driver-scenarios';
import { useFerretDB } from './support/setup';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

type Running = Awaited<ReturnType<typeof startMongoplex>>;

describe('mongos mode over a replica set: the proxy selects servers from $readPreference and follows failover', () => {
  let rs: ReplicaSetFixture;
  let proxy: Running;

  before(async () => {
    rs = new ReplicaSetFixture(db);
    await rs.start();
    proxy = await startMongoplex(rs.addresses[0]!, { topology: { mode: 'mongos', heartbeatMs: 300 }, upstream: { maxPoolSize: 4 } });
  });
  after(async () => {
    await proxy?.stop();
    await rs?.stop();
  });

  it('presents one mongos address; writes go to the primary, secondary reads to secondaries', async () => {
    const client = await new MongoClient(proxy.uri).connect();
    try {
      const hello = await client.db('admin').command({ hello: 1 });
      assert.equal(hello.msg, 'isdbgrid');
      const col = client.db('ms').collection('c');
      const mark = rs.executed.length;
      await col.insertOne({ _id: 1 } as never);
      for (let i = 0; i < 6; i++) await col.findOne({ _id: 1 } as never, { readPreference: 'secondary' });
      await col.findOne({ _id: 1 } as never, { readPreference: 'primary' });
      const ran = rs.executed.slice(mark).filter((e) => e.command === 'insert' || e.command === 'find');
      assert.equal(ran[0]!.member, rs.primary, 'insert on the primary');
      const secondaryFinds = ran.slice(1, 7);
      for (const f of secondaryFinds) assert.notEqual(f.member, rs.primary, 'secondary read on a secondary');
      assert.equal(ran[7]!.member, rs.primary, 'primary read on the primary');
    } finally {
      await client.close();
    }
  });

  it('honours tag sets and refuses nothing when no secondary matches secondaryPreferred (falls back to the primary)', async () => {
    const client = await new MongoClient(proxy.uri).connect();
    try {
      const col = client.db('ms').collection('c');
      const mark = rs.executed.length;
      await col.findOne({}, { readPreference: { mode: 'secondaryPreferred', tags: [{ dc: 'nowhere' }] } as never });
      const find = rs.executed.slice(mark).find((e) => e.command === 'find')!;
      assert.equal(find.member, rs.primary);
    } finally {
      await client.close();
    }
  });

  it('retryable writes that hit the former primary are retried onto the new one, each stored exactly once', async () => {
    const client = await new MongoClient(proxy.uri, { retryWrites: true }).connect();
    try {
      const { refusedByFormerPrimary } = await insertsAcrossStepDown(client, rs, 'failover', 4, 30);
      assert.ok(refusedByFormerPrimary >= 1, 'some writes reached the former primary and were refused');
    } finally {
      await client.close();
    }
  });
});

describe('mongos mode over a fleet of mongos routers: transactions and cursors stay pinned', () => {
  let fleet: ReplicaSetFixture;
  let proxy: Running;

  before(async () => {
    fleet = new ReplicaSetFixture(db, 'fleet', 3, 'mongos');
    await fleet.start();
    proxy = await startMongoplex(fleet.addresses.join(','), { topology: { mode: 'mongos', heartbeatMs: 300 }, upstream: { servers: fleet.addresses, maxPoolSize: 3 } });
  });
  after(async () => {
    await proxy?.stop();
    await fleet?.stop();
  });

  it('spreads plain traffic over the routers, but runs every statement of each transaction on one router', async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, () => new MongoClient(proxy.uri, { maxPoolSize: 3 }).connect()));
    try {
      const mark = fleet.executed.length;
      await Promise.all(clients.flatMap((c, ci) => [0, 1, 2].map(async (k) => {
        const session = c.startSession();
        try {
          session.startTransaction();
          const col = c.db('tx').collection('t');
          await col.insertOne({ ci, k, step: 1 }, { session });
          await col.insertOne({ ci, k, step: 2 }, { session });
          await col.findOne({ ci, k }, { session });
          await col.updateOne({ ci, k, step: 1 }, { $set: { done: true } }, { session });
          await session.commitTransaction();
        } finally {
          await session.endSession();
        }
      })));
      const inTxn = fleet.executed.slice(mark).filter((e) => e.lsid && e.txnNumber !== undefined && e.doc.autocommit === false);
      const byTxn = new Map<string, Set<number>>();
      for (const e of inTxn) {
        const key = `${e.lsid}/${e.txnNumber}`;
        byTxn.set(key, (byTxn.get(key) ?? new Set()).add(e.member));
      }
      assert.equal(byTxn.size, 18, '18 transactions seen');
      for (const [key, members] of byTxn) assert.equal(members.size, 1, `transaction ${key} ran on one router, not ${[...members]}`);
      const routersUsed = new Set(inTxn.map((e) => e.member));
      assert.ok(routersUsed.size >= 2, `transactions were spread over ${routersUsed.size} routers`);
      const commits = inTxn.filter((e) => e.command === 'commitTransaction');
      assert.equal(commits.length, 18);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('getMore reaches the router that opened the cursor', async () => {
    const client = await new MongoClient(proxy.uri).connect();
    try {
      await client.db('tx').collection('cur').insertMany(Array.from({ length: 50 }, (_, i) => ({ i })));
      const mark = fleet.executed.length;
      const docs = await Promise.all(Array.from({ length: 9 }, () => client.db('tx').collection('cur').find({}, { batchSize: 4 }).toArray()));
      for (const d of docs) assert.equal(d.length, 50);
      const ran = fleet.executed.slice(mark);
      const finds = ran.filter((e) => e.command === 'find');
      const getMores = ran.filter((e) => e.command === 'getMore');
      assert.equal(getMores.length, 9 * 12);
      assert.ok(new Set(finds.map((f) => f.member)).size >= 2, 'the cursors were opened on different routers');
      assert.equal(fleet.misroutedGetMores, 0, 'no getMore reached a router that did not own the cursor');
      assert.equal(proxy.proxy.cursors.size, 0);
    } finally {
      await client.close();
    }
  });
});
