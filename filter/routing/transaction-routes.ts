import type { ServerAddress } from '../upstream/address';
import { Metrics } from '../telemetry/metrics';

interface TransactionRoute {
  readonly server: ServerAddress;
  lastUsedAt: number;
}

/**
 * Transactions belong to the session (lsid), not to a connection: from startTransaction to
 * commit/abort every statement must reach the same server. lsid → server, bounded in size
 * (oldest evicted) and in idle time (a transaction left open expires on the server too).
 */
export class TransactionRoutes {
  private readonly routes = new Map<string, TransactionRoute>();

  constructor(private readonly maxRoutes: number, private readonly idleTtlMs: number) {}

  get size(): number {
    return this.routes.size;
  }

  pin(lsid: string, server: ServerAddress): void {
    this.routes.delete(lsid);
    while (this.routes.size >= this.maxRoutes) {
      this.routes.delete(this.routes.keys().next().value as string);
      Metrics.transactionRoutesEvicted.add(1, { reason: 'size_limit' });
    }
    this.routes.set(lsid, { server, lastUsedAt: Date.now() });
  }

  lookup(lsid: string): ServerAddress | undefined {
    const r = this.routes.get(lsid);
    if (!r) return undefined;
    r.lastUsedAt = Date.now();
    this.routes.delete(lsid);
    this.routes.set(lsid, r);
    return r.server;
  }

  unpin(lsid: string): void {
    this.routes.delete(lsid);
  }

  sweep(now = Date.now()): void {
    for (const [k, r] of this.routes) {
      if (now - r.lastUsedAt < this.idleTtlMs) break;
      this.routes.delete(k);
      Metrics.transactionRoutesEvicted.add(1, { reason: 'idle_ttl' });
    }
  }
}
