import { ServerAddress } from '../upstream/address';
import { UpstreamPool, type PoolOptions } from '../upstream/pool';

/**
 * The upstream servers the proxy pools connections to, one pool each. Until replica-set
 * monitoring exists, the writable server is the first whose handshake said it is writable
 * (or the first configured, before any handshake).
 */
export class ServerSet {
  private readonly pools = new Map<string, UpstreamPool>();

  constructor(servers: readonly string[], options: PoolOptions) {
    for (const s of servers) {
      const address = ServerAddress.parse(s);
      this.pools.set(address.toString(), new UpstreamPool(address, options));
    }
  }

  all(): UpstreamPool[] {
    return [...this.pools.values()];
  }

  pool(address: ServerAddress): UpstreamPool | undefined {
    return this.pools.get(address.toString());
  }

  writable(): UpstreamPool {
    const all = this.all();
    return all.find((p) => p.description?.writable) ?? all[0]!;
  }

  sweep(now = Date.now()): void {
    for (const p of this.pools.values()) p.sweep(now);
  }

  close(): void {
    for (const p of this.pools.values()) p.close();
  }
}
