import { crc32c } from '@node-rs/crc32';

/** MongoDB wire protocol message header and opcodes (little-endian, 16 bytes). */

export const HEADER_SIZE = 16;

export const OpCode = {
  REPLY: 1,
  UPDATE: 2001,
  INSERT: 2002,
  RESERVED: 2003,
  QUERY: 2004,
  GET_MORE: 2005,
  DELETE: 2006,
  KILL_CURSORS: 2007,
  COMPRESSED: 2012,
  MSG: 2013,
} as const;
export type OpCode = (typeof OpCode)[keyof typeof OpCode];

const OPCODE_NAMES: ReadonlyMap<number, string> = new Map([
  [OpCode.REPLY, 'OP_REPLY'],
  [OpCode.UPDATE, 'OP_UPDATE'],
  [OpCode.INSERT, 'OP_INSERT'],
  [OpCode.RESERVED, 'OP_RESERVED'],
  [OpCode.QUERY, 'OP_QUERY'],
  [OpCode.GET_MORE, 'OP_GET_MORE'],
  [OpCode.DELETE, 'OP_DELETE'],
  [OpCode.KILL_CURSORS, 'OP_KILL_CURSORS'],
  [OpCode.COMPRESSED, 'OP_COMPRESSED'],
  [OpCode.MSG, 'OP_MSG'],
]);

/** Opcodes removed in MongoDB 5.1/6.0; only legacy servers understand them. */
export const LEGACY_OPCODES: ReadonlySet<number> = new Set([
  OpCode.UPDATE,
  OpCode.INSERT,
  OpCode.GET_MORE,
  OpCode.DELETE,
  OpCode.KILL_CURSORS,
]);

/** Whether a client request with this opcode gets a reply (OP_INSERT/UPDATE/DELETE/KILL_CURSORS do not). */
export function expectsReply(op: number): boolean {
  return !LEGACY_OPCODES.has(op) || op === OpCode.GET_MORE;
}

export function opcodeName(op: number): string {
  return OPCODE_NAMES.get(op) ?? `unknown opcode ${op}`;
}

export function isKnownOpcode(op: number): op is OpCode {
  return OPCODE_NAMES.has(op) && op !== OpCode.RESERVED;
}

export interface MsgHeader {
  messageLength: number;
  requestId: number;
  responseTo: number;
  opCode: number;
}

export function readHeader(buf: Buffer, offset = 0): MsgHeader {
  return {
    messageLength: buf.readInt32LE(offset),
    requestId: buf.readInt32LE(offset + 4),
    responseTo: buf.readInt32LE(offset + 8),
    opCode: buf.readInt32LE(offset + 12),
  };
}

export function writeHeader(buf: Buffer, h: MsgHeader, offset = 0): void {
  buf.writeInt32LE(h.messageLength, offset);
  buf.writeInt32LE(h.requestId, offset + 4);
  buf.writeInt32LE(h.responseTo, offset + 8);
  buf.writeInt32LE(h.opCode, offset + 12);
}

/** One complete wire message: its parsed header and all of its bytes (header included). */
export interface WireMessage {
  readonly header: MsgHeader;
  readonly bytes: Buffer;
}

let nextRequestId = 1;
/** Request ids for messages the proxy itself originates. */
export function newRequestId(): number {
  nextRequestId = (nextRequestId + 1) & 0x7fffffff || 1;
  return nextRequestId;
}

/**
 * Rewrites a message's requestId/responseTo in place (the proxy renumbers requests on pooled
 * connections). An OP_MSG checksum covers the header, so it is recomputed when present.
 */
export function stampIds(bytes: Buffer, ids: { requestId?: number; responseTo?: number }): void {
  if (ids.requestId !== undefined) bytes.writeInt32LE(ids.requestId, 4);
  if (ids.responseTo !== undefined) bytes.writeInt32LE(ids.responseTo, 8);
  if (bytes.readInt32LE(12) === OpCode.MSG && bytes.length >= HEADER_SIZE + 8 && (bytes.readUInt32LE(HEADER_SIZE) & 1) !== 0) {
    bytes.writeUInt32LE(crc32c(bytes.subarray(0, bytes.length - 4)), bytes.length - 4);
  }
}

/** OP_MSG exists from wire version 6 (MongoDB 3.6); older servers speak OP_QUERY commands. */
export const OP_MSG_WIRE_VERSION = 6;

/**
 * MongoDB 5.1 (wire version 13) removed getLastError and the legacy opcodes OP_INSERT,
 * OP_UPDATE, OP_DELETE, OP_GET_MORE and OP_KILL_CURSORS (and OP_QUERY except for handshakes).
 */
export const LEGACY_REMOVED_WIRE_VERSION = 13;
