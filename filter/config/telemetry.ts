import { z } from 'zod';
import { ms } from './kit';

/** Per-collection statistics, the access log and the process log. */

export const stats = z.strictObject({
  enabled: z.boolean().default(true).describe('per-(db, collection, command) and per-callsite statistics on `/commands`, `/stats` and `/metrics`, and the status page\'s command rate and latency'),
  maxEntries: z.number().int().min(1).default(1000).describe('(db, collection, command) rows kept; further combinations share one row labelled `_other` (bounded series count)'),
  maxCallsites: z.number().int().min(1).default(200).describe('(callsite, command) rows kept (a callsite comes from a command\'s `comment`, see [Operations](operations.md)); the rest share `_other`'),
}).prefault({});

export const accessLog = z.strictObject({
  path: z.string().min(1).nullable().default(null).describe('JSON-lines access log of forwarded commands: a file (created `0640`), `-` for stdout; `null`: off'),
  sampleRate: z.number().min(0).max(1).default(1).describe('fraction of commands logged'),
  maxPerSecond: z.number().int().min(1).default(1000).describe('most lines per second; the rest are counted (`mongoplex.access_log.lines{result=rate_limited}`), not written'),
  bufferBytes: z.number().int().min(64 * 1024).default(8 * 1024 * 1024).describe('lines waiting for the disk may hold this much; more are dropped and counted, never waited for'),
}).prefault({});

export const log = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('`fatal` `error` `warn` `info` `debug` `trace` `silent`; JSON logs on stderr'),
  slowMs: ms.default(1000).describe('forwarded commands slower than this are logged at `warn` with the access-log fields (at most 20 lines per 10 s); `0`: never'),
}).prefault({});
