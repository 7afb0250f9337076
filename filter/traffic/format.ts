import { createReadStream } from 'node:fs';
import { BSON, Double, Int32, Long, type Document } from 'bson';
import { T_ARRAY, T_DOCUMENT } from '../wire/peek';
import { documentOf, element, elementsByName, valueBytes } from '../wire/raw-bson';
import { Decompress } from 'fzstd';
import { MAX_MESSAGE_SIZE_BYTES } from '../wire/limits';

/**
 * The capture file format, version 1: a plain sequence of BSON documents (what `bsondump`
 * reads), optionally compressed as a series of zstd frames (`zstd -dc FILE | bsondump`).
 *
 *   header  { mongoplexCapture: 1, startedAt: Date, file: Int32, redacted: bool, compression }
 *   record  { t, conn, ms, server, cmd, db, coll?, ok, code?, replyBytes, cursorId?, flags,
 *             body, seqs? }   — one per forwarded OP_MSG command, in the order replies arrived
 *
 * A record's `t` is the request's arrival in ms since the capture started (`startedAt`, the
 * same for every file of one capture), `ms` how long its reply took, `body` the command as the
 * client sent it and `seqs` its document sequences (`{ documents: [...] }`).
 */
export const CAPTURE_FORMAT_VERSION = 1;
const ZSTD_MAGIC = 0xfd2fb528;

export interface CaptureHeader {
  readonly mongoplexCapture: number;
  readonly startedAt: Date;
  /** 1 for the first file of a capture, then one more per rotation. */
  readonly file: number;
  readonly redacted: boolean;
  readonly compression: 'zstd' | 'none';
}

/** One forwarded command and what came of it. */
export interface CaptureRecord {
  /** Arrival, ms since the capture started. */
  readonly t: number;
  /** The client connection's id (per-connection order is what a replay preserves). */
  readonly conn: number;
  /** Time to the reply, ms. */
  readonly ms: number;
  readonly server: string;
  readonly cmd: string;
  readonly db: string;
  readonly coll: string | undefined;
  readonly ok: boolean;
  readonly code: number | undefined;
  readonly replyBytes: number;
  /** The reply's cursor id when the command left a cursor open (a replay maps getMores by it). */
  readonly cursorId: bigint | undefined;
  /** The request's OP_MSG flag bits (moreToCome: no reply was expected). */
  readonly flags: number;
  /** The command body's BSON. */
  readonly body: Buffer;
  /** Document sequences by identifier, each document's BSON. */
  readonly seqs: ReadonlyArray<{ readonly identifier: string; readonly documents: readonly Buffer[] }>;
}

export function encodeHeader(h: CaptureHeader): Buffer {
  return Buffer.from(BSON.serialize({ ...h, mongoplexCapture: new Int32(h.mongoplexCapture), file: new Int32(h.file) }));
}

/**
 * A record's BSON. The metadata is serialized by `bson`; the body and the sequences are
 * spliced in as the raw bytes the client sent (no decode/encode round trip on the way to disk).
 */
export function encodeRecord(r: CaptureRecord): Buffer {
  const meta: Document = {
    t: new Double(r.t), conn: new Int32(r.conn), ms: new Double(r.ms), server: r.server, cmd: r.cmd, db: r.db,
  };
  if (r.coll !== undefined) meta.coll = r.coll;
  meta.ok = new Int32(r.ok ? 1 : 0);
  if (r.code !== undefined) meta.code = new Int32(r.code);
  meta.replyBytes = new Int32(r.replyBytes);
  if (r.cursorId !== undefined) meta.cursorId = Long.fromBigInt(r.cursorId);
  meta.flags = new Int32(r.flags);
  const head = BSON.serialize(meta);
  const parts: Buffer[] = [Buffer.from(head.buffer, head.byteOffset, head.length - 1), element(T_DOCUMENT, 'body', r.body)];
  if (r.seqs.length > 0) {
    const seqParts = r.seqs.map((s) => element(T_ARRAY, s.identifier, documentOf(s.documents.map((d, i) => element(T_DOCUMENT, String(i), d)))));
    parts.push(element(T_DOCUMENT, 'seqs', documentOf(seqParts)));
  }
  return documentOf(parts.slice(1), parts[0]);
}

/** Reads a record back (raw body and sequence bytes kept as Buffers). */
export function decodeRecord(bytes: Buffer): CaptureRecord {
  const els = elementsByName(bytes);
  const raw = (name: string): Buffer | undefined => {
    const e = els.get(name);
    return e && e[0] === T_DOCUMENT ? valueBytes(bytes, e) : undefined;
  };
  const body = raw('body');
  if (!body) throw new Error('capture record has no body');
  const seqsDoc = raw('seqs');
  const seqs = seqsDoc
    ? [...elementsByName(seqsDoc)].map(([identifier, e]) => {
      const arr = valueBytes(seqsDoc, e);
      return { identifier, documents: [...elementsByName(arr).values()].map((d) => valueBytes(arr, d)) };
    })
    : [];
  const d = BSON.deserialize(bytes, { promoteLongs: false });
  return {
    t: d.t as number, conn: d.conn as number, ms: d.ms as number, server: d.server as string, cmd: d.cmd as string,
    db: d.db as string, coll: d.coll as string | undefined, ok: d.ok === 1, code: d.code as number | undefined,
    replyBytes: d.replyBytes as number, cursorId: d.cursorId === undefined ? undefined : (d.cursorId as Long).toBigInt(),
    flags: d.flags as number, body, seqs,
  };
}

/** The BSON documents of a capture file, in order (zstd-compressed or not), read as a stream. */
export async function* readDocuments(file: string): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let decompressor: Decompress | undefined;
  let decided = false;
  const ready: Buffer[] = [];
  const take = (chunk: Uint8Array): void => {
    pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    pendingBytes += chunk.length;
    let buf = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readInt32LE(off);
      if (len < 5 || len > MAX_MESSAGE_SIZE_BYTES * 2) throw new Error(`${file}: not a capture file (a document of ${len} bytes at a record boundary)`);
      if (buf.length - off < len) break;
      ready.push(Buffer.from(buf.subarray(off, off + len)));
      off += len;
    }
    buf = buf.subarray(off);
    pending = buf.length ? [buf] : [];
    pendingBytes = buf.length;
  };
  for await (const chunk of createReadStream(file)) {
    const c = chunk as Buffer;
    if (!decided) {
      decided = true;
      if (c.length >= 4 && c.readUInt32LE(0) === ZSTD_MAGIC) decompressor = new Decompress((out) => take(out));
    }
    if (decompressor) decompressor.push(c);
    else take(c);
    yield* ready.splice(0);
  }
  if (decompressor) decompressor.push(new Uint8Array(0), true);
  yield* ready.splice(0);
  if (pendingBytes > 0) throw new Error(`${file}: ends inside a record (${pendingBytes} bytes left over); the capture was cut short`);
}

/** A capture file's header and records. */
export async function* readCapture(file: string): AsyncGenerator<CaptureHeader | CaptureRecord> {
  let first = true;
  for await (const doc of readDocuments(file)) {
    if (first) {
      first = false;
      const h = BSON.deserialize(doc) as CaptureHeader;
      if (typeof h.mongoplexCapture !== 'number') throw new Error(`${file}: not a mongoplex capture (no header)`);
      if (h.mongoplexCapture > CAPTURE_FORMAT_VERSION) throw new Error(`${file}: capture format ${h.mongoplexCapture} is newer than this mongoplex reads (${CAPTURE_FORMAT_VERSION})`);
      yield h;
      continue;
    }
    yield decodeRecord(doc);
  }
}
