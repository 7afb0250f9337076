import { ErrorCode, protocolError } from './errors';

/**
 * What a zstd payload can inflate to, read from its frame and block headers without
 * decompressing anything (RFC 8878 §3.1). OP_COMPRESSED carries one message as one frame, so
 * anything else (skippable frames, a second frame, trailing bytes) is refused.
 */
export interface ZstdFrameBounds {
  /** The frame's declared content size, when its header has one (the Node.js driver omits it). */
  readonly contentSize: number | undefined;
  readonly windowSize: number;
  /** The most the frame can regenerate: raw and RLE blocks exactly, compressed blocks at their maximum. */
  readonly upperBound: number;
}

const MAGIC = 0xfd2fb528;
const BLOCK_SIZE_MAX = 128 * 1024;

function invalid(why: string): Error {
  return protocolError(`OP_COMPRESSED zstd payload is not one well-formed frame: ${why}`, ErrorCode.ProtocolError);
}

export function zstdFrameBounds(data: Buffer): ZstdFrameBounds {
  if (data.length < 6 || data.readUInt32LE(0) !== MAGIC) throw invalid('no zstd frame magic number');
  const fhd = data[4]!;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  if (fhd & 0x08) throw invalid('reserved header bit set');
  const hasChecksum = (fhd >> 2) & 1;
  const dictIdSize = [0, 1, 2, 4][fhd & 3]!;
  let off = 5;
  let windowSize = 0;
  if (!singleSegment) {
    const wd = data[off++]!;
    const base = 2 ** (10 + (wd >> 3));
    windowSize = base + (base / 8) * (wd & 7);
  }
  off += dictIdSize;
  const fcsSize = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  if (off + fcsSize > data.length) throw invalid('truncated frame header');
  let contentSize: number | undefined;
  if (fcsSize === 1) contentSize = data[off]!;
  else if (fcsSize === 2) contentSize = data.readUInt16LE(off) + 256;
  else if (fcsSize === 4) contentSize = data.readUInt32LE(off);
  else if (fcsSize === 8) contentSize = Number(data.readBigUInt64LE(off));
  off += fcsSize;
  if (singleSegment) windowSize = contentSize!;
  const blockMax = Math.min(windowSize, BLOCK_SIZE_MAX);
  let upperBound = 0;
  for (;;) {
    if (off + 3 > data.length) throw invalid('truncated block header');
    const h = data[off]! | (data[off + 1]! << 8) | (data[off + 2]! << 16);
    off += 3;
    const last = h & 1;
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    if (type === 3) throw invalid('reserved block type');
    if (size > BLOCK_SIZE_MAX) throw invalid(`block of ${size} bytes exceeds the 128 KiB maximum`);
    if (type === 0) {
      upperBound += size;
      off += size;
    } else if (type === 1) {
      upperBound += size;
      off += 1;
    } else {
      upperBound += blockMax;
      off += size;
    }
    if (off > data.length) throw invalid('truncated block');
    if (last) break;
  }
  if (hasChecksum) off += 4;
  if (off !== data.length) throw invalid(off > data.length ? 'truncated checksum' : `${data.length - off} bytes after the frame`);
  return { contentSize, windowSize, upperBound };
}
