import type { ServerAddress } from '../upstream/address';
import { Metrics } from '../telemetry/metrics';
import { LruTtlMap } from './lru-ttl-map';

interface TransactionRoute {
  readonly lsid: string;
  readonly server: ServerAddress;
  lastUsedAt: number;
}

/**
 * Transactions belong to the session (lsid), not to a connection: from startTransaction to
 * commit/abort every statement must reach the same server. lsid → server, bounded in size
 * (oldest evicted) and in idle time (a transaction left open expires on the server too).
 */
export class TransactionRoutes {
  private readonly routes: LruTtlMap<TransactionRoute>;

  constructor(maxRoutes: number, idleTtlMs: number) {
    this.routes = new LruTtlMap(maxRoutes, idleTtlMs, (_k, _v, reason) => Metrics.transactionRoutesEvicted.add(1, { reason }));
  }

  get size(): number {
    return this.routes.size;
  }

  pin(lsid: string, server: ServerAddress): void {
    this.routes.set(lsid, { lsid, server, lastUsedAt: Date.now() });
  }

  lookup(lsid: string): ServerAddress | undefined {
    return this.routes.get(lsid)?.server;
  }

  /** The most recently used pins, for inspection (/transactions): the session id (hex) and its server. */
  list(limit: number, now = Date.now()): Array<{ lsid: string; server: string; idleMs: number }> {
    return this.routes.recent(limit).map((r) => ({ lsid: r.lsid, server: r.server.toString(), idleMs: now - r.lastUsedAt }));
  }

  sweep(now = Date.now()): void {
    this.routes.sweep(now);
  }
}
