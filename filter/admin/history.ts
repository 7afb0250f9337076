/** One second of the proxy's life, as the status page charts it. */
export interface HistorySample {
  /** Unix ms. */
  readonly t: number;
  readonly clients: number;
  /** Pooled upstream connections (all servers), those in use, and the pools' combined maximum. */
  readonly upstream: number;
  readonly inUse: number;
  readonly maxPool: number;
  /** Requests waiting for a pooled connection, and the longest wait now. */
  readonly waiting: number;
  readonly oldestWaitMs: number;
  /** Forwarded commands per second, and their latency percentiles over the second. */
  readonly commandsPerSecond: number;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
}

/** The last `capacity` samples (a ring: memory stays fixed). */
export class History {
  private readonly samples: HistorySample[] = [];

  constructor(private readonly capacity = 600) {}

  add(s: HistorySample): void {
    this.samples.push(s);
    if (this.samples.length > this.capacity) this.samples.shift();
  }

  /** Samples newer than `since` (Unix ms), oldest first. */
  since(since = 0): HistorySample[] {
    return since > 0 ? this.samples.filter((s) => s.t > since) : [...this.samples];
  }
}
