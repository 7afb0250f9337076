import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import * as snappy from 'snappy';
import * as zstd from '@mongodb-js/zstd';
import { HEADER_SIZE, OpCode, readHeader, writeHeader, type WireMessage } from './header';
import { ErrorCode, protocolError } from './errors';

/** OP_COMPRESSED compressor ids (wire values). */
export const CompressorId = { noop: 0, snappy: 1, zlib: 2, zstd: 3 } as const;
export type CompressorName = keyof typeof CompressorId;
export const COMPRESSOR_NAMES: readonly CompressorName[] = ['snappy', 'zlib', 'zstd'];

const inflate = promisify(zlib.inflate);
const deflate = promisify(zlib.deflate);
const COMPRESSED_PREFIX = HEADER_SIZE + 9;

/** Commands whose messages must never be compressed (the compression spec's list). */
const UNCOMPRESSIBLE_COMMANDS: ReadonlySet<string> = new Set([
  'hello', 'ismaster', 'saslstart', 'saslcontinue', 'getnonce', 'authenticate', 'createuser', 'updateuser',
  'copydbsaslstart', 'copydbgetnonce', 'copydb',
]);

/** Whether a command's messages (request and reply) may travel compressed. */
export function isCompressible(commandName: string): boolean {
  return !UNCOMPRESSIBLE_COMMANDS.has(commandName.toLowerCase());
}

function nameOf(id: number): CompressorName | 'noop' | undefined {
  for (const [name, v] of Object.entries(CompressorId)) if (v === id) return name as CompressorName;
  return undefined;
}

/** Unwraps an OP_COMPRESSED message into the original message (new header, same requestId). */
export async function decompressMessage(msg: WireMessage, maxMessageSize: number): Promise<{ message: WireMessage; compressor: CompressorName | 'noop' }> {
  const buf = msg.bytes;
  if (buf.length < COMPRESSED_PREFIX) throw protocolError('OP_COMPRESSED is too short', ErrorCode.ProtocolError);
  const originalOpcode = buf.readInt32LE(HEADER_SIZE);
  const uncompressedSize = buf.readInt32LE(HEADER_SIZE + 4);
  const id = buf[HEADER_SIZE + 8]!;
  const compressor = nameOf(id);
  if (!compressor) throw protocolError(`OP_COMPRESSED has unknown compressorId ${id}`, ErrorCode.ProtocolError);
  if (originalOpcode === OpCode.COMPRESSED) throw protocolError('OP_COMPRESSED may not wrap OP_COMPRESSED', ErrorCode.ProtocolError);
  if (uncompressedSize < 0 || uncompressedSize + HEADER_SIZE > maxMessageSize) {
    throw protocolError(`OP_COMPRESSED uncompressedSize ${uncompressedSize} is out of range`, ErrorCode.BSONObjectTooLarge);
  }
  const payload = buf.subarray(COMPRESSED_PREFIX);
  let body: Buffer;
  try {
    switch (compressor) {
      case 'noop': body = payload; break;
      case 'snappy': body = (await snappy.uncompress(payload, { asBuffer: true })) as Buffer; break;
      case 'zlib': body = await inflate(payload, { maxOutputLength: Math.max(uncompressedSize, 1) }); break;
      case 'zstd': body = await zstd.decompress(payload); break;
    }
  } catch (err) {
    throw protocolError(`OP_COMPRESSED ${compressor} payload could not be decompressed: ${(err as Error).message}`, ErrorCode.ProtocolError);
  }
  if (body.length !== uncompressedSize) {
    throw protocolError(`OP_COMPRESSED payload is ${body.length} bytes, header said ${uncompressedSize}`, ErrorCode.ProtocolError);
  }
  const h = readHeader(buf);
  const out = Buffer.allocUnsafe(HEADER_SIZE + body.length);
  writeHeader(out, { messageLength: out.length, requestId: h.requestId, responseTo: h.responseTo, opCode: originalOpcode });
  body.copy(out, HEADER_SIZE);
  return { message: { header: { ...h, messageLength: out.length, opCode: originalOpcode }, bytes: out }, compressor };
}

/** Wraps a complete message into OP_COMPRESSED with the given compressor. */
export async function compressMessage(bytes: Buffer, compressor: CompressorName | 'noop'): Promise<Buffer> {
  const h = readHeader(bytes);
  const body = bytes.subarray(HEADER_SIZE);
  let payload: Buffer;
  switch (compressor) {
    case 'noop': payload = body; break;
    case 'snappy': payload = (await snappy.compress(body)) as Buffer; break;
    case 'zlib': payload = await deflate(body); break;
    case 'zstd': payload = await zstd.compress(body, 3); break;
  }
  const out = Buffer.allocUnsafe(COMPRESSED_PREFIX + payload.length);
  writeHeader(out, { messageLength: out.length, requestId: h.requestId, responseTo: h.responseTo, opCode: OpCode.COMPRESSED });
  out.writeInt32LE(h.opCode, HEADER_SIZE);
  out.writeInt32LE(body.length, HEADER_SIZE + 4);
  out[HEADER_SIZE + 8] = CompressorId[compressor];
  payload.copy(out, COMPRESSED_PREFIX);
  return out;
}

/** The first of the client's offered compressors that the proxy also allows (client's order wins). */
export function negotiateCompressor(offered: readonly unknown[], allowed: readonly CompressorName[]): CompressorName[] {
  const out: CompressorName[] = [];
  for (const o of offered) {
    if (typeof o === 'string' && (allowed as readonly string[]).includes(o) && !out.includes(o as CompressorName)) {
      out.push(o as CompressorName);
    }
  }
  return out;
}
