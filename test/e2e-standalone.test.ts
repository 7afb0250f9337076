import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient, MongoServerError, ReadPreference } from 'mongodb';
import { waitFor } from '../scripts/ports';
import { driverPrograms, runDriverProgram } from './support/driver-programs';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { RawClient } from './support/raw-client';
import { ReplicaSetFixture } from './support/replica-set-fixture';
import { useFerretDB, useFrontedMongoplex } from './support/setup';
import { StandaloneMongodFixture } from './support/standalone-mongod-fixture';

/**
 * What drivers are told follows what is behind the proxy. In front of a standalone mongod (the
 * fixture: FerretDB storage that refuses `txnNumber` as a standalone mongod does), a driver
 * must behave exactly as it does directly: no transaction numbers on ordinary writes, and a
 * transaction that fails the same way.
 */

const db = useFerretDB();

type Via = 'direct' | 'tcp' | 'envoy';
const VIAS: readonly Via[] = ['direct', 'tcp', 'envoy'];

/** Each default-option write and a transaction attempt through the Node driver; the outcome of each. */
async function nodeDefaultWrites(uri: string, dbName: string): Promise<Record<string, string>> {
  const client = await new MongoClient(uri, { serverSelectionTimeoutMS: 5000 }).connect();
  const outcomes: Record<string, string> = {};
  const attempt = async (name: string, op: () => Promise<unknown>): Promise<void> => {
    try {
      await op();
      outcomes[name] = 'ok';
    } catch (err) {
      const e = err as MongoServerError;
      outcomes[name] = `${e.name} ${e.code} ${e.message}`;
    }
  };
  try {
    const col = client.db(dbName).collection<{ _id: number | string; v?: number }>('w');
    await attempt('insertOne', () => col.insertOne({ _id: 1 }));
    await attempt('insertMany', () => col.insertMany([{ _id: 2 }, { _id: 3 }]));
    await attempt('updateOne', () => col.updateOne({ _id: 1 }, { $set: { v: 1 } }));
    await attempt('findOneAndUpdate', () => col.findOneAndUpdate({ _id: 2 }, { $set: { v: 2 } }));
    await attempt('deleteOne', () => col.deleteOne({ _id: 3 }));
    await attempt('bulkWrite', () => col.bulkWrite([{ insertOne: { document: { _id: 4 } } }, { updateOne: { filter: { _id: 4 }, update: { $set: { v: 4 } } } }]));
    await attempt('transaction', async () => {
      const session = client.startSession();
      try {
        await session.withTransaction(() => col.insertOne({ _id: 'txn' }, { session }));
      } finally {
        await session.endSession();
      }
    });
    return outcomes;
  } finally {
    await client.close();
  }
}

describe('in front of a standalone mongod (fixture that refuses transaction numbers)', () => {
  const mongod = new StandaloneMongodFixture(db);
  before(() => mongod.start());
  after(() => mongod.stop());
  const stack = useFrontedMongoplex(() => mongod.address, () => ({}));
  const uri = (via: Via): string => (via === 'direct' ? mongod.uri : stack.uri(via));

  it('presents a standalone, not a mongos: no msg "isdbgrid", with the server\'s session timeout', async () => {
    const c = await RawClient.connect(stack.proxy().port);
    try {
      const hello = await c.command({ hello: 1, $db: 'admin' });
      assert.equal(hello.msg, undefined);
      assert.equal(hello.setName, undefined);
      assert.equal(hello.isWritablePrimary, true);
      assert.equal(hello.logicalSessionTimeoutMinutes, 30);
    } finally {
      c.destroy();
    }
  });

  it('the Node driver\'s default writes succeed and a transaction fails exactly as directly, through both ingresses', async () => {
    const outcomes: Record<string, Record<string, string>> = {};
    for (const via of VIAS) {
      const mark = mongod.executed.length;
      outcomes[via] = await nodeDefaultWrites(uri(via), `node_${via}`);
      const numbered = mongod.executed.slice(mark).filter((e) => e.hasTxnNumber).map((e) => e.command);
      assert.deepEqual(numbered, ['insert', 'abortTransaction'], `${via}: only the transaction's statement and its abort carried a txnNumber`);
    }
    for (const op of ['insertOne', 'insertMany', 'updateOne', 'findOneAndUpdate', 'deleteOne', 'bulkWrite']) assert.equal(outcomes.direct![op], 'ok', `${op} directly`);
    // The driver words the standalone's IllegalOperation (20) itself.
    assert.match(outcomes.direct!.transaction!, /This MongoDB deployment does not support retryable writes/);
    assert.deepEqual(outcomes.tcp, outcomes.direct);
    assert.deepEqual(outcomes.envoy, outcomes.direct);
  });

  it('pymongo\'s default writes and a transaction attempt end the same directly and through both ingresses', async () => {
    const pymongo = driverPrograms().pymongo;
    const outcomes: Record<string, unknown> = {};
    for (const via of VIAS) {
      const r = await runDriverProgram(pymongo, uri(via), `py_${via}`, ['default_writes']);
      assert.equal(r.code, 0, r.stderr);
      outcomes[via] = r.lines[0]!.outcomes;
    }
    const direct = outcomes.direct as Record<string, string>;
    assert.equal(direct.insert_one, 'ok');
    assert.equal(direct.bulk_write, 'ok');
    assert.deepEqual(outcomes.tcp, direct);
    assert.deepEqual(outcomes.envoy, direct);
  });

  it('follows the server when it is restarted as a replica-set member: drivers see a mongos and their retryable writes carry txnNumber', async () => {
    const client = await new MongoClient(stack.uri('tcp'), { heartbeatFrequencyMS: 500 }).connect();
    try {
      const col = client.db('restart').collection('w');
      const mark = mongod.executed.length;
      await col.insertOne({ before: true });
      assert.deepEqual(mongod.executed.slice(mark).map((e) => [e.command, e.hasTxnNumber]), [['insert', false]]);
      await mongod.restartAs('replicaSetMember');
      const c = await RawClient.connect(stack.proxy().port);
      try {
        await waitFor('the proxy to present a mongos', async () => ((await c.command({ hello: 1, $db: 'admin' })).msg === 'isdbgrid' ? true : undefined));
      } finally {
        c.destroy();
      }
      await waitFor('the driver to see a mongos', async () => {
        const mark = mongod.executed.length;
        await col.insertOne({ after: true });
        return mongod.executed.slice(mark).some((e) => e.command === 'insert' && e.hasTxnNumber) ? true : undefined;
      });
    } finally {
      await client.close();
      await mongod.restartAs('standalone');
    }
  });
});

describe('mongoplex presented as a mongos refuses what a mongos refuses', () => {
  let fleet: ReplicaSetFixture;
  let proxy: TestMongoplex;
  before(async () => {
    fleet = new ReplicaSetFixture(db, 'rs0', 3);
    await fleet.start();
    proxy = await startMongoplex(fleet.addresses[0]!, { topology: { mode: 'mongos', heartbeatMs: 90_000 }, upstream: { servers: fleet.addresses } });
    await waitFor('a primary', async () => (proxy.proxy.monitor.primary() ? true : undefined));
  });
  after(async () => {
    await proxy?.stop();
    await fleet?.stop();
  });

  it('maxStalenessSeconds below 90 is MaxStalenessOutOfRange (160), as a mongos answers the driver', async () => {
    const client = await new MongoClient(proxy.uri).connect();
    try {
      const col = client.db('rp').collection('c');
      await col.insertOne({ a: 1 });
      const stale = new ReadPreference('secondary', undefined, { maxStalenessSeconds: 30 });
      await assert.rejects(col.find({}, { readPreference: stale }).toArray(), (err: unknown) => {
        assert.ok(err instanceof MongoServerError);
        assert.equal(err.code, 160);
        assert.equal(err.codeName, 'MaxStalenessOutOfRange');
        assert.equal(err.message, 'maxStalenessSeconds value can not be less than 90');
        return true;
      });
      const fine = new ReadPreference('secondary', undefined, { maxStalenessSeconds: 120 });
      assert.equal((await col.find({}, { readPreference: fine }).toArray()).length, 1);
    } finally {
      await client.close();
    }
  });

  it('over a replica set, maxStalenessSeconds below the heartbeat plus the idle write period is refused too', async () => {
    const c = await RawClient.connect(proxy.port);
    try {
      await c.command({ hello: 1, $db: 'admin' });
      const r = await c.command({ find: 'c', $readPreference: { mode: 'secondaryPreferred', maxStalenessSeconds: 95 }, $db: 'rp' });
      assert.deepEqual([r.ok, r.code, r.errmsg], [0, 160, 'Parameter maxStalenessSeconds cannot be less than 100']);
    } finally {
      c.destroy();
    }
  });

  it('replSetGetStatus is CommandNotFound, as on a mongos: the real member addresses never reach the client', async () => {
    const c = await RawClient.connect(proxy.port);
    try {
      await c.command({ hello: 1, $db: 'admin' });
      const mark = fleet.executed.length;
      for (const command of ['replSetGetStatus', 'replSetStepDown']) {
        const r = await c.command({ [command]: 1, $db: 'admin' });
        assert.deepEqual([r.ok, r.code, r.codeName, r.errmsg], [0, 59, 'CommandNotFound', `no such command: '${command}'`]);
      }
      assert.deepEqual(fleet.executed.slice(mark).filter((e) => e.command.startsWith('replSet')), [], 'nothing was forwarded');
    } finally {
      c.destroy();
    }
  });

  it('other malformed read preferences get the mongos error codes', async () => {
    const c = await RawClient.connect(proxy.port);
    try {
      await c.command({ hello: 1, $db: 'admin' });
      const cases: Array<[unknown, number, string]> = [
        [{ mode: 'fastest' }, 2, 'BadValue'],
        [{}, 4, 'NoSuchKey'],
        [{ mode: 1 }, 14, 'TypeMismatch'],
        ['secondary', 14, 'TypeMismatch'],
        [{ mode: 'primary', tags: [{ dc: 'east' }] }, 2, 'BadValue'],
        [{ mode: 'primary', maxStalenessSeconds: 120 }, 2, 'BadValue'],
        [{ mode: 'secondary', maxStalenessSeconds: -5 }, 2, 'BadValue'],
      ];
      for (const [rp, code, codeName] of cases) {
        const r = await c.command({ find: 'c', $readPreference: rp, $db: 'rp' });
        assert.deepEqual([r.ok, r.code, r.codeName], [0, code, codeName], JSON.stringify(rp));
      }
      const ok = await c.command({ find: 'c', $readPreference: { mode: 'primary', tags: [{}] }, $db: 'rp' });
      assert.equal(ok.ok, 1, 'an empty tag set is the same as none');
    } finally {
      c.destroy();
    }
  });
});
