import { Metrics } from '../telemetry/metrics';
import type { ServerAddress } from '../upstream/address';
import type { UpstreamConnection } from '../upstream/connection';

/** Where an open cursor lives: the server that created it, and the pooled connection it came from. */
export interface CursorRoute {
  readonly cursorId: bigint;
  readonly ns: string;
  readonly server: ServerAddress;
  readonly creator: UpstreamConnection;
  lastUsedAt: number;
}

/**
 * Cursors belong to a server process, not to a connection: getMore and killCursors must reach
 * the server that created the cursor. This map remembers cursorId + namespace → server,
 * bounded in size (least recently used evicted first) and in idle time. While a route exists,
 * its creating connection counts an open cursor and is not reaped.
 */
export class CursorRoutes {
  /** Insertion order is recency order: a touched route is re-inserted at the end. */
  private readonly routes = new Map<string, CursorRoute>();

  constructor(private readonly maxRoutes: number, private readonly idleTtlMs: number) {}

  get size(): number {
    return this.routes.size;
  }

  private static key(cursorId: bigint, ns: string): string {
    return `${cursorId}|${ns}`;
  }

  remember(cursorId: bigint, ns: string, server: ServerAddress, creator: UpstreamConnection): void {
    const key = CursorRoutes.key(cursorId, ns);
    const existing = this.routes.get(key);
    if (existing) {
      this.touch(key, existing);
      return;
    }
    while (this.routes.size >= this.maxRoutes) {
      const oldest = this.routes.keys().next().value as string;
      this.drop(oldest, 'size_limit');
    }
    creator.openCursors++;
    this.routes.set(key, { cursorId, ns, server, creator, lastUsedAt: Date.now() });
  }

  lookup(cursorId: bigint, ns: string): CursorRoute | undefined {
    const key = CursorRoutes.key(cursorId, ns);
    const r = this.routes.get(key);
    if (r) this.touch(key, r);
    return r;
  }

  /** The cursor is exhausted or killed. */
  forget(cursorId: bigint, ns: string): void {
    this.drop(CursorRoutes.key(cursorId, ns), undefined);
  }

  /** Forgets every route through a connection that closed (its cursors died with it on some servers). */
  forgetConnection(conn: UpstreamConnection): void {
    for (const [key, r] of this.routes) if (r.creator === conn) this.drop(key, 'connection_closed');
  }

  /** Drops routes idle longer than the TTL. Oldest first, so the scan stops at the first fresh one. */
  sweep(now = Date.now()): void {
    for (const [key, r] of this.routes) {
      if (now - r.lastUsedAt < this.idleTtlMs) break;
      this.drop(key, 'idle_ttl');
    }
  }

  private touch(key: string, r: CursorRoute): void {
    r.lastUsedAt = Date.now();
    this.routes.delete(key);
    this.routes.set(key, r);
  }

  private drop(key: string, evictedBecause: string | undefined): void {
    const r = this.routes.get(key);
    if (!r) return;
    this.routes.delete(key);
    r.creator.openCursors = Math.max(0, r.creator.openCursors - 1);
    if (evictedBecause) Metrics.cursorRoutesEvicted.add(1, { reason: evictedBecause });
  }
}
