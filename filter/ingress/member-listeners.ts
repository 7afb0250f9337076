import type { Proxy } from '../proxy';
import type { TopologyMonitor } from '../topology/monitor';
import type { AddressMap } from '../topology/address-map';
import type { ServerAddress } from '../upstream/address';
import { TcpIngress } from './tcp';
import type { ReloadingTlsFiles } from './tls-files';

/**
 * Replset mode: one TCP listener per replica-set member, opened when the monitor discovers the
 * member and closed (with that member's clients) when it leaves; other clients are untouched.
 */
export class MemberListeners {
  private readonly listeners = new Map<string, Promise<TcpIngress | undefined>>();

  constructor(private readonly proxy: Proxy, private readonly monitor: TopologyMonitor, private readonly addresses: AddressMap, private readonly host: string, private readonly tlsFiles?: ReloadingTlsFiles) {
    monitor.on('memberAdded', (m: ServerAddress) => void this.open(m));
    monitor.on('memberRemoved', (m: ServerAddress) => void this.drop(m));
  }

  private open(member: ServerAddress): Promise<TcpIngress | undefined> {
    const key = member.toString();
    const existing = this.listeners.get(key);
    if (existing) return existing;
    // A member advertised at a fixed address (an Envoy listener) needs no proxy port.
    if (this.addresses.isFixed(member)) return Promise.resolve(undefined);
    const opening = (async () => {
      const ingress = new TcpIngress(this.proxy, member, this.tlsFiles);
      try {
        const bound = await ingress.listen(this.host, this.addresses.portFor(member));
        this.addresses.bound(member, bound.port);
        this.proxy.log.info({ member: key, proxyAddress: this.addresses.proxyAddressOf(key) }, 'member proxy address open');
        return ingress;
      } catch (err) {
        this.proxy.log.error({ member: key, err: (err as Error).message }, 'cannot open a proxy address for member');
        return undefined;
      }
    })();
    this.listeners.set(key, opening);
    return opening;
  }

  private async drop(member: ServerAddress): Promise<void> {
    const key = member.toString();
    const ingress = await this.listeners.get(key);
    this.listeners.delete(key);
    await ingress?.close(true);
    this.proxy.log.info({ member: key }, 'member left the replica set: proxy address closed');
  }

  /** Waits until every known member has its proxy address. */
  async ready(): Promise<void> {
    await Promise.all(this.monitor.members().map((m) => this.open(m.address)));
  }

  async stopAccepting(): Promise<void> {
    for (const i of await Promise.all(this.listeners.values())) i?.stopAccepting();
  }

  async close(): Promise<void> {
    const all = await Promise.all(this.listeners.values());
    await Promise.all(all.map((i) => i?.close(true)));
  }
}
