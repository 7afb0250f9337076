import { mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { compress as zstdCompress } from '@mongodb-js/zstd';
import type { Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import { parseOpMsg } from '../wire/opmsg';
import { CAPTURE_FORMAT_VERSION, encodeHeader, encodeRecord, type CaptureRecord } from './format';
import { Redactor } from './redact';
import { collectionOf, isTappable, NamespaceFilter, type ForwardedCommand, type TrafficTap } from './taps';

/** What a capture records and how much it may hold (`capture.*` settings, or a start request). */
export interface CaptureSettings {
  readonly dir: string | null;
  /** Fraction of client connections recorded (whole connections, so their order, cursors and transactions stay complete). */
  readonly sampleRate: number;
  readonly namespaces: readonly string[];
  readonly redact: boolean;
  readonly compression: 'zstd' | 'none';
  readonly maxFileBytes: number;
  readonly maxTotalBytes: number;
  readonly maxDurationMs: number;
  readonly queueBytes: number;
}

export class CaptureError extends Error {
  override name = 'CaptureError';
}

export interface CaptureStatus {
  readonly active: boolean;
  readonly files: string[];
  readonly startedAt: string | undefined;
  readonly recorded: number;
  readonly dropped: Record<string, number>;
  readonly bytesWritten: number;
  readonly queuedBytes: number;
  readonly queueBytes: number;
  readonly stoppedBecause: string | undefined;
  readonly settings: Omit<CaptureSettings, 'dir'> & { dir: string | null } | undefined;
}

/** A queued record and the bytes it holds against the queue bound. */
interface Queued {
  readonly record: CaptureRecord;
  readonly size: number;
}

/** Records are written (and compressed) in chunks of at most this many bytes. */
const MAX_CHUNK_BYTES = 1024 * 1024;

/** How long a record may wait to be written with others (one compression and one write per batch). */
const FLUSH_INTERVAL_MS = 50;

/** Per-record overhead counted against the queue besides the command's own bytes. */
const RECORD_OVERHEAD = 256;

/** Knuth's multiplicative hash: a connection id → [0, 1), to sample whole connections without state. */
function connectionSample(id: number): number {
  return (Math.imul(id, 2654435761) >>> 0) / 2 ** 32;
}

/**
 * Records forwarded commands to capture files. On the client's path it only decides (sampled?
 * namespace? room in the queue?) and copies the command's bytes; encoding, redaction,
 * compression and disk writes happen after, in batches. When the queue (`queueBytes`) is full
 * the record is dropped and counted — a slow disk never slows a client.
 */
export class Recorder implements TrafficTap {
  private capture: ActiveCapture | undefined;
  private last: CaptureStatus | undefined;
  private stopping: Promise<CaptureStatus> | undefined;

  constructor(private readonly defaults: CaptureSettings, private readonly log: Logger) {}

  get active(): boolean {
    return this.capture !== undefined;
  }

  /** Starts a capture with the configured settings, changed by `overrides`. */
  start(overrides: Partial<CaptureSettings> = {}): CaptureStatus {
    if (this.capture) throw new CaptureError('a capture is already running; stop it first');
    const settings = { ...this.defaults, ...overrides };
    if (!settings.dir) throw new CaptureError('capture.dir is not set: say where capture files go');
    try {
      mkdirSync(settings.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new CaptureError(`cannot create capture.dir ${settings.dir}: ${(err as Error).message}`);
    }
    this.capture = new ActiveCapture(settings as CaptureSettings & { dir: string }, this.log, (why) => void this.stop(why));
    this.log.info({ dir: settings.dir, sampleRate: settings.sampleRate, namespaces: settings.namespaces, redact: settings.redact }, 'capture started');
    return this.status();
  }

  /** Stops the running capture once what it queued is on disk. */
  /**
   * Stops the capture once what is queued is written. Until then it still counts as active (its
   * status says why it stops), so nobody sees a blank status in between; a second stop waits
   * for the first.
   */
  stop(because = 'stopped'): Promise<CaptureStatus> {
    const c = this.capture;
    if (!c) return Promise.resolve(this.status());
    this.stopping ??= (async () => {
      await c.finish(because);
      this.capture = undefined;
      this.stopping = undefined;
      this.last = c.status(false);
      this.log.info({ files: this.last.files, recorded: this.last.recorded, dropped: this.last.dropped, because }, 'capture stopped');
      return this.last;
    })();
    return this.stopping;
  }

  status(): CaptureStatus {
    return this.capture?.status(true) ?? this.last ?? {
      active: false, files: [], startedAt: undefined, recorded: 0, dropped: {}, bytesWritten: 0, queuedBytes: 0,
      queueBytes: this.defaults.queueBytes, stoppedBecause: undefined, settings: undefined,
    };
  }

  forwarded(e: ForwardedCommand): void {
    this.capture?.offer(e);
  }
}

class ActiveCapture {
  private readonly startedAt = performance.timeOrigin + performance.now();
  private readonly filter: NamespaceFilter;
  private readonly redactor: Redactor | undefined;
  private queue: Queued[] = [];
  private queuedBytes = 0;
  private recorded = 0;
  private readonly dropped: Record<string, number> = {};
  private bytesWritten = 0;
  private fileBytes = 0;
  /** The current file's header size. */
  private headerBytes = 0;
  private readonly files: string[] = [];
  private file: FileHandle | undefined;
  private writing: Promise<void> | undefined;
  private stoppedBecause: string | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  /** Starts the pending batch's write before its timer. */
  private flushNow: (() => void) | undefined;
  /** A write failed: nothing more is written. */
  private failed = false;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(private readonly settings: CaptureSettings & { dir: string }, private readonly log: Logger, private readonly stopSelf: (why: string) => void) {
    this.filter = new NamespaceFilter(settings.namespaces);
    this.redactor = settings.redact ? new Redactor() : undefined;
    if (settings.maxDurationMs > 0) {
      this.timer = setTimeout(() => this.stopSelf(`capture.maxDurationMs (${settings.maxDurationMs} ms) reached`), settings.maxDurationMs);
      this.timer.unref();
    }
  }

  offer(e: ForwardedCommand): void {
    if (this.stoppedBecause) return;
    if (this.settings.sampleRate < 1 && connectionSample(e.client.id) >= this.settings.sampleRate) return;
    if (!isTappable(e.cmd.name) || !this.filter.matches(e.cmd.db, collectionOf(e.cmd))) return;
    const size = e.request.bytes.length + RECORD_OVERHEAD;
    if (this.queuedBytes + size > this.settings.queueBytes) return this.drop('queue_full');
    let msg;
    try {
      msg = parseOpMsg(e.request);
    } catch {
      return this.drop('unreadable');
    }
    const info = e.replyInfo;
    const cursorId = info?.cursor?.id;
    const record: CaptureRecord = {
      t: performance.timeOrigin + e.startedAt - this.startedAt,
      conn: e.client.id,
      ms: e.durationMs,
      server: e.server,
      cmd: e.cmd.name,
      db: e.cmd.db ?? '',
      coll: collectionOf(e.cmd),
      ok: info ? info.ok : false,
      code: e.errorCode,
      replyBytes: e.replyBytes,
      cursorId: cursorId !== undefined && cursorId !== 0n ? cursorId : undefined,
      flags: msg.flagBits,
      // Copies: the client's buffers are not kept past this call.
      body: Buffer.from(msg.body),
      seqs: msg.sequences.map((s) => ({ identifier: s.identifier, documents: s.documents.map((d) => Buffer.from(d)) })),
    };
    this.queue.push({ record, size });
    this.queuedBytes += size;
    // Written in batches: every FLUSH_INTERVAL_MS, or at once when a chunk's worth is waiting.
    if (!this.writing) {
      this.writing = new Promise<void>((resolve) => {
        this.flushTimer = setTimeout(resolve, FLUSH_INTERVAL_MS);
        this.flushNow = resolve;
      }).then(() => this.writeQueued());
    } else if (this.queuedBytes >= MAX_CHUNK_BYTES) this.flushNow?.();
  }

  private drop(reason: string): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
    Metrics.captureRecords.add(1, { result: `dropped_${reason}` });
  }

  /** Writes batches until the queue is empty. */
  private async writeQueued(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushNow = undefined;
    try {
      while (this.queue.length > 0 && !this.failed) {
        const batch = this.queue;
        this.queue = [];
        await this.writeBatch(batch);
        for (const q of batch) this.queuedBytes -= q.size;
      }
    } finally {
      this.writing = undefined;
    }
    if (this.queue.length > 0 && !this.failed) this.writing = this.writeQueued();
  }

  /**
   * Encodes (and redacts) a batch and writes it in chunks of at most `maxFileBytes`, so files
   * rotate near their bound; once the capture holds `maxTotalBytes`, the rest is dropped and the
   * capture stops.
   */
  private async writeBatch(batch: Queued[]): Promise<void> {
    const chunkLimit = Math.min(MAX_CHUNK_BYTES, this.settings.maxFileBytes);
    let chunk: Buffer[] = [];
    let chunkBytes = 0;
    let done = 0;
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return;
      await this.write(Buffer.concat(chunk, chunkBytes));
      this.recorded += chunk.length;
      Metrics.captureRecords.add(chunk.length, { result: 'recorded' });
      done += chunk.length;
      chunk = [];
      chunkBytes = 0;
    };
    try {
      for (const { record } of batch) {
        if (this.bytesWritten >= this.settings.maxTotalBytes) break;
        const bytes = encodeRecord(this.redactor ? { ...record, ...this.redacted(record) } : record);
        if (chunkBytes > 0 && chunkBytes + bytes.length > chunkLimit) await flush();
        chunk.push(bytes);
        chunkBytes += bytes.length;
      }
      await flush();
    } catch (err) {
      this.failed = true;
      for (let i = done; i < batch.length; i++) this.drop('write_failed');
      this.log.error({ err: (err as Error).message, dir: this.settings.dir }, 'capture write failed; stopping the capture');
      this.stopSelf(`write failed: ${(err as Error).message}`);
      return;
    }
    for (let i = done; i < batch.length; i++) this.drop('max_total_bytes');
    if (this.bytesWritten >= this.settings.maxTotalBytes) this.stopSelf(`capture.maxTotalBytes (${this.settings.maxTotalBytes}) reached`);
  }

  private redacted(r: CaptureRecord): Pick<CaptureRecord, 'body' | 'seqs'> {
    const { body, sequences } = this.redactor!.redactCommand(r.body, r.seqs);
    return { body, seqs: sequences };
  }

  private async write(plain: Buffer): Promise<void> {
    const bytes = this.settings.compression === 'zstd' ? await zstdCompress(plain, 3) : plain;
    // A file takes at least one chunk after its header; one that would cross maxFileBytes goes to the next file.
    if (!this.file || (this.fileBytes > this.headerBytes && this.fileBytes + bytes.length > this.settings.maxFileBytes)) await this.rotate();
    await this.file!.write(bytes);
    this.fileBytes += bytes.length;
    this.bytesWritten += bytes.length;
  }

  private async rotate(): Promise<void> {
    await this.file?.close();
    const stamp = new Date(this.startedAt).toISOString().replace(/[:.]/g, '-');
    const seq = this.files.length + 1;
    const name = path.join(this.settings.dir, `capture-${stamp}-${String(seq).padStart(4, '0')}.bson${this.settings.compression === 'zstd' ? '.zst' : ''}`);
    this.file = await open(name, 'wx', 0o600); // production data: readable by mongoplex's user only
    this.files.push(name);
    const header = encodeHeader({
      mongoplexCapture: CAPTURE_FORMAT_VERSION, startedAt: new Date(this.startedAt), file: seq,
      redacted: this.redactor !== undefined, compression: this.settings.compression,
    });
    const bytes = this.settings.compression === 'zstd' ? await zstdCompress(header, 3) : header;
    await this.file.write(bytes);
    this.fileBytes = this.headerBytes = bytes.length;
    this.bytesWritten += bytes.length;
  }

  async finish(because: string): Promise<void> {
    this.stoppedBecause = because;
    if (this.timer) clearTimeout(this.timer);
    this.flushNow?.();
    while (this.writing) await this.writing;
    for (const _ of this.queue.splice(0)) this.drop('stopped'); // left after a write failure
    this.queuedBytes = 0;
    await this.file?.close();
    this.file = undefined;
  }

  status(active: boolean): CaptureStatus {
    return {
      active,
      files: [...this.files],
      startedAt: new Date(this.startedAt).toISOString(),
      recorded: this.recorded,
      dropped: { ...this.dropped },
      bytesWritten: this.bytesWritten,
      queuedBytes: this.queuedBytes,
      queueBytes: this.settings.queueBytes,
      stoppedBecause: this.stoppedBecause,
      settings: this.settings,
    };
  }
}
