import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON } from 'bson';
import { startMongoplex } from './support/mongoplex';
import { RawClient, decodeReply } from './support/raw-client';
import { LegacyServerFixture } from './support/legacy-server-fixture';
import { encodeOpMsg, MsgFlag } from '../filter/wire/opmsg';
import { encodeOpQuery } from '../filter/wire/legacy';
import { HEADER_SIZE, OpCode, writeHeader } from '../filter/wire/header';
import { useFerretDB } from './support/setup';
import { Metrics } from '../filter/telemetry/metrics';
import { waitFor } from '../scripts/ports';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

function opInsert(requestId: number, ns: string, docs: object[]): Buffer {
  const body = Buffer.concat([Buffer.alloc(4), Buffer.from(ns + '\0'), ...docs.map((d) => Buffer.from(BSON.serialize(d)))]);
  const out = Buffer.concat([Buffer.alloc(HEADER_SIZE), body]);
  writeHeader(out, { messageLength: out.length, requestId, responseTo: 0, opCode: OpCode.INSERT });
  return out;
}

/** Inside a describe: the 4.2-behaving fixture over the file's FerretDB, and mongoplex in front of it. */
function useLegacyProxy(options: Parameters<typeof startMongoplex>[1]): { readonly proxy: Awaited<ReturnType<typeof startMongoplex>> } {
  const state: { legacy?: LegacyServerFixture; proxy?: Awaited<ReturnType<typeof startMongoplex>> } = {};
  before(async () => {
    state.legacy = new LegacyServerFixture(db);
    await state.legacy.start();
    state.proxy = await startMongoplex(state.legacy.address, options);
  });
  after(async () => {
    await state.proxy?.stop();
    await state.legacy?.stop();
  });
  return {
    get proxy() {
      return state.proxy!;
    },
  };
}

describe('getLastError after unacknowledged writes (legacy ≤5.0 upstream)', () => {
  const stack = useLegacyProxy({ upstream: { maxPoolSize: 4 } });

  /** Busy neighbours keep every pooled connection in rotation while the test client works. */
  async function withNeighbours<T>(work: () => Promise<T>): Promise<T> {
    const neighbours = await Promise.all(Array.from({ length: 6 }, () => RawClient.connect(stack.proxy.port)));
    let stop = false;
    const load = neighbours.map(async (n, i) => {
      while (!stop) await n.command({ insert: 'noise', documents: [{ i }], $db: 'gle' });
    });
    try {
      return await work();
    } finally {
      stop = true;
      await Promise.all(load);
      for (const n of neighbours) n.destroy();
    }
  }

  it('reports the duplicate key of an OP_MSG w:0 insert (moreToCome), on the connection that ran it', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    await c.command({ insert: 'u', documents: [{ _id: 1 }], $db: 'gle' });
    const results = await withNeighbours(async () => {
      const out = [];
      for (let i = 0; i < 20; i++) {
        c.send(encodeOpMsg(1000 + i, 0, BSON.serialize({ insert: 'u', documents: [{ _id: 1 }], writeConcern: { w: 0 }, $db: 'gle' }), MsgFlag.moreToCome));
        out.push(await c.command({ getLastError: 1, $db: 'gle' }));
      }
      return out;
    });
    for (const r of results) {
      assert.equal(r.ok, 1);
      assert.equal(r.code, 11000, `getLastError saw the duplicate key: ${JSON.stringify(r)}`);
    }
    c.destroy();
  });

  it('pins legacy OP_INSERT to the getLastError that follows (OP_QUERY form), and repeats answer the same', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    await c.command({ insert: 'legacy', documents: [{ _id: 'x' }], $db: 'gle' });
    await withNeighbours(async () => {
      for (let i = 0; i < 10; i++) {
        c.send(opInsert(2000 + i, 'gle.legacy', [{ _id: 'x' }]));
        c.send(encodeOpQuery(3000 + i, 'gle.$cmd', BSON.serialize({ getlasterror: 1 })));
        const first = decodeReply((await c.next())!);
        assert.equal(first.code, 11000, JSON.stringify(first));
        const again = await c.command({ getLastError: 1, $db: 'gle' });
        assert.equal(again.code, 11000, 'a repeated getLastError answers consistently');
        assert.equal(again.connectionId, first.connectionId);
      }
    });
    c.destroy();
  });

  it('a getLastError with no unacknowledged write before it reports no error instead of another client\'s', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    await c.command({ insert: 'u', documents: [{ _id: 'fresh' }], $db: 'gle' });
    const r = await c.command({ getLastError: 1, $db: 'gle' });
    assert.equal(r.ok, 1);
    assert.equal(r.err, null);
    c.destroy();
  });
});

describe('getLastError pins never starve the pool', () => {
  // A quarter of 16: four connections at most may be pinned.
  const stack = useLegacyProxy({ upstream: { maxPoolSize: 16, waitQueueTimeoutMs: 2000 } });

  it('16 clients repeating w:0 writes (as many as the pool has connections) hold at most a quarter of it, a reader is served throughout, and each writer\'s getLastError still reports its own write', async () => {
    const setup = await RawClient.connect(stack.proxy.port);
    await setup.command({ insert: 'dup', documents: [{ _id: 'taken' }], $db: 'gle' });
    setup.destroy();
    const reclaimedBefore = Metrics.lastErrorPinsReclaimed.value();
    const writers = await Promise.all(Array.from({ length: 16 }, () => RawClient.connect(stack.proxy.port)));
    const reader = await RawClient.connect(stack.proxy.port);
    let maxPins = 0;
    const sampler = setInterval(() => (maxPins = Math.max(maxPins, stack.proxy.proxy.lastErrorPins.size)), 10);
    try {
      // Each writer keeps writing (every 100 ms, renewing its pin) until the reader is done.
      let readsDone = false;
      const writing = writers.map(async (w, i) => {
        for (let k = 0; k < 5 || !readsDone; k++) {
          w.send(encodeOpMsg(5000 + k, 0, BSON.serialize({ insert: 'dup', documents: [{ _id: 'taken', w: i }], writeConcern: { w: 0 }, $db: 'gle' }), MsgFlag.moreToCome));
          await new Promise((r) => setTimeout(r, 100));
        }
        return w.command({ getLastError: 1, $db: 'gle' });
      });
      await new Promise((r) => setTimeout(r, 300)); // the writers hold their pins
      const reads: Array<{ ok: number; ms: number }> = [];
      for (let k = 0; k < 30; k++) {
        const t = Date.now();
        const r = await reader.command({ find: 'dup', filter: { _id: 'taken' }, $db: 'gle' });
        reads.push({ ok: r.ok as number, ms: Date.now() - t });
        await new Promise((r) => setTimeout(r, 20));
      }
      readsDone = true;
      const gles = await Promise.all(writing);
      assert.deepEqual(reads.filter((r) => r.ok !== 1), [], 'every read was served');
      assert.ok(maxPins <= 4, `at most four pinned connections at once (saw ${maxPins})`);
      for (const g of gles) assert.equal(g.code, 11000, `each writer's getLastError reports its duplicate key: ${JSON.stringify(g)}`);
      assert.ok(Metrics.lastErrorPinsReclaimed.value() > reclaimedBefore, 'pins over the cap were reclaimed');
    } finally {
      clearInterval(sampler);
      for (const c of [...writers, reader]) c.destroy();
    }
  });
});

describe('getLastError against a server without it (5.1+ wire version)', () => {
  let proxy: Awaited<ReturnType<typeof startMongoplex>>;

  before(async () => {
    proxy = await startMongoplex(db.address, { upstream: { maxPoolSize: 2 } });
  });
  after(async () => {
    await proxy?.stop();
  });

  it('legacy opcodes are answered by the proxy as a 5.1+ server would, never forwarded (FerretDB drops the connection on them)', async () => {
    const c = await RawClient.connect(proxy.port);
    await c.command({ ping: 1, $db: 'admin' });
    const closedBefore = Metrics.upstreamConnectionsClosed.value();
    const ins = Buffer.concat([Buffer.alloc(HEADER_SIZE), Buffer.alloc(4), Buffer.from('gle.legacy\0'), Buffer.from(BSON.serialize({ a: 1 }))]);
    writeHeader(ins, { messageLength: ins.length, requestId: 30, responseTo: 0, opCode: OpCode.INSERT });
    c.send(ins);
    const gm = Buffer.concat([Buffer.alloc(HEADER_SIZE), Buffer.alloc(4), Buffer.from('gle.legacy\0'), Buffer.alloc(12)]);
    writeHeader(gm, { messageLength: gm.length, requestId: 31, responseTo: 0, opCode: OpCode.GET_MORE });
    c.send(gm);
    const reply = (await c.next())!;
    assert.equal(reply.header.responseTo, 31, 'the OP_INSERT got no reply, the OP_GET_MORE one');
    assert.equal(decodeReply(reply).codeName, 'CommandNotSupported');
    assert.match(String(decodeReply(reply).errmsg), /OP_GET_MORE is not supported by the upstream server \(MongoDB 5\.1 removed it\)/);
    assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    assert.equal(Metrics.upstreamConnectionsClosed.value(), closedBefore, 'no pooled connection was lost');
    c.destroy();
  });

  it('w:0 writes pin nothing, and getLastError gets the server\'s own answer', async () => {
    const c = await RawClient.connect(proxy.port);
    await c.command({ ping: 1, $db: 'admin' });
    for (let k = 0; k < 5; k++) c.send(encodeOpMsg(7000 + k, 0, BSON.serialize({ insert: 'free', documents: [{ k }], writeConcern: { w: 0 }, $db: 'gle' }), MsgFlag.moreToCome));
    await waitFor('the writes to land', async () => ((await c.command({ count: 'free', $db: 'gle' })).n === 5 ? true : undefined), 5000);
    assert.equal(proxy.proxy.lastErrorPins.size, 0);
    const direct = await RawClient.connect(db.port);
    const expected = await direct.command({ getLastError: 1, $db: 'gle' });
    direct.destroy();
    const r = await c.command({ getLastError: 1, $db: 'gle' });
    assert.equal(r.ok, expected.ok);
    assert.equal(r.code, expected.code);
    c.destroy();
  });
});

describe('malformed legacy messages are not forwarded (a server would drop the pooled connection)', () => {
  const stack = useLegacyProxy({ upstream: { maxPoolSize: 2 } });

  function legacyMessage(opCode: number, requestId: number, body: Buffer): Buffer {
    const out = Buffer.concat([Buffer.alloc(HEADER_SIZE), body]);
    writeHeader(out, { messageLength: out.length, requestId, responseTo: 0, opCode });
    return out;
  }

  it('an OP_INSERT with a broken document, an OP_KILL_CURSORS that miscounts, an OP_UPDATE with trailing bytes: no reply, getLastError reports each, no pooled connection lost', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    await c.command({ ping: 1, $db: 'admin' });
    const closedBefore = Metrics.upstreamConnectionsClosed.value();
    const broken = Buffer.from(BSON.serialize({ a: 'x' }));
    broken[4] = 0x7f; // an element type that does not exist
    const cases: Array<[Buffer, RegExp]> = [
      [legacyMessage(OpCode.INSERT, 10, Buffer.concat([Buffer.alloc(4), Buffer.from('gle.bad\0'), broken])), /OP_INSERT document is invalid BSON/],
      [legacyMessage(OpCode.KILL_CURSORS, 11, Buffer.concat([Buffer.alloc(4), Buffer.from([3, 0, 0, 0]), Buffer.alloc(8)])), /OP_KILL_CURSORS says 3 cursor ids but carries 1/],
      [legacyMessage(OpCode.UPDATE, 12, Buffer.concat([Buffer.alloc(4), Buffer.from('gle.bad\0'), Buffer.alloc(4), Buffer.from(BSON.serialize({})), Buffer.from(BSON.serialize({ $set: { a: 1 } })), Buffer.from([1, 2, 3])])), /OP_UPDATE has 3 bytes after its last field/],
    ];
    for (const [message, expected] of cases) {
      c.send(message);
      const gle = await c.command({ getLastError: 1, $db: 'gle' });
      assert.equal(gle.ok, 1);
      assert.match(String(gle.err), expected);
    }
    assert.equal(Metrics.upstreamConnectionsClosed.value(), closedBefore, 'no pooled connection was dropped');
    const bad = await c.command({ insert: 'bad', documents: [{ fine: true }], $db: 'gle' });
    assert.equal(bad.ok, 1, 'the connection is in step');
    c.destroy();
  });

  it('a malformed OP_GET_MORE gets an OP_REPLY error', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    c.send(legacyMessage(OpCode.GET_MORE, 20, Buffer.concat([Buffer.alloc(4), Buffer.from('nonamespace\0'), Buffer.alloc(12)])));
    const reply = (await c.next())!;
    assert.equal(reply.header.opCode, OpCode.REPLY);
    assert.match(String(decodeReply(reply).errmsg), /OP_GET_MORE collection name 'nonamespace' is not db\.collection/);
    c.destroy();
  });
});
