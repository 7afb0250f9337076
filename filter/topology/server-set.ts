import { ServerAddress } from '../upstream/address';
import { UpstreamPool, type PoolOptions } from '../upstream/pool';

/**
 * The upstream servers the proxy pools connections to, one pool each. Members discovered or
 * removed at run time are added and closed here. The writable server is the monitored primary
 * when there is one; otherwise the first server whose handshake said it is writable (or the
 * first configured, before any handshake).
 */
export class ServerSet {
  private readonly pools = new Map<string, UpstreamPool>();
  private primary: () => ServerAddress | undefined = () => undefined;
  private readonly onNewPool: Array<(p: UpstreamPool) => void> = [];

  constructor(servers: readonly string[], private readonly options: PoolOptions) {
    // Pools share this object, so reconfigure() reaches them all.
    this.options = { ...options };
    for (const s of servers) this.add(ServerAddress.parse(s));
  }

  /** Where the primary comes from once the topology is monitored. */
  followPrimary(primary: () => ServerAddress | undefined): void {
    this.primary = primary;
  }

  /** Called for every pool, present and future. */
  eachPool(f: (p: UpstreamPool) => void): void {
    this.onNewPool.push(f);
    for (const p of this.pools.values()) f(p);
  }

  add(address: ServerAddress): UpstreamPool {
    const key = address.toString();
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new UpstreamPool(address, this.options);
      this.pools.set(key, pool);
      for (const f of this.onNewPool) f(pool);
    }
    return pool;
  }

  /** The configured servers changed (reload, single mode): pools for the new ones, the others closed. */
  setServers(servers: readonly ServerAddress[]): void {
    const keep = new Set(servers.map((a) => a.toString()));
    for (const p of this.all()) if (!keep.has(p.address.toString())) this.remove(p.address);
    for (const a of servers) this.add(a);
  }

  remove(address: ServerAddress): void {
    const key = address.toString();
    this.pools.get(key)?.close();
    this.pools.delete(key);
  }

  all(): UpstreamPool[] {
    return [...this.pools.values()];
  }

  pool(address: ServerAddress): UpstreamPool | undefined {
    return this.pools.get(address.toString());
  }

  writable(): UpstreamPool {
    const p = this.primary();
    const monitored = p && this.pools.get(p.toString());
    if (monitored) return monitored;
    const all = this.all();
    return all.find((x) => x.description?.writable) ?? all[0]!;
  }

  sweep(now = Date.now()): void {
    for (const p of this.pools.values()) p.sweep(now);
  }

  /**
   * New pool settings (reload): every pool, present and future, follows them at once; a pool
   * over its new size closes idle connections now and busy ones as they come back.
   */
  reconfigure(changes: Partial<PoolOptions>): void {
    Object.assign(this.options, changes);
    for (const p of this.pools.values()) p.resized();
  }

  close(): void {
    for (const p of this.pools.values()) p.close();
  }
}
