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

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

function opInsert(requestId: number, ns: string, docs: object[]): Buffer {
  const body = Buffer.concat([Buffer.alloc(4), Buffer.from(ns + '\0'), ...docs.map((d) => Buffer.from(BSON.serialize(d)))]);
  const out = Buffer.concat([Buffer.alloc(HEADER_SIZE), body]);
  writeHeader(out, { messageLength: out.length, requestId, responseTo: 0, opCode: OpCode.INSERT });
  return out;
}

describe('getLastError after unacknowledged writes (legacy ≤5.0 upstream)', () => {
  let legacy: LegacyServerFixture;
  let proxy: Awaited<ReturnType<typeof startMongoplex>>;

  before(async () => {
    legacy = new LegacyServerFixture(db);
    await legacy.start();
    proxy = await startMongoplex(legacy.address, { upstream: { maxPoolSize: 4 } });
  });
  after(async () => {
    await proxy?.stop();
    await legacy?.stop();
  });

  /** Busy neighbours keep every pooled connection in rotation while the test client works. */
  async function withNeighbours<T>(work: () => Promise<T>): Promise<T> {
    const neighbours = await Promise.all(Array.from({ length: 6 }, () => RawClient.connect(proxy.port)));
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
    const c = await RawClient.connect(proxy.port);
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
    const c = await RawClient.connect(proxy.port);
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
    const c = await RawClient.connect(proxy.port);
    await c.command({ insert: 'u', documents: [{ _id: 'fresh' }], $db: 'gle' });
    const r = await c.command({ getLastError: 1, $db: 'gle' });
    assert.equal(r.ok, 1);
    assert.equal(r.err, null);
    c.destroy();
  });
});
