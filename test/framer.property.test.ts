import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BSON } from 'bson';
import { ASSEMBLE_AT_BYTES, FramingError, MessageFramer } from '../filter/wire/framer';
import { encodeOpMsg, parseOpMsg } from '../filter/wire/opmsg';
import { parseOpQuery, parseOpReply } from '../filter/wire/legacy';
import { readCommand } from '../filter/wire/peek';
import { decompressMessage } from '../filter/wire/compression';
import { ProtocolError } from '../filter/wire/errors';
import { deserializeCommand } from '../filter/wire/document';
import { OpCode, readHeader, type WireMessage } from '../filter/wire/header';

const MAX = 1 << 16;

const arbDoc = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !k.includes('\0') && !k.startsWith('$')),
  fc.oneof(fc.integer(), fc.string({ maxLength: 40 }), fc.boolean(), fc.double({ noNaN: true })),
  { maxKeys: 6 },
);
const arbMessage = fc.tuple(fc.string({ minLength: 1, maxLength: 10 }).filter((s) => !s.includes('\0')), arbDoc, fc.integer({ min: 0, max: 0x7fffffff }))
  .map(([cmd, rest, id]) => encodeOpMsg(id, 0, BSON.serialize({ [cmd]: 1, ...rest, $db: 'db' })));

/** Splits a buffer into chunks at the given (sorted, deduplicated) offsets. */
function chunk(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

/** Everything the session does with a framed client message before routing it. */
async function decodeLikeASession(m: WireMessage): Promise<void> {
  let msg = m;
  if (msg.header.opCode === OpCode.COMPRESSED) msg = (await decompressMessage(msg, MAX)).message;
  if (msg.header.opCode === OpCode.MSG) readCommand(parseOpMsg(msg).body);
  else if (msg.header.opCode === OpCode.QUERY) deserializeCommand(parseOpQuery(msg).query);
  else if (msg.header.opCode === OpCode.REPLY) parseOpReply(msg);
}

describe('framer and decoders under random input (fast-check)', () => {
  it('any chunking of a valid message stream yields exactly the original messages', () => {
    fc.assert(fc.property(fc.array(arbMessage, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 }), (msgs, cuts) => {
      const f = new MessageFramer(MAX);
      const got: Buffer[] = [];
      for (const c of chunk(Buffer.concat(msgs), cuts)) for (const m of f.push(c)) got.push(m.bytes);
      assert.deepEqual(got, msgs);
      assert.equal(f.bufferedBytes, 0);
    }), { numRuns: 300 });
  });

  it('large messages (assembled in a buffer of their own as they arrive) come out whole between small ones, however the stream is cut, and report their declared length meanwhile', () => {
    const arbRaw = fc.tuple(fc.oneof(fc.integer({ min: 16, max: 300 }), fc.integer({ min: ASSEMBLE_AT_BYTES, max: ASSEMBLE_AT_BYTES + 4096 })), fc.integer({ min: 1, max: 0x7fffffff }))
      .map(([length, id]) => {
        const b = Buffer.alloc(length, id & 0xff);
        b.writeInt32LE(length, 0);
        b.writeInt32LE(id, 4);
        b.writeInt32LE(OpCode.MSG, 12);
        return b;
      });
    fc.assert(fc.property(fc.array(arbRaw, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 30 }), (msgs, cuts) => {
      const f = new MessageFramer(ASSEMBLE_AT_BYTES * 2);
      const stream = Buffer.concat(msgs);
      const starts = msgs.map((_, i) => msgs.slice(0, i).reduce((n, m) => n + m.length, 0));
      const got: Buffer[] = [];
      let at = 0;
      for (const c of chunk(stream, cuts.map((x) => x * 9973))) {
        for (const m of f.push(c)) got.push(m.bytes);
        at += c.length;
        // The message now arriving, if its first 8 bytes are in: what it declares.
        const i = starts.findLastIndex((st) => st <= at);
        const inMessage = at - starts[i]!;
        if (i >= 0 && inMessage >= 8 && inMessage < msgs[i]!.length) assert.deepEqual(f.pending, { length: msgs[i]!.length, requestId: msgs[i]!.readInt32LE(4) });
        assert.equal(f.bufferedBytes, at - got.reduce((n, m) => n + m.length, 0));
      }
      assert.deepEqual(got, msgs);
      assert.equal(f.bufferedBytes, 0);
    }), { numRuns: 60 });
  });

  it('random bytes only ever produce messages or a FramingError, and the framer stays bounded', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => {
      const f = new MessageFramer(512);
      try {
        for (const c of chunk(Buffer.from(bytes), cuts)) {
          for (const m of f.push(c)) assert.ok(m.bytes.length >= 16 && m.bytes.length <= 512);
          assert.ok(f.bufferedBytes < 512);
        }
      } catch (err) {
        assert.ok(err instanceof FramingError, `unexpected ${String(err)}`);
      }
    }), { numRuns: 1000 });
  });

  it('mutated valid messages are decoded or refused with a ProtocolError, never anything else', async () => {
    await fc.assert(fc.asyncProperty(
      arbMessage,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
      fc.constantFrom(OpCode.MSG, OpCode.QUERY, OpCode.REPLY, OpCode.COMPRESSED),
      async (msg, flips, opCode) => {
        const b = Buffer.from(msg);
        b.writeInt32LE(opCode, 12);
        for (const [at, v] of flips) {
          const i = 16 + (at % (b.length - 16)); // the framer already guards the length field
          b[i] = v;
        }
        try {
          await decodeLikeASession({ header: readHeader(b), bytes: b });
        } catch (err) {
          assert.ok(err instanceof ProtocolError, `unexpected ${(err as Error).name}: ${(err as Error).message}`);
        }
      },
    ), { numRuns: 1000 });
  });
});
