import type { ServerAddress } from '../upstream/address';

/**
 * Real member address ↔ the proxy address clients are told about (replset mode). Ports are
 * handed out from a configured range in discovery order and kept for the process lifetime, so
 * a member keeps its proxy address across membership changes.
 */
export class AddressMap {
  private readonly byMember = new Map<string, number>();
  private next: number;

  /**
   * `fixed`: real member → the address clients must be told for it, when something else
   * (an Envoy listener per member) stands for it; such members get no proxy port.
   */
  constructor(private readonly advertiseHost: string, private readonly first: number, private readonly last: number, private readonly fixed: Readonly<Record<string, string>> = {}) {
    this.next = first;
  }

  /** The member is advertised at a fixed address served by someone else (e.g. Envoy). */
  isFixed(member: ServerAddress): boolean {
    return member.toString() in this.fixed;
  }

  /** Allocates (or returns) the proxy port for a member; 0 means "let the OS pick" (tests). */
  portFor(member: ServerAddress): number {
    const key = member.toString();
    const known = this.byMember.get(key);
    if (known !== undefined) return known;
    if (this.first === 0) return 0;
    if (this.next > this.last) throw new Error(`no proxy port left in ${this.first}-${this.last} for member ${key}`);
    const port = this.next++;
    this.byMember.set(key, port);
    return port;
  }

  /** Records the port actually bound (when the OS picked it). */
  bound(member: ServerAddress, port: number): void {
    this.byMember.set(member.toString(), port);
  }

  /** The proxy address for a real member address string, or undefined if it has none yet. */
  proxyAddressOf(real: string): string | undefined {
    const fixed = this.fixed[real.toLowerCase()];
    if (fixed) return fixed;
    const port = this.byMember.get(real.toLowerCase());
    return port === undefined ? undefined : `${this.advertiseHost}:${port}`;
  }

  entries(): Array<[string, string]> {
    return [...Object.entries(this.fixed), ...[...this.byMember.entries()].map(([m, p]): [string, string] => [m, `${this.advertiseHost}:${p}`])];
  }
}
