import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BSON } from 'bson';
import { FramingError, MessageFramer } from '../filter/wire/framer';
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
