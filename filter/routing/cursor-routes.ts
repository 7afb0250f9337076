import { Metrics } from '../telemetry/metrics';
import type { ServerAddress } from '../upstream/address';
import type { UpstreamConnection } from '../upstream/connection';
import { LruTtlMap } from './lru-ttl-map';

/** Where an open cursor lives: the server that created it, and the pooled connection it came from. */
export interface CursorRoute {
  readonly cursorId: bigint;
  readonly ns: string;
  readonly server: ServerAddress;
  readonly creator: UpstreamConnection;
  /** auth.mode proxy: the user whose command opened it (only that user may continue or kill it). */
  readonly owner: string | undefined;
  lastUsedAt: number;
}

/**
 * Cursors belong to a server process, not to a connection: getMore and killCursors must reach
 * the server that created the cursor. This map remembers cursorId + namespace → server,
 * bounded in size (least recently used evicted first) and in idle time. While a route exists,
 * its creating connection counts an open cursor and is not reaped.
 */
export class CursorRoutes {
  private readonly routes: LruTtlMap<CursorRoute>;

  constructor(maxRoutes: number, idleTtlMs: number) {
    this.routes = new LruTtlMap(maxRoutes, idleTtlMs, (_k, route, reason) => this.released(route, reason));
  }

  get size(): number {
    return this.routes.size;
  }

  private static key(cursorId: bigint, ns: string): string {
    return `${cursorId}|${ns}`;
  }

  remember(cursorId: bigint, ns: string, server: ServerAddress, creator: UpstreamConnection, owner?: string): void {
    const key = CursorRoutes.key(cursorId, ns);
    if (this.routes.get(key)) return;
    creator.cursorOpened();
    this.routes.set(key, { cursorId, ns, server, creator, owner, lastUsedAt: Date.now() });
  }

  lookup(cursorId: bigint, ns: string): CursorRoute | undefined {
    return this.routes.get(CursorRoutes.key(cursorId, ns));
  }

  /** The most recently used routes, for inspection (/cursors). */
  list(limit: number, now = Date.now()): Array<{ cursorId: string; ns: string; server: string; idleMs: number }> {
    return this.routes.recent(limit).map((r) => ({ cursorId: r.cursorId.toString(), ns: r.ns, server: r.server.toString(), idleMs: now - r.lastUsedAt }));
  }

  /** The cursor is exhausted or killed. */
  forget(cursorId: bigint, ns: string): void {
    const r = this.routes.delete(CursorRoutes.key(cursorId, ns));
    if (r) this.released(r, undefined);
  }

  /** Forgets every route through a connection that closed (its cursors died with it on some servers). */
  forgetConnection(conn: UpstreamConnection): void {
    for (const [key, r] of [...this.routes.entries()]) {
      if (r.creator !== conn) continue;
      this.routes.delete(key);
      this.released(r, 'connection_closed');
    }
  }

  /** Drops routes idle longer than the TTL. */
  sweep(now = Date.now()): void {
    this.routes.sweep(now);
  }

  private released(r: CursorRoute, evictedBecause: string | undefined): void {
    r.creator.cursorClosed();
    if (evictedBecause) Metrics.cursorRoutesEvicted.add(1, { reason: evictedBecause });
  }
}
