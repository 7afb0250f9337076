import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BSON, Long, ObjectId, type Document } from 'bson';
import { MongoClient } from 'mongodb';
import { readCapture, readDocuments, type CaptureHeader, type CaptureRecord } from '../filter/traffic/format';
import type { ReplayReport } from '../filter/traffic/replay';
import { ReplicaSetFixture } from './support/replica-set-fixture';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { useFerretDB } from './support/setup';

const run = promisify(execFile);

/** Documents with numeric ids. */
type Numbered = { _id: number } & Document;
const MAIN = path.resolve(__dirname, '..', 'filter', 'main.js');

/** The recording side and the replay side: two independent FerretDBs. */
const recorded = useFerretDB();
const candidate = useFerretDB();

async function control(proxy: TestMongoplex, action: 'start' | 'stop', body: Document = {}): Promise<Document> {
  const res = await fetch(`http://127.0.0.1:${proxy.admin!.port}/capture/${action}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const json = (await res.json()) as Document;
  assert.equal(res.status, 200, JSON.stringify(json));
  return json;
}

async function records(files: string[]): Promise<{ headers: CaptureHeader[]; records: CaptureRecord[] }> {
  const headers: CaptureHeader[] = [];
  const out: CaptureRecord[] = [];
  for (const f of files) {
    for await (const item of readCapture(f)) {
      if ('body' in item) out.push(item);
      else headers.push(item);
    }
  }
  return { headers, records: out };
}

async function contents(uri: string, db: string, coll: string): Promise<Document[]> {
  const c = await new MongoClient(uri).connect();
  try {
    return await c.db(db).collection(coll).find({}).sort({ _id: 1 }).toArray();
  } finally {
    await c.close();
  }
}

describe('record through mongoplex, replay against another server: same documents, same results', () => {
  let rsRecorded: ReplicaSetFixture;
  let rsCandidate: ReplicaSetFixture;
  let proxy: TestMongoplex;
  const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-capture-'));

  before(async () => {
    // Single-member "mongos" fixtures over each FerretDB: they take transactions (FerretDB alone has none).
    rsRecorded = new ReplicaSetFixture(recorded, 'cap', 1, 'mongos');
    rsCandidate = new ReplicaSetFixture(candidate, 'cand', 1, 'mongos');
    await rsRecorded.start();
    await rsCandidate.start();
    proxy = await startMongoplex(rsRecorded.addresses[0]!, { capture: { dir }, admin: { port: 0 } });
  });
  after(async () => {
    await proxy?.stop();
    await rsRecorded?.stop();
    await rsCandidate?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a driver workload (CRUD, getMore, aggregation, a transaction) replays at --speed 1 with 0 error-code differences and leaves the same documents', async () => {
    await control(proxy, 'start');
    const client = await new MongoClient(proxy.uri, { maxPoolSize: 4 }).connect();
    try {
      const items = client.db('shop').collection<Numbered>('items');
      await items.insertMany(Array.from({ length: 40 }, (_, i) => ({ _id: i, sku: `sku-${i}`, qty: i % 7, tags: ['a', `t${i % 3}`] })));
      await items.updateMany({ qty: { $gte: 5 } }, { $set: { restock: true } });
      await items.deleteOne({ _id: 3 });
      await items.findOneAndUpdate({ _id: 4 }, { $inc: { qty: 10 } });
      const all = await items.find({}, { batchSize: 6 }).sort({ _id: 1 }).toArray(); // getMores
      assert.equal(all.length, 39);
      const grouped = await items.aggregate([{ $match: { qty: { $lt: 5 } } }, { $group: { _id: '$qty', n: { $sum: 1 } } }], { batchSize: 2 }).toArray();
      assert.ok(grouped.length > 0);
      assert.equal(await items.countDocuments({ restock: true }), 10);
      const session = client.startSession();
      try {
        await session.withTransaction(async () => {
          await items.insertOne({ _id: 100, sku: 'in-txn', qty: 1 }, { session });
          await client.db('shop').collection<Numbered>('orders').insertOne({ _id: 1, item: 100 }, { session });
        });
      } finally {
        await session.endSession();
      }
      // A command that fails, recorded with its code: the replay must fail it the same way.
      await assert.rejects(items.insertOne({ _id: 100, sku: 'dup' }), /duplicate key/);
    } finally {
      await client.close();
    }
    const status = await control(proxy, 'stop');
    assert.equal(status.active, false);
    assert.deepEqual(status.dropped, {});
    const files = readdirSync(dir).filter((f) => f.startsWith('capture-')).map((f) => path.join(dir, f));
    assert.equal(files.length, 1);
    assert.match(files[0]!, /\.bson\.zst$/);

    const { headers, records: recs } = await records(files);
    assert.equal(headers[0]!.mongoplexCapture, 1);
    const names = new Set(recs.map((r) => r.cmd));
    for (const n of ['insert', 'update', 'delete', 'findAndModify', 'find', 'getMore', 'aggregate', 'commitTransaction']) assert.ok(names.has(n), `${n} recorded (got ${[...names].join(', ')})`);
    for (const n of ['hello', 'isMaster', 'ismaster', 'saslStart', 'saslContinue']) assert.ok(!names.has(n), `${n} is not recorded`);
    const bulk = recs.find((r) => r.cmd === 'insert' && r.seqs.length > 0);
    assert.equal(bulk?.seqs[0]!.documents.length, 40, 'insertMany recorded with its document sequence');
    const dup = recs.filter((r) => r.cmd === 'insert' && !r.ok);
    assert.equal(dup.length, 0, 'a write error is ok:1 with writeErrors, as the server answered');

    const out = path.join(dir, 'report.json');
    const target = `mongodb://${rsCandidate.addresses[0]}/?directConnection=true`;
    const { stdout } = await run(process.execPath, [MAIN, 'replay', ...files, '--target', target, '--speed', '1', '--json', out, '--no-progress']);
    const report = JSON.parse(readFileSync(out, 'utf8')) as ReplayReport;
    assert.equal(report.records, recs.length);
    assert.equal(report.replayed, recs.length);
    assert.equal(report.total.errorCodeDifferences, 0, JSON.stringify(report.total.codeChanges));
    assert.ok(report.byCommand.getMore!.count >= 6, 'getMores replayed on the remapped cursors');
    assert.ok(report.byCollection['shop.items']!.count > 0);
    assert.match(stdout, /error-code differences: 0/);
    assert.ok(report.replaySeconds >= report.recordedSeconds * 0.9, `--speed 1 keeps the recorded pace (${report.replaySeconds} s vs ${report.recordedSeconds} s)`);

    for (const coll of ['items', 'orders']) {
      assert.deepEqual(await contents(candidate.uri, 'shop', coll), await contents(recorded.uri, 'shop', coll), `shop.${coll} the same on both servers`);
    }
  });

  it('redaction leaves no original value in the capture, keeps types and lengths, and equal values stay equal', async () => {
    await control(proxy, 'start', { redact: true, compression: 'none' });
    const secretId = new ObjectId();
    const client = await new MongoClient(proxy.uri).connect();
    try {
      const people = client.db('secret').collection<Document>('people');
      await people.insertOne({ _id: secretId, name: 'Zebulon Quarternight', ssn: 987654321, balance: 1234.5678, born: new Date('1961-07-04') });
      await people.updateOne({ name: 'Zebulon Quarternight' }, { $set: { email: 'zebulon@example.org' } });
      assert.equal((await people.findOne({ _id: secretId }))?.email, 'zebulon@example.org');
      await people.aggregate([{ $match: { ssn: 987654321 } }, { $addFields: { label: 'Magnificent-label', copy: '$name' } }]).toArray();
      await people.updateOne({ _id: secretId }, [{ $set: { nick: 'Magnificent-nick' } }]).catch(() => undefined); // FerretDB may refuse update pipelines; recorded either way
    } finally {
      await client.close();
    }
    const status = await control(proxy, 'stop');
    const files = status.files as string[];
    const raw = Buffer.concat(await collect(readDocuments(files[0]!)));
    for (const needle of [Buffer.from('Zebulon'), Buffer.from('Magnificent'), Buffer.from('zebulon@example.org'), Buffer.from(secretId.id), int32(987654321), double(1234.5678), int64(new Date('1961-07-04').getTime())]) {
      assert.equal(raw.indexOf(needle), -1, `${needle.toString('hex')} is not in the capture`);
    }
    const { headers, records: recs } = await records(files);
    assert.equal(headers[0]!.redacted, true);
    const insert = recs.find((r) => r.cmd === 'insert')!;
    const inSequence = insert.seqs[0]?.documents[0];
    const doc = (inSequence ? BSON.deserialize(inSequence, { promoteValues: false }) : (BSON.deserialize(insert.body, { promoteValues: false }).documents as Document[])[0]!);
    assert.ok(doc._id instanceof ObjectId);
    assert.equal(typeof doc.name, 'string');
    assert.equal(doc.name.length, 'Zebulon Quarternight'.length);
    const find = BSON.deserialize(recs.find((r) => r.cmd === 'find')!.body, { promoteValues: false });
    assert.equal(find.find, 'people', 'the collection name is kept');
    assert.ok((find.filter._id as ObjectId).equals(doc._id as ObjectId), 'the same _id gets the same placeholder');
    const agg = BSON.deserialize(recs.find((r) => r.cmd === 'aggregate')!.body);
    assert.equal(agg.pipeline[1].$addFields.copy, '$name', 'field paths in expressions are kept');
  });
});

describe('capture queue: a full queue drops and counts, clients are not slowed or failed', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-capture-'));
  let proxy: TestMongoplex;
  before(async () => {
    proxy = await startMongoplex(recorded.address, { capture: { dir, queueBytes: 8 * 1024 }, admin: { port: 0 } });
  });
  after(async () => {
    await proxy?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('commands larger than the queue are dropped and counted while every client command succeeds', async () => {
    await control(proxy, 'start');
    const client = await new MongoClient(proxy.uri, { maxPoolSize: 8 }).connect();
    try {
      const c = client.db('queue').collection<Numbered>('big');
      const blob = 'x'.repeat(16 * 1024);
      const results = await Promise.all(Array.from({ length: 24 }, (_, i) => c.insertOne({ _id: i, blob })));
      assert.equal(results.length, 24);
      assert.equal(await c.countDocuments(), 24);
    } finally {
      await client.close();
    }
    const stats = (await (await fetch(`http://127.0.0.1:${proxy.admin!.port}/stats`)).json()) as Document;
    assert.equal(stats.capture.dropped.queue_full, 24);
    assert.equal(stats.counters['mongoplex.capture.records']['result=dropped_queue_full'], 24);
    const status = await control(proxy, 'stop');
    assert.ok(status.recorded >= 1, 'the small count command was recorded');
  });

  it('control endpoints: a second start is refused with 409, unknown settings with 400', async () => {
    await control(proxy, 'start');
    const again = await fetch(`http://127.0.0.1:${proxy.admin!.port}/capture/start`, { method: 'POST' });
    assert.equal(again.status, 409);
    assert.match(((await again.json()) as Document).error, /already running/);
    const bad = await fetch(`http://127.0.0.1:${proxy.admin!.port}/capture/start`, { method: 'POST', body: '{"dir":"/etc"}', headers: { 'content-type': 'application/json' } });
    assert.equal(bad.status, 400);
    await control(proxy, 'stop');
  });

  it('with admin.token set, control requests without the token get 401 and change nothing', async () => {
    const token = 'a-long-enough-admin-token';
    const guarded = await startMongoplex(recorded.address, { capture: { dir }, admin: { port: 0, token } });
    try {
      const url = `http://127.0.0.1:${guarded.admin!.port}/capture/start`;
      for (const authorization of [undefined, 'Bearer wrong-token-of-some-length', `Basic ${token}`]) {
        const res = await fetch(url, { method: 'POST', headers: authorization ? { authorization } : {} });
        assert.equal(res.status, 401);
        assert.doesNotMatch(await res.text(), new RegExp(token));
      }
      assert.equal(guarded.proxy.recorder.active, false);
      const ok = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      assert.equal(ok.status, 200);
      assert.equal(guarded.proxy.recorder.active, true);
      const stats = await (await fetch(`http://127.0.0.1:${guarded.admin!.port}/stats`)).text();
      assert.doesNotMatch(stats, new RegExp(token), 'the token is not in /stats');
    } finally {
      await guarded.stop();
    }
  });
});

describe('mirror: reads are copied to a shadow server and compared; the client only ever waits for the primary', () => {
  let proxy: TestMongoplex;
  before(async () => {
    for (const db of [recorded, candidate]) {
      const c = await new MongoClient(db.uri).connect();
      await c.db('mirror').collection<Numbered>('same').insertMany(Array.from({ length: 10 }, (_, i) => ({ _id: i, v: i })));
      await c.db('mirror').collection<Numbered>('drift').insertMany(Array.from({ length: 10 }, (_, i) => ({ _id: i, v: db === candidate && i === 5 ? 'changed' : i })));
      await c.close();
    }
    proxy = await startMongoplex(recorded.address, { mirror: { target: candidate.address, fraction: 1, poolSize: 2, maxQueue: 8, timeoutMs: 500 }, admin: { port: 0 } });
  });
  after(async () => {
    process.kill(candidate.pid!, 'SIGCONT');
    await proxy?.stop();
  });

  it('every read reaches the shadow; matching and differing replies are counted per collection', async () => {
    const client = await new MongoClient(proxy.uri).connect();
    try {
      for (let i = 0; i < 5; i++) {
        await client.db('mirror').collection('same').find({}).toArray();
        await client.db('mirror').collection('drift').find({}).toArray();
      }
      await client.db('mirror').collection<Numbered>('same').insertOne({ _id: 99 }); // a write: never mirrored
      await client.db('mirror').collection<Numbered>('same').deleteOne({ _id: 99 });
    } finally {
      await client.close();
    }
    await waitUntil(() => proxy.proxy.mirror.status().sent === 10);
    const s = proxy.proxy.mirror.status();
    assert.deepEqual(s.namespaces, { 'mirror.same': { matched: 5, differed: 0 }, 'mirror.drift': { matched: 0, differed: 5 } });
    assert.equal(s.sent, 10);
    assert.deepEqual(s.dropped, {});
    const shadow = await contents(candidate.uri, 'mirror', 'same');
    assert.equal(shadow.length, 10, 'the write was not mirrored');
  });

  it('a stopped shadow (SIGSTOP) costs clients nothing: every read is answered; each mirrored read is sent or dropped and counted', async () => {
    const before = proxy.proxy.mirror.status();
    process.kill(candidate.pid!, 'SIGSTOP');
    const client = await new MongoClient(proxy.uri).connect();
    try {
      for (let i = 0; i < 40; i++) assert.equal((await client.db('mirror').collection('same').find({}).toArray()).length, 10);
    } finally {
      await client.close();
    }
    await waitUntil(() => proxy.proxy.mirror.status().inFlight === 0 && proxy.proxy.mirror.status().queued === 0, 10_000);
    const s = proxy.proxy.mirror.status();
    const dropped = Object.values(s.dropped).reduce((a, b) => a + b, 0) - Object.values(before.dropped).reduce((a, b) => a + b, 0);
    assert.equal(s.sent - before.sent, 0, 'nothing was answered by a stopped shadow');
    assert.equal(dropped, 40, `every mirrored read dropped and counted: ${JSON.stringify(s.dropped)}`);
    assert.ok((s.dropped.timeout ?? 0) >= 1, `the shadow's silence counted as a timeout: ${JSON.stringify(s.dropped)}`);
    assert.ok((s.dropped.shadow_unavailable ?? 0) + (s.dropped.queue_full ?? 0) > 0, 'then reads were dropped without waiting');
    process.kill(candidate.pid!, 'SIGCONT');
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function int32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
}
function double(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return b;
}
function int64(v: number): Buffer {
  return Buffer.from(Long.fromNumber(v).toBytesLE());
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const i of items) out.push(i);
  return out;
}
