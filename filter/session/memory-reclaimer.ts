import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import type { ByteBudget } from './byte-budget';

/** Client input let go (since the last collection) that is worth a collection to return. */
export const RECLAIM_AT_BYTES = 64 * 1024 * 1024;
/** At most one collection this often: a workload of large messages lets go of input all the time. */
export const RECLAIM_EVERY_MS = 5000;

/** V8's collector: `global.gc` when node runs with --expose-gc, else the same function exposed now. */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/**
 * Gives back to the system the memory of large client messages once they are gone. Each is a
 * buffer of its own (see MessageFramer's ASSEMBLE_AT_BYTES), freed only when the collector
 * finds it unreachable, and nothing makes the collector run while the process is quiet: ten
 * clients that each sent 47 MB and left kept 470 MB resident. Called by the janitor: once
 * `RECLAIM_AT_BYTES` of input is let go, one full collection (a few ms with mongoplex's heap).
 */
export class MemoryReclaimer {
  private lastAt = 0;

  /** `gc`: the collector (V8's, exposed on first use, unless given). */
  constructor(private readonly budget: ByteBudget, private readonly log: Logger, private gc?: () => void) {}

  sweep(now: number): void {
    const released = this.budget.releasedBytes;
    if (released < RECLAIM_AT_BYTES || now - this.lastAt < RECLAIM_EVERY_MS) return;
    this.lastAt = now;
    this.budget.mark();
    this.gc ??= collector();
    const started = performance.now();
    this.gc();
    const ms = performance.now() - started;
    Metrics.memoryReclaims.add(1);
    this.log.debug({ releasedBytes: released, ms: Math.round(ms * 10) / 10 }, 'collected garbage after large client messages went');
  }
}
