import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON, Long } from 'bson';
import { crc32c } from '@node-rs/crc32';
import { MessageFramer, FramingError } from '../filter/wire/framer';
import { OpCode, readHeader, stampIds } from '../filter/wire/header';
import { clearOpMsgFlags, encodeOpMsg, MsgFlag, parseOpMsg } from '../filter/wire/opmsg';
import { encodeOpQuery, encodeOpReply, parseOpQuery, parseOpReply } from '../filter/wire/legacy';
import { compressMessage, decompressMessage, negotiateCompressor } from '../filter/wire/compression';
import { readCommand, readReply } from '../filter/wire/peek';
import { ProtocolError } from '../filter/wire/errors';

const doc = (d: Record<string, unknown>): Buffer => Buffer.from(BSON.serialize(d));

function withChecksum(msg: Buffer): Buffer {
  const out = Buffer.alloc(msg.length + 4);
  msg.copy(out);
  out.writeInt32LE(out.length, 0);
  out.writeUInt32LE(out.readUInt32LE(16) | MsgFlag.checksumPresent, 16);
  out.writeUInt32LE(crc32c(out.subarray(0, out.length - 4)), out.length - 4);
  return out;
}

describe('OP_MSG codec', () => {
  it('round-trips a body and generic kind-1 document sequences', () => {
    const body = doc({ insert: 'c', $db: 'd' });
    const docs = [doc({ a: 1 }), doc({ b: 'two' })];
    const bytes = encodeOpMsg(7, 3, body, 0, [{ identifier: 'documents', documents: docs }, { identifier: 'nsInfo', documents: [doc({ ns: 'd.c' })] }]);
    const h = readHeader(bytes);
    assert.deepEqual(h, { messageLength: bytes.length, requestId: 7, responseTo: 3, opCode: OpCode.MSG });
    const m = parseOpMsg({ header: h, bytes });
    assert.deepEqual(m.body, body);
    assert.deepEqual(m.sequences.map((s) => s.identifier), ['documents', 'nsInfo']);
    assert.deepEqual(m.sequences[0]!.documents, docs);
  });

  it('verifies a present checksum and refuses a wrong one', () => {
    const good = withChecksum(encodeOpMsg(1, 0, doc({ ping: 1, $db: 'admin' })));
    assert.doesNotThrow(() => parseOpMsg({ header: readHeader(good), bytes: good }));
    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 0xff;
    assert.throws(() => parseOpMsg({ header: readHeader(bad), bytes: bad }), /checksum mismatch/);
  });

  it('strips the checksum when flags are rewritten, and recomputes it when ids are', () => {
    const orig = withChecksum(encodeOpMsg(1, 0, doc({ getMore: Long.fromNumber(5), collection: 'c', $db: 'd' }), MsgFlag.exhaustAllowed));
    const cleared = clearOpMsgFlags({ header: readHeader(orig), bytes: orig }, MsgFlag.exhaustAllowed);
    assert.equal(cleared.length, orig.length - 4);
    assert.equal(cleared.readUInt32LE(16), 0);
    assert.doesNotThrow(() => parseOpMsg({ header: readHeader(cleared), bytes: cleared }));
    const stamped = Buffer.from(orig);
    stampIds(stamped, { requestId: 99, responseTo: 42 });
    assert.equal(readHeader(stamped).requestId, 99);
    assert.doesNotThrow(() => parseOpMsg({ header: readHeader(stamped), bytes: stamped }), 'checksum still valid');
  });

  it('refuses unknown required flag bits, two bodies, unknown section kinds and missing bodies', () => {
    const parse = (b: Buffer): unknown => parseOpMsg({ header: readHeader(b), bytes: b });
    const m = encodeOpMsg(1, 0, doc({ ping: 1 }));
    const unknownBit = Buffer.from(m);
    unknownBit.writeUInt32LE(1 << 4, 16);
    assert.throws(() => parse(unknownBit), ProtocolError);
    const optionalBit = Buffer.from(m);
    optionalBit.writeUInt32LE(1 << 20, 16);
    assert.doesNotThrow(() => parse(optionalBit), 'unknown optional (high) bits are ignored');
    const body = doc({ ping: 1 });
    const twoBodies = Buffer.concat([m, Buffer.from([0]), body]);
    twoBodies.writeInt32LE(twoBodies.length, 0);
    assert.throws(() => parse(twoBodies), /more than one kind-0/);
    const kind9 = Buffer.from(m);
    kind9[20] = 9;
    assert.throws(() => parse(kind9), /unknown section kind 9/);
    const onlySeq = encodeOpMsg(1, 0, Buffer.alloc(0), 0, [{ identifier: 'documents', documents: [doc({ a: 1 })] }]);
    const noBody = Buffer.concat([onlySeq.subarray(0, 20), onlySeq.subarray(21)]);
    noBody.writeInt32LE(noBody.length, 0);
    assert.throws(() => parse(noBody), /no kind-0 section/);
  });
});

describe('OP_QUERY / OP_REPLY codec', () => {
  it('round-trips the handshake forms', () => {
    const q = encodeOpQuery(5, 'admin.$cmd', doc({ isMaster: 1 }));
    const pq = parseOpQuery({ header: readHeader(q), bytes: q });
    assert.equal(pq.fullCollectionName, 'admin.$cmd');
    assert.deepEqual(BSON.deserialize(pq.query), { isMaster: 1 });
    const r = encodeOpReply(6, 5, [doc({ ok: 1 })]);
    const pr = parseOpReply({ header: readHeader(r), bytes: r });
    assert.equal(readHeader(r).responseTo, 5);
    assert.deepEqual(BSON.deserialize(pr.documents[0]!), { ok: 1 });
  });
});

describe('OP_COMPRESSED', () => {
  for (const c of ['noop', 'snappy', 'zlib', 'zstd'] as const) {
    it(`round-trips through ${c}`, async () => {
      const original = encodeOpMsg(11, 0, doc({ insert: 'c', documents: [{ s: 'z'.repeat(5000) }], $db: 'd' }));
      const wrapped = await compressMessage(original, c);
      assert.equal(readHeader(wrapped).opCode, OpCode.COMPRESSED);
      if (c !== 'noop') assert.ok(wrapped.length < original.length);
      const { message, compressor } = await decompressMessage({ header: readHeader(wrapped), bytes: wrapped }, 48_000_000);
      assert.equal(compressor, c);
      assert.deepEqual(message.bytes, original);
      assert.equal(message.header.requestId, 11);
    });
  }

  it('refuses a lying uncompressedSize and an unknown compressor', async () => {
    const original = encodeOpMsg(1, 0, doc({ ping: 1 }));
    const wrapped = await compressMessage(original, 'snappy');
    const lying = Buffer.from(wrapped);
    lying.writeInt32LE(3, 20);
    await assert.rejects(decompressMessage({ header: readHeader(lying), bytes: lying }, 48_000_000), /preamble says \d+ bytes, the header 3/);
    const unknown = Buffer.from(wrapped);
    unknown[24] = 9;
    await assert.rejects(decompressMessage({ header: readHeader(unknown), bytes: unknown }, 48_000_000), /unknown compressorId 9/);
    const huge = Buffer.from(wrapped);
    huge.writeInt32LE(100_000_000, 20);
    await assert.rejects(decompressMessage({ header: readHeader(huge), bytes: huge }, 48_000_000), /out of range/);
  });

  it("negotiates in the client's order, limited to what the proxy allows", () => {
    assert.deepEqual(negotiateCompressor(['zstd', 'bogus', 'snappy', 'zlib'], ['snappy', 'zstd']), ['zstd', 'snappy']);
    assert.deepEqual(negotiateCompressor([], ['snappy']), []);
  });
});

describe('on-demand peeks', () => {
  it('reads a $readPreference and what a mongos would refuse in it, in the mongos order of checks', () => {
    const rp = (v: unknown) => readCommand(doc({ find: 'c', $readPreference: v, $db: 'd' })).readPreference!;
    const ok = rp({ mode: 'secondary', tags: [{ dc: 'east' }, {}], maxStalenessSeconds: 120 });
    assert.deepEqual([ok.mode, ok.tags, ok.maxStalenessSeconds, ok.problem], ['secondary', [{ dc: 'east' }, {}], 120, undefined]);
    const problem = (v: unknown) => { const p = rp(v).problem; return p && [p.error.codeName, p.message]; };
    assert.deepEqual(problem({ mode: 'secondary', maxStalenessSeconds: 30 }), ['MaxStalenessOutOfRange', 'maxStalenessSeconds value can not be less than 90']);
    assert.deepEqual(problem({ mode: 'primary', maxStalenessSeconds: 30 }), ['MaxStalenessOutOfRange', 'maxStalenessSeconds value can not be less than 90'], 'the range is checked before the mode');
    assert.deepEqual(problem({ mode: 'primary', maxStalenessSeconds: 90 }), ['BadValue', 'maxStalenessSeconds can not be set for the primary mode']);
    assert.deepEqual(problem({ mode: 'fastest', tags: 'x' }), ['BadValue', "Could not parse $readPreference mode 'fastest'. Only the modes 'primary', 'primaryPreferred', 'secondary', 'secondaryPreferred', and 'nearest' are supported. :: caused by :: Enumeration value 'fastest' for field 'mode' is not a valid value."]);
    assert.deepEqual(problem({ mode: 'nearest', tags: 'x' }), ['TypeMismatch', '"tags" had the wrong type. Expected array, found string']);
    assert.deepEqual(problem({ mode: 'nearest', maxStalenessSeconds: 'x' }), ['TypeMismatch', 'Expected field "maxStalenessSeconds" to have numeric type, but found string']);
    assert.deepEqual(problem({ mode: 'nearest', maxStalenessSeconds: 100.5 }), ['BadValue', 'Expected field "maxStalenessSeconds" to have a value exactly representable as a 64-bit integer, but found 100.5']);
    assert.deepEqual(problem({ tags: [] }), ['NoSuchKey', 'Missing expected field "mode"']);
    assert.deepEqual(problem(7), ['TypeMismatch', '$readPreference has incorrect type: expected object but got int']);
    assert.equal(problem({ mode: 'primary', tags: [{}] }), undefined, 'an empty tag set matches any server');
    assert.equal(problem({ mode: 'secondary', maxStalenessSeconds: 0 }), undefined, '0 means no maximum');
  });

  it('reads the routing facts of a command without deserializing it', () => {
    const lsid = new BSON.UUID();
    const info = readCommand(doc({ getMore: Long.fromBigInt(123456789012345n), collection: 'c', $db: 'd', lsid: { id: lsid }, txnNumber: Long.fromNumber(3), autocommit: false, writeConcern: { w: 0 } }));
    assert.equal(info.name, 'getMore');
    assert.equal(info.cursorId, 123456789012345n);
    assert.equal(info.cursorCollection, 'c');
    assert.equal(info.db, 'd');
    assert.equal(info.hasTxnNumber, true);
    assert.equal(info.inTransaction, true);
    assert.equal(info.unacknowledged, true);
    assert.equal(info.lsid?.length, 2 * (4 + 1 + 16));
    const kill = readCommand(doc({ killCursors: 'c', cursors: [Long.fromNumber(1), Long.fromNumber(2)], $db: 'd' }));
    assert.deepEqual(kill.killCursorIds, [1n, 2n]);
    assert.equal(kill.cursorCollection, 'c');
  });

  it('reads cursor ids and error codes from replies', () => {
    const r = readReply(doc({ cursor: { firstBatch: [{ a: 1 }], id: Long.fromBigInt(77n), ns: 'd.c' }, ok: 1 }));
    assert.deepEqual(r.cursor, { id: 77n, ns: 'd.c' });
    assert.equal(r.ok, true);
    const e = readReply(doc({ ok: 0, code: 43, errmsg: 'gone' }));
    assert.equal(e.ok, false);
    assert.equal(e.code, 43);
  });

  it('refuses an empty command document', () => {
    assert.throws(() => readCommand(doc({})), ProtocolError);
  });
});

describe('framer', () => {
  it('reassembles messages split at every byte boundary and joined in one chunk', () => {
    const a = encodeOpMsg(1, 0, doc({ ping: 1 }));
    const b = encodeOpMsg(2, 0, doc({ hello: 1, pad: 'x'.repeat(300) }));
    const stream = Buffer.concat([a, b]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const f = new MessageFramer(1 << 20);
      const got = [...f.push(stream.subarray(0, cut)), ...f.push(stream.subarray(cut))];
      assert.deepEqual(got.map((m) => m.bytes), [a, b]);
      assert.equal(f.bufferedBytes, 0);
    }
  });

  it('refuses a bad length before its body arrives, naming the request', () => {
    const f = new MessageFramer(1000);
    const h = Buffer.alloc(16);
    h.writeInt32LE(5000, 0);
    h.writeInt32LE(31, 4);
    assert.throws(() => f.push(h), (e: unknown) => e instanceof FramingError && e.reason === 'too_large' && e.requestId === 31);
  });
});
