import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import * as snappy from 'snappy';
import * as zstd from '@mongodb-js/zstd';
import { HEADER_SIZE, OpCode, readHeader, writeHeader, type WireMessage } from './header';
import { Decompress as ZstdStream } from 'fzstd';
import { ErrorCode, protocolError } from './errors';
import { zstdFrameBounds } from './zstd-frame';

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

/**
 * Unwraps an OP_COMPRESSED message into the original message (new header, same requestId).
 * Bounded: the declared size is checked before inflating, no compressor may produce more than
 * it, and with `negotiated`, a compressor other than those (or noop) is refused unread.
 */
export async function decompressMessage(msg: WireMessage, maxMessageSize: number, negotiated?: readonly CompressorName[]): Promise<{ message: WireMessage; compressor: CompressorName | 'noop' }> {
  const buf = msg.bytes;
  if (buf.length < COMPRESSED_PREFIX) throw protocolError('OP_COMPRESSED is too short', ErrorCode.ProtocolError);
  const originalOpcode = buf.readInt32LE(HEADER_SIZE);
  const uncompressedSize = buf.readInt32LE(HEADER_SIZE + 4);
  const id = buf[HEADER_SIZE + 8]!;
  const compressor = nameOf(id);
  if (!compressor) throw protocolError(`OP_COMPRESSED has unknown compressorId ${id}`, ErrorCode.ProtocolError);
  if (negotiated && compressor !== 'noop' && !negotiated.includes(compressor)) {
    throw protocolError(`OP_COMPRESSED uses ${compressor}, which was not negotiated on this connection (negotiated: ${negotiated.join(', ') || 'none'})`, ErrorCode.ProtocolError);
  }
  if (originalOpcode === OpCode.COMPRESSED) throw protocolError('OP_COMPRESSED may not wrap OP_COMPRESSED', ErrorCode.ProtocolError);
  if (uncompressedSize < 0 || uncompressedSize + HEADER_SIZE > maxMessageSize) {
    throw protocolError(`OP_COMPRESSED uncompressedSize ${uncompressedSize} is out of range`, ErrorCode.BSONObjectTooLarge);
  }
  const payload = buf.subarray(COMPRESSED_PREFIX);
  let body: Buffer;
  try {
    switch (compressor) {
      case 'noop': body = payload; break;
      case 'snappy': {
        // The snappy decoder allocates what the payload's preamble says: check it first.
        const preamble = snappyLength(payload);
        if (preamble !== uncompressedSize) throw new Error(`its length preamble says ${preamble} bytes, the header ${uncompressedSize}`);
        body = (await snappy.uncompress(payload, { asBuffer: true })) as Buffer;
        break;
      }
      case 'zlib': body = await inflate(payload, { maxOutputLength: Math.max(uncompressedSize, 1) }); break;
      case 'zstd': body = await inflateZstd(payload, uncompressedSize); break;
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

/** The uncompressed length a raw snappy payload starts with (a little-endian base-128 varint). */
function snappyLength(data: Buffer): number {
  let n = 0;
  for (let i = 0; i < 5 && i < data.length; i++) {
    n += (data[i]! & 0x7f) * 2 ** (7 * i);
    if (data[i]! < 0x80) return n;
  }
  return -1;
}

/** Window sizes a bounded stream decode accepts (its memory is the window plus the output). */
const ZSTD_STREAM_WINDOW_MAX = 64 * 1024 * 1024;
const ZSTD_BLOCK_MAX = 128 * 1024;

/**
 * zstd without an output bound in the native binding: the frame's blocks say how much it can
 * regenerate. Within the declared size (+ one block), the fast native decoder runs; beyond it
 * (an encoder writing small blocks, or a bomb), a streaming decoder stops at the declared size.
 */
async function inflateZstd(payload: Buffer, declared: number): Promise<Buffer> {
  const frame = zstdFrameBounds(payload);
  if (frame.contentSize !== undefined && frame.contentSize !== declared) throw new Error(`its frame says ${frame.contentSize} bytes, the header ${declared}`);
  if (frame.upperBound <= declared + ZSTD_BLOCK_MAX) return zstd.decompress(payload);
  if (frame.windowSize > ZSTD_STREAM_WINDOW_MAX) throw new Error(`its window of ${frame.windowSize} bytes exceeds ${ZSTD_STREAM_WINDOW_MAX}`);
  const chunks: Buffer[] = [];
  let total = 0;
  const stream = new ZstdStream((chunk) => {
    total += chunk.length;
    if (total > declared) throw new Error(`it inflates past the declared ${declared} bytes`);
    chunks.push(Buffer.from(chunk)); // the decoder reuses its window buffer
  });
  stream.push(payload, true);
  return Buffer.concat(chunks, total);
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
