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
  /** Sets derived from this one (auth.mode passthrough: each user's pools), following its servers. */
  private readonly derived = new Set<ServerSet>();
  private parent: ServerSet | undefined;

  constructor(servers: readonly string[], private readonly options: PoolOptions) {
    // Pools share this object, so reconfigure() reaches them all.
    this.options = { ...options };
    for (const s of servers) this.add(ServerAddress.parse(s));
  }

  /** Where the primary comes from once the topology is monitored. */
  followPrimary(primary: () => ServerAddress | undefined): void {
    this.primary = primary;
  }

  /**
   * A set of its own pools to the same servers, with other pool options (auth.mode passthrough:
   * one user's pools, logging in as that user). It follows this set: the same primary, servers
   * added and removed with it, the same pool listeners, swept with it; until it is closed.
   */
  derive(options: Partial<PoolOptions>): ServerSet {
    const child = new ServerSet([], { ...this.options, ...options });
    child.primary = () => this.primary();
    child.parent = this;
    for (const p of this.pools.values()) child.add(p.address);
    this.derived.add(child);
    return child;
  }

  /** Called for every pool, present and future (of derived sets too). */
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
      this.announce(pool);
      for (const d of this.derived) d.add(address);
    }
    return pool;
  }

  private announce(pool: UpstreamPool): void {
    this.parent?.announce(pool);
    for (const f of this.onNewPool) f(pool);
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
    for (const d of this.derived) d.remove(address);
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
    for (const d of this.derived) d.sweep(now);
  }

  /**
   * New pool settings (reload): every pool, present and future, follows them at once; a pool
   * over its new size closes idle connections now and busy ones as they come back.
   */
  reconfigure(changes: Partial<PoolOptions>): void {
    Object.assign(this.options, changes);
    for (const p of this.pools.values()) p.resized();
    // Derived sets keep their own sizes (auth.passthrough.maxPoolSizePerUser); timeouts and the rest follow.
    const { maxPoolSize: _max, minPoolSize: _min, ...rest } = changes;
    for (const d of this.derived) d.reconfigure(rest);
  }

  /** Closes every pool (and derived set). `revoked`: waiting requests are told to log in again. */
  close(why: 'closed' | 'revoked' = 'closed'): void {
    for (const p of this.pools.values()) p.close(why);
    for (const d of [...this.derived]) d.close(why);
    this.parent?.derived.delete(this);
  }
}
