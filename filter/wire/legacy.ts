import { BSON } from 'bson';
import { HEADER_SIZE, OpCode, writeHeader, type WireMessage } from './header';
import { ErrorCode, protocolError } from './errors';

/** OP_QUERY: on modern servers only the connection handshake and auth still use it. */
export interface OpQuery {
  readonly flags: number;
  readonly fullCollectionName: string;
  readonly numberToSkip: number;
  readonly numberToReturn: number;
  readonly query: Buffer;
}

export const ReplyFlag = {
  cursorNotFound: 1 << 0,
  queryFailure: 1 << 1,
  awaitCapable: 1 << 3,
} as const;

function docAt(buf: Buffer, off: number, what: string): Buffer {
  if (off + 5 > buf.length) throw protocolError(`${what} is truncated`, ErrorCode.InvalidBSON);
  const len = buf.readInt32LE(off);
  if (len < 5 || off + len > buf.length || buf[off + len - 1] !== 0) {
    throw protocolError(`${what} has invalid BSON length ${len}`, ErrorCode.InvalidBSON);
  }
  return buf.subarray(off, off + len);
}

export function parseOpQuery(msg: WireMessage): OpQuery {
  const buf = msg.bytes;
  let off = HEADER_SIZE;
  if (buf.length < off + 4 + 1 + 8 + 5) throw protocolError('OP_QUERY is too short', ErrorCode.ProtocolError);
  const flags = buf.readInt32LE(off);
  off += 4;
  const nul = buf.indexOf(0, off);
  if (nul < 0) throw protocolError('OP_QUERY collection name is not terminated', ErrorCode.ProtocolError);
  const fullCollectionName = buf.toString('utf8', off, nul);
  off = nul + 1;
  if (off + 8 > buf.length) throw protocolError('OP_QUERY is truncated', ErrorCode.ProtocolError);
  const numberToSkip = buf.readInt32LE(off);
  const numberToReturn = buf.readInt32LE(off + 4);
  off += 8;
  const query = docAt(buf, off, 'OP_QUERY query');
  return { flags, fullCollectionName, numberToSkip, numberToReturn, query };
}

export interface OpReply {
  readonly responseFlags: number;
  readonly cursorId: bigint;
  readonly startingFrom: number;
  readonly documents: Buffer[];
}

export function parseOpReply(msg: WireMessage): OpReply {
  const buf = msg.bytes;
  let off = HEADER_SIZE;
  if (buf.length < off + 20) throw protocolError('OP_REPLY is too short', ErrorCode.ProtocolError);
  const responseFlags = buf.readInt32LE(off);
  const cursorId = buf.readBigInt64LE(off + 4);
  const startingFrom = buf.readInt32LE(off + 12);
  const numberReturned = buf.readInt32LE(off + 16);
  off += 20;
  const documents: Buffer[] = [];
  for (let i = 0; i < numberReturned; i++) {
    const d = docAt(buf, off, 'OP_REPLY document');
    documents.push(d);
    off += d.length;
  }
  return { responseFlags, cursorId, startingFrom, documents };
}

export function encodeOpReply(requestId: number, responseTo: number, documents: readonly Uint8Array[], responseFlags = 0, cursorId = 0n): Buffer {
  let length = HEADER_SIZE + 20;
  for (const d of documents) length += d.length;
  const out = Buffer.allocUnsafe(length);
  writeHeader(out, { messageLength: length, requestId, responseTo, opCode: OpCode.REPLY });
  let off = HEADER_SIZE;
  out.writeInt32LE(responseFlags, off);
  out.writeBigInt64LE(cursorId, off + 4);
  out.writeInt32LE(0, off + 12);
  out.writeInt32LE(documents.length, off + 16);
  off += 20;
  for (const d of documents) {
    out.set(d, off);
    off += d.length;
  }
  return out;
}

export function encodeOpQuery(requestId: number, fullCollectionName: string, query: Uint8Array, flags = 0, numberToReturn = -1): Buffer {
  const nameLen = Buffer.byteLength(fullCollectionName) + 1;
  const length = HEADER_SIZE + 4 + nameLen + 8 + query.length;
  const out = Buffer.allocUnsafe(length);
  writeHeader(out, { messageLength: length, requestId, responseTo: 0, opCode: OpCode.QUERY });
  let off = HEADER_SIZE;
  out.writeInt32LE(flags, off);
  off += 4;
  off += out.write(fullCollectionName, off, 'utf8');
  out[off++] = 0;
  out.writeInt32LE(0, off);
  out.writeInt32LE(numberToReturn, off + 4);
  off += 8;
  out.set(query, off);
  return out;
}

/** A whole BSON document, checked element by element (what the server would reject). */
function checkedDoc(buf: Buffer, off: number, what: string): Buffer {
  const d = docAt(buf, off, what);
  try {
    BSON.deserialize(d, { promoteValues: false, validation: { utf8: false } });
  } catch (err) {
    throw protocolError(`${what} is invalid BSON: ${(err as Error).message}`, ErrorCode.InvalidBSON);
  }
  return d;
}

const LEGACY_NAMES: Readonly<Record<number, string>> = {
  [OpCode.UPDATE]: 'OP_UPDATE', [OpCode.INSERT]: 'OP_INSERT', [OpCode.QUERY]: 'OP_QUERY',
  [OpCode.GET_MORE]: 'OP_GET_MORE', [OpCode.DELETE]: 'OP_DELETE', [OpCode.KILL_CURSORS]: 'OP_KILL_CURSORS',
};

/**
 * Checks a legacy message's whole layout before it is forwarded: a server that cannot parse
 * one drops the connection, which would cost a pooled connection per malformed message.
 */
export function validateLegacyMessage(msg: WireMessage): void {
  const buf = msg.bytes;
  const op = msg.header.opCode;
  const name = LEGACY_NAMES[op] ?? `opcode ${op}`;
  let off = HEADER_SIZE;
  const skip = (n: number, what: string): void => {
    if (off + n > buf.length) throw protocolError(`${name} is truncated (${what})`, ErrorCode.ProtocolError);
    off += n;
  };
  const namespace = (): void => {
    const nul = buf.indexOf(0, off);
    if (nul < 0) throw protocolError(`${name} collection name is not terminated`, ErrorCode.ProtocolError);
    const ns = buf.toString('utf8', off, nul);
    if (!/^[^.]+\..+$/.test(ns)) throw protocolError(`${name} collection name '${ns.slice(0, 120)}' is not db.collection`, ErrorCode.ProtocolError);
    off = nul + 1;
  };
  const doc = (what: string): void => {
    off += checkedDoc(buf, off, `${name} ${what}`).length;
  };
  switch (op) {
    case OpCode.UPDATE:
      skip(4, 'reserved');
      namespace();
      skip(4, 'flags');
      doc('selector');
      doc('update');
      break;
    case OpCode.INSERT:
      skip(4, 'flags');
      namespace();
      do doc('document'); while (off < buf.length);
      break;
    case OpCode.DELETE:
      skip(4, 'reserved');
      namespace();
      skip(4, 'flags');
      doc('selector');
      break;
    case OpCode.QUERY:
      skip(4, 'flags');
      namespace();
      skip(8, 'numberToSkip, numberToReturn');
      doc('query');
      if (off < buf.length) doc('returnFieldsSelector');
      break;
    case OpCode.GET_MORE:
      skip(4, 'reserved');
      namespace();
      skip(12, 'numberToReturn, cursorID');
      break;
    case OpCode.KILL_CURSORS: {
      skip(8, 'reserved, numberOfCursorIDs');
      const n = buf.readInt32LE(off - 4);
      if (n < 1 || n * 8 !== buf.length - off) throw protocolError(`${name} says ${n} cursor ids but carries ${(buf.length - off) / 8}`, ErrorCode.ProtocolError);
      off = buf.length;
      break;
    }
    default:
      throw protocolError(`${name} is not a legacy opcode mongoplex forwards`, ErrorCode.ProtocolError);
  }
  if (off !== buf.length) throw protocolError(`${name} has ${buf.length - off} bytes after its last field`, ErrorCode.ProtocolError);
}
