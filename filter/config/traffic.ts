import { z } from 'zod';
import { hostPort, invalid, ms } from './kit';

/** Traffic capture and read mirroring. */

export const capture = z.strictObject({
  enabled: z.boolean().default(false).describe('start recording when mongoplex starts (otherwise `POST /capture/start`); needs `capture.dir`'),
  dir: z.string().min(1).nullable().default(null).describe('directory for capture files (created if missing); `null`: captures cannot start'),
  sampleRate: z.number().min(0).max(1).default(1).describe('fraction of client connections recorded — whole connections, so their order, cursors and transactions stay complete'),
  namespaces: z.array(z.string().min(1)).default([]).describe('record only these (`db`, `db.*`, `db.collection`; comma-separated in the environment); empty: all. Commands naming no collection match on their database'),
  redact: z.boolean().default(false).describe('replace values in filters, updates and documents with same-type placeholders (see [Traffic](traffic.md))'),
  compression: z.enum(['zstd', 'none']).default('zstd').describe('`zstd` or `none`'),
  maxFileBytes: z.number().int().min(64 * 1024).default(64 * 1024 * 1024).describe('a new file is started past this size'),
  maxTotalBytes: z.number().int().min(64 * 1024).default(1024 * 1024 * 1024).describe('the capture stops once its files hold this much'),
  maxDurationMs: ms.default(60 * 60_000).describe('the capture stops after this long (`0`: no limit)'),
  queueBytes: z.number().int().min(1024).default(16 * 1024 * 1024).describe('records waiting to be written may hold this much; more are dropped and counted, never waited for'),
}).prefault({});

export const mirror = z.strictObject({
  target: hostPort.nullable().default(null).describe('shadow server (host:port) that reads are copied to; `null`: no mirroring'),
  fraction: z.number().min(0).max(1).default(1).describe('fraction of eligible reads mirrored (find, count, distinct, aggregate without `$out`/`$merge`; never inside a transaction)'),
  namespaces: z.array(z.string().min(1)).default([]).describe('mirror only these (`db`, `db.*`, `db.collection`); empty: all'),
  poolSize: z.number().int().min(1).max(64).default(2).describe('connections to the shadow (reads in flight there)'),
  maxQueue: z.number().int().min(1).default(1000).describe('reads waiting for the shadow; more are dropped and counted'),
  queueBytes: z.number().int().min(1024).default(16 * 1024 * 1024).describe('bytes those waiting reads may hold (request + the primary\'s reply)'),
  timeoutMs: z.number().int().min(1).default(2000).describe('a shadow read (connect included) not answered in this long is dropped and its connection closed; mirrored reads are then dropped at once for this long'),
}).prefault({});

/** What a POST /capture/start body may change for that capture (never where files go). */
export const CaptureStartSchema = z.strictObject({
  sampleRate: z.number().min(0).max(1).optional(),
  namespaces: z.array(z.string().min(1)).optional(),
  redact: z.boolean().optional(),
  compression: z.enum(['zstd', 'none']).optional(),
  maxDurationMs: ms.optional(),
  maxTotalBytes: z.number().int().min(64 * 1024).optional(),
});

/** A capture that starts with the process needs somewhere to write. */
export function checkCapture(c: z.infer<typeof capture>): void {
  if (c.enabled && !c.dir) throw invalid('capture.enabled', 'needs capture.dir (where capture files go)');
}
