import { crc32c } from '@node-rs/crc32';
import { HEADER_SIZE, OpCode, writeHeader, type WireMessage } from './header';
import { ErrorCode, protocolError } from './errors';

/** OP_MSG flag bits (the low 16 are "required": an unknown one must be refused). */
export const MsgFlag = {
  checksumPresent: 1 << 0,
  moreToCome: 1 << 1,
  exhaustAllowed: 1 << 16,
} as const;
const KNOWN_REQUIRED_BITS = MsgFlag.checksumPresent | MsgFlag.moreToCome;

export interface DocumentSequence {
  readonly identifier: string;
  /** Each document's raw BSON bytes. */
  readonly documents: Buffer[];
}

/** A parsed OP_MSG; `body` is the raw BSON of the single kind-0 section. */
export interface OpMsg {
  readonly flagBits: number;
  readonly body: Buffer;
  readonly sequences: DocumentSequence[];
}

function readDocument(buf: Buffer, offset: number, end: number, what: string): Buffer {
  if (offset + 5 > end) throw protocolError(`OP_MSG ${what} is truncated`, ErrorCode.InvalidBSON);
  const len = buf.readInt32LE(offset);
  if (len < 5 || offset + len > end) {
    throw protocolError(`OP_MSG ${what} has invalid BSON length ${len}`, ErrorCode.InvalidBSON);
  }
  if (buf[offset + len - 1] !== 0) throw protocolError(`OP_MSG ${what} is not NUL-terminated`, ErrorCode.InvalidBSON);
  return buf.subarray(offset, offset + len);
}

/** Parses and validates an OP_MSG (sections, flag bits, checksum when present). */
export function parseOpMsg(msg: WireMessage): OpMsg {
  const buf = msg.bytes;
  if (buf.length < HEADER_SIZE + 4 + 1) throw protocolError('OP_MSG is too short', ErrorCode.ProtocolError);
  const flagBits = buf.readUInt32LE(HEADER_SIZE);
  const unknownRequired = flagBits & 0xffff & ~KNOWN_REQUIRED_BITS;
  if (unknownRequired !== 0) {
    throw protocolError(`OP_MSG has unknown required flag bits 0x${unknownRequired.toString(16)}`, ErrorCode.ProtocolError);
  }
  let end = buf.length;
  if (flagBits & MsgFlag.checksumPresent) {
    end -= 4;
    if (end < HEADER_SIZE + 5) throw protocolError('OP_MSG checksum flag set but message too short', ErrorCode.ProtocolError);
    const expected = buf.readUInt32LE(end);
    const actual = crc32c(buf.subarray(0, end));
    if (expected !== actual) throw protocolError('OP_MSG checksum mismatch', ErrorCode.ProtocolError);
  }
  let body: Buffer | undefined;
  const sequences: DocumentSequence[] = [];
  let off = HEADER_SIZE + 4;
  while (off < end) {
    const kind = buf[off++];
    if (kind === 0) {
      if (body) throw protocolError('OP_MSG has more than one kind-0 section', ErrorCode.ProtocolError);
      body = readDocument(buf, off, end, 'body');
      off += body.length;
    } else if (kind === 1) {
      if (off + 4 > end) throw protocolError('OP_MSG document sequence is truncated', ErrorCode.ProtocolError);
      const size = buf.readInt32LE(off);
      const seqEnd = off + size;
      if (size < 5 || seqEnd > end) throw protocolError(`OP_MSG document sequence has invalid size ${size}`, ErrorCode.ProtocolError);
      const nul = buf.indexOf(0, off + 4);
      if (nul < 0 || nul >= seqEnd) throw protocolError('OP_MSG document sequence identifier is not terminated', ErrorCode.ProtocolError);
      const identifier = buf.toString('utf8', off + 4, nul);
      const documents: Buffer[] = [];
      let d = nul + 1;
      while (d < seqEnd) {
        const doc = readDocument(buf, d, seqEnd, `sequence '${identifier}' document`);
        documents.push(doc);
        d += doc.length;
      }
      sequences.push({ identifier, documents });
      off = seqEnd;
    } else {
      throw protocolError(`OP_MSG has unknown section kind ${kind}`, ErrorCode.ProtocolError);
    }
  }
  if (!body) throw protocolError('OP_MSG has no kind-0 section', ErrorCode.ProtocolError);
  return { flagBits, body, sequences };
}

/** Encodes an OP_MSG. A checksum is never added: the proxy strips it whenever it rewrites. */
export function encodeOpMsg(
  requestId: number,
  responseTo: number,
  body: Uint8Array,
  flagBits = 0,
  sequences: readonly DocumentSequence[] = [],
): Buffer {
  const flags = flagBits & ~MsgFlag.checksumPresent;
  let length = HEADER_SIZE + 4 + 1 + body.length;
  for (const s of sequences) {
    length += 1 + 4 + Buffer.byteLength(s.identifier) + 1;
    for (const d of s.documents) length += d.length;
  }
  const out = Buffer.allocUnsafe(length);
  writeHeader(out, { messageLength: length, requestId, responseTo, opCode: OpCode.MSG });
  out.writeUInt32LE(flags >>> 0, HEADER_SIZE);
  let off = HEADER_SIZE + 4;
  out[off++] = 0;
  out.set(body, off);
  off += body.length;
  for (const s of sequences) {
    out[off++] = 1;
    const sizeAt = off;
    off += 4;
    off += out.write(s.identifier, off, 'utf8');
    out[off++] = 0;
    for (const d of s.documents) {
      d.copy(out, off);
      off += d.length;
    }
    out.writeInt32LE(off - sizeAt, sizeAt);
  }
  return out;
}

/**
 * Returns the message with `clear` flag bits removed, touching nothing else. A checksum is
 * stripped (the bytes changed); the original buffer is not modified.
 */
export function clearOpMsgFlags(msg: WireMessage, clear: number): Buffer {
  const flags = msg.bytes.readUInt32LE(HEADER_SIZE);
  if ((flags & clear) === 0) return msg.bytes;
  const hadChecksum = (flags & MsgFlag.checksumPresent) !== 0;
  const length = msg.bytes.length - (hadChecksum ? 4 : 0);
  const out = Buffer.from(msg.bytes.subarray(0, length));
  out.writeInt32LE(length, 0);
  out.writeUInt32LE((flags & ~clear & ~MsgFlag.checksumPresent) >>> 0, HEADER_SIZE);
  return out;
}

export function opMsgFlags(msg: WireMessage): number {
  return msg.bytes.readUInt32LE(HEADER_SIZE);
}
