import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON, Long } from 'bson';
import { MongoClient } from 'mongodb';
import { startMongoplex } from './support/mongoplex';
import { RawClient, decodeReply } from './support/raw-client';
import { Metrics } from '../filter/telemetry/metrics';
import { compressMessage } from '../filter/wire/compression';
import { encodeOpMsg, MsgFlag, opMsgFlags } from '../filter/wire/opmsg';
import { OpCode, readHeader, writeHeader } from '../filter/wire/header';
import { ReplicaSetFixture } from './support/replica-set-fixture';
import { useFerretDB } from './support/setup';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

describe('compression and exhaust between clients and mongoplex', () => {
  let proxy: Awaited<ReturnType<typeof startMongoplex>>;

  before(async () => {
    // FerretDB closes connections on OP_COMPRESSED: the upstream leg negotiates none, the
    // client leg negotiates its own.
    proxy = await startMongoplex(db.address, { upstream: { compressors: ['snappy', 'zlib', 'zstd'] } });
  });
  after(async () => {
    await proxy?.stop();
  });

  for (const compressor of ['snappy', 'zlib', 'zstd'] as const) {
    it(`round-trips documents with the driver set to compressors=${compressor}`, async () => {
      const before = Metrics.clientCompressedMessages.value({ compressor });
      const client = await new MongoClient(`${proxy.uri}?compressors=${compressor}`).connect();
      try {
        const hello = await client.db('admin').command({ hello: 1 });
        assert.deepEqual(hello.compression, [compressor]);
        const col = client.db('zip').collection(compressor);
        const docs = Array.from({ length: 200 }, (_, i) => ({ i, text: `compressible ${'text '.repeat(50)}` }));
        await col.insertMany(docs.map((d) => ({ ...d })));
        const back = await col.find({}, { batchSize: 30, projection: { _id: 0 }, sort: { i: 1 } }).toArray();
        assert.ok(back.length === docs.length && back.every((d, i) => d.i === i && d.text === docs[i]!.text), 'every document came back intact');
      } finally {
        await client.close();
      }
      assert.ok(Metrics.clientCompressedMessages.value({ compressor }) - before > 0, `requests arrived ${compressor}-compressed`);
    });
  }

  it('answers a compressed request with a reply compressed the same way', async () => {
    const c = await RawClient.connect(proxy.port);
    await c.command({ hello: 1, compression: ['zstd'], $db: 'admin' });
    c.send(await compressMessage(encodeOpMsg(5, 0, BSON.serialize({ ping: 1, $db: 'admin' })), 'zstd'));
    const reply = (await c.next())!;
    assert.equal(reply.header.opCode, OpCode.COMPRESSED);
    c.destroy();
  });

  it('refuses a zstd bomb and a compressor it did not negotiate with error replies, and the connection stays usable', async () => {
    const c = await RawClient.connect(proxy.port);
    await c.command({ hello: 1, compression: ['zstd'], $db: 'admin' });
    // 16,384 RLE blocks of 128 KiB (2 GiB) in 64 KB, declaring a 100-byte message.
    const frame = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3])];
    for (let i = 0; i < 16_384; i++) {
      const h = (i === 16_383 ? 1 : 0) | (1 << 1) | ((128 * 1024) << 3);
      frame.push(Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, 0]));
    }
    const payload = Buffer.concat(frame);
    const bomb = Buffer.alloc(16 + 9 + payload.length);
    writeHeader(bomb, { messageLength: bomb.length, requestId: 41, responseTo: 0, opCode: OpCode.COMPRESSED });
    bomb.writeInt32LE(OpCode.MSG, 16);
    bomb.writeInt32LE(100, 20);
    bomb[24] = 3; // zstd
    payload.copy(bomb, 25);
    c.send(bomb);
    const refused = decodeReply((await c.next())!);
    assert.equal(refused.codeName, 'ProtocolError');
    assert.match(refused.errmsg, /inflates past the declared 100 bytes/);
    c.send(await compressMessage(encodeOpMsg(42, 0, BSON.serialize({ ping: 1, $db: 'admin' })), 'snappy'));
    const notNegotiated = decodeReply((await c.next())!);
    assert.match(notNegotiated.errmsg, /uses snappy, which was not negotiated on this connection \(negotiated: zstd\)/);
    assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1, 'the connection is still usable');
    c.destroy();
  });

  it('never leaves a pooled connection streaming: exhaustAllowed is cleared, so the reply is a single one', async () => {
    const c = await RawClient.connect(proxy.port);
    await c.command({ insert: 'ex', documents: Array.from({ length: 30 }, (_, i) => ({ i })), $db: 'zip' });
    const first = await c.command({ find: 'ex', batchSize: 5, $db: 'zip' });
    const id = (first.cursor as { id: Long }).id;
    c.send(encodeOpMsg(77, 0, BSON.serialize({ getMore: id, collection: 'ex', batchSize: 5, $db: 'zip' }), MsgFlag.exhaustAllowed));
    const reply = (await c.next())!;
    assert.equal(readHeader(reply.bytes).responseTo, 77);
    assert.equal(opMsgFlags(reply) & MsgFlag.moreToCome, 0);
    assert.equal(decodeReply(reply).cursor.nextBatch.length, 5);
    assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1, 'the connection is in step: no stray streamed replies');
    c.destroy();
  });
});

describe('compression on the upstream leg, negotiated separately', () => {
  let rs: ReplicaSetFixture;
  let proxy: Awaited<ReturnType<typeof startMongoplex>>;

  before(async () => {
    rs = new ReplicaSetFixture(db, 'fleet', 1, 'mongos');
    rs.compressors = ['zlib', 'zstd'];
    await rs.start();
    proxy = await startMongoplex(rs.addresses[0]!, { upstream: { compressors: ['zstd', 'snappy'] }, client: { compressors: ['snappy'] } });
  });
  after(async () => {
    await proxy?.stop();
    await rs?.stop();
  });

  it('uncompressed clients, zstd upstream (the one both sides allow); handshakes never compressed', async () => {
    const client = await new MongoClient(proxy.uri).connect();
    try {
      const col = client.db('zip').collection('up');
      await col.insertMany(Array.from({ length: 50 }, (_, i) => ({ i, pad: 'p'.repeat(500) })));
      assert.equal((await col.find({}, { batchSize: 7 }).toArray()).length, 50);
    } finally {
      await client.close();
    }
    assert.ok(rs.compressedRequests > 0, `the server received ${rs.compressedRequests} compressed requests`);
    assert.equal(rs.compressedHandshakes, 0);
  });
});
