import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import * as zstd from '@mongodb-js/zstd';
import { decompressMessage, CompressorId, type CompressorName } from '../filter/wire/compression';
import { HEADER_SIZE, OpCode, readHeader, writeHeader } from '../filter/wire/header';

/**
 * Small payloads that would inflate to hundreds of megabytes, each built by hand (so building
 * them costs no memory) and each declaring a 100-byte message. Runs in its own process: the
 * peak RSS it checks is this file's alone.
 */

const DECLARED = 100;
const MB = 1024 * 1024;
/** Peak memory refusing a bomb that declares 100 bytes may add (the decoders' own buffers included). */
const BOUND = 32 * MB;

function opCompressed(compressor: CompressorName, payload: Buffer, uncompressedSize = DECLARED): { header: ReturnType<typeof readHeader>; bytes: Buffer } {
  const bytes = Buffer.alloc(HEADER_SIZE + 9 + payload.length);
  writeHeader(bytes, { messageLength: bytes.length, requestId: 1, responseTo: 0, opCode: OpCode.COMPRESSED });
  bytes.writeInt32LE(OpCode.MSG, HEADER_SIZE);
  bytes.writeInt32LE(uncompressedSize, HEADER_SIZE + 4);
  bytes[HEADER_SIZE + 8] = CompressorId[compressor];
  payload.copy(bytes, HEADER_SIZE + 9);
  return { header: readHeader(bytes), bytes };
}

/** A zstd frame (no content size, 128 KiB window) of `blocks` identical blocks. */
function zstdFrame(blocks: number, block: Buffer, type: 'rle' | 'compressed'): Buffer {
  const head = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3]);
  const parts: Buffer[] = [head];
  for (let i = 0; i < blocks; i++) {
    const size = type === 'rle' ? 128 * 1024 : block.length;
    const h = (i === blocks - 1 ? 1 : 0) | ((type === 'rle' ? 1 : 2) << 1) | (size << 3);
    parts.push(Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff]), block);
  }
  return Buffer.concat(parts);
}

/** A compressed block that regenerates 128 KiB from 5 bytes: RLE literals, no sequences. */
const TINY_COMPRESSED_BLOCK = (() => {
  const n = 128 * 1024;
  return Buffer.from([1 | (3 << 2) | ((n & 0xf) << 4), (n >> 4) & 0xff, (n >> 12) & 0xff, 0x61, 0x00]);
})();

function peakRssGrowth(before: number): number {
  return (process.resourceUsage().maxRSS * 1024) - before;
}

describe('decompression bombs are refused within a memory bound', () => {
  let baseline = 0;

  it('the hand-built zstd blocks are real zstd (the native decoder inflates a 3-block frame to 384 KiB)', async () => {
    assert.equal((await zstd.decompress(zstdFrame(3, TINY_COMPRESSED_BLOCK, 'compressed'))).length, 3 * 128 * 1024);
    assert.equal((await zstd.decompress(zstdFrame(3, Buffer.from([0x62]), 'rle'))).length, 3 * 128 * 1024);
    baseline = process.resourceUsage().maxRSS * 1024;
  });

  it('zstd: 16 KB of RLE blocks (2 GiB inflated) declaring 100 bytes', async () => {
    const bomb = zstdFrame(16_384, Buffer.from([0]), 'rle');
    await assert.rejects(decompressMessage(opCompressed('zstd', bomb), 48_000_000), /inflates past the declared 100 bytes/);
    assert.ok(peakRssGrowth(baseline) < BOUND, `peak RSS grew ${(peakRssGrowth(baseline) / MB).toFixed(1)} MB`);
  });

  it('zstd: 20 KB of 5-byte compressed blocks (512 MiB inflated) declaring 100 bytes', async () => {
    const bomb = zstdFrame(4096, TINY_COMPRESSED_BLOCK, 'compressed');
    await assert.rejects(decompressMessage(opCompressed('zstd', bomb), 48_000_000), /inflates past the declared 100 bytes/);
    assert.ok(peakRssGrowth(baseline) < BOUND, `peak RSS grew ${(peakRssGrowth(baseline) / MB).toFixed(1)} MB`);
  });

  it('zstd: a second frame after the first is refused unread', async () => {
    const one = zstdFrame(1, Buffer.from([0]), 'rle');
    await assert.rejects(decompressMessage(opCompressed('zstd', Buffer.concat([one, one]), 128 * 1024), 48_000_000), /bytes after the frame/);
  });

  it('snappy: a payload whose preamble promises 800 MB, declaring 100 bytes', async () => {
    // varint 800,000,000, then copies of the previous byte (3 bytes → 64 bytes each).
    const n = 800_000_000;
    const varint = [n & 0x7f | 0x80, (n >> 7) & 0x7f | 0x80, (n >> 14) & 0x7f | 0x80, (n >> 21) & 0x7f | 0x80, (n >> 28) & 0x7f];
    const copies = Buffer.alloc(3 * 10_000);
    for (let i = 0; i < 10_000; i++) copies.set([(63 << 2) | 2, 1, 0], i * 3);
    const bomb = Buffer.concat([Buffer.from(varint), Buffer.from([0, 0x61]), copies]);
    await assert.rejects(decompressMessage(opCompressed('snappy', bomb), 48_000_000), /preamble says 800000000 bytes, the header 100/);
    assert.ok(peakRssGrowth(baseline) < BOUND, `peak RSS grew ${(peakRssGrowth(baseline) / MB).toFixed(1)} MB`);
  });

  it('zlib: 64 KB deflating to 64 MB, declaring 100 bytes', async () => {
    const deflate = zlib.createDeflate({ level: 9 });
    const out: Buffer[] = [];
    deflate.on('data', (c: Buffer) => out.push(c));
    const done = new Promise((r) => deflate.on('end', r));
    const zeros = Buffer.alloc(MB);
    for (let i = 0; i < 64; i++) deflate.write(zeros);
    deflate.end();
    await done;
    const bomb = Buffer.concat(out);
    await assert.rejects(decompressMessage(opCompressed('zlib', bomb), 48_000_000), /could not be decompressed/);
    assert.ok(peakRssGrowth(baseline) < BOUND, `peak RSS grew ${(peakRssGrowth(baseline) / MB).toFixed(1)} MB`);
  });

  it('zstd: the same 512 MiB bomb declaring 47 MB costs at most about the declared size', async () => {
    const bomb = zstdFrame(4096, TINY_COMPRESSED_BLOCK, 'compressed');
    await assert.rejects(decompressMessage(opCompressed('zstd', bomb, 47_000_000), 48_000_000), /inflates past the declared 47000000 bytes/);
    assert.ok(peakRssGrowth(baseline) < 47_000_000 + BOUND, `peak RSS grew ${(peakRssGrowth(baseline) / MB).toFixed(1)} MB`);
  });

  it('a compressor the client did not negotiate is refused before anything is inflated', async () => {
    const bomb = zstdFrame(16_384, Buffer.from([0]), 'rle');
    await assert.rejects(decompressMessage(opCompressed('zstd', bomb), 48_000_000, ['snappy']), /uses zstd, which was not negotiated on this connection \(negotiated: snappy\)/);
  });
});
