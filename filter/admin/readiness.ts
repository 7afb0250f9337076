import type { Config } from '../config';
import type { MemberDescription, MemberType } from '../topology/member';
import type { UpstreamPool } from '../upstream/pool';

/** Server types that take writes: what a client of the proxy needs unless told otherwise. */
const WRITABLE: ReadonlySet<MemberType> = new Set(['RSPrimary', 'Mongos', 'Standalone']);

export interface ReadinessReport {
  readonly ready: boolean;
  /** Why not ready, one sentence each (empty when ready). */
  readonly reasons: string[];
  readonly servers: Array<{ server: string; type: MemberType; error?: string }>;
  readonly pools: Array<{ server: string; oldestWaitMs: number; saturatedForMs: number }>;
}

/**
 * Readiness (`/readyz`): the proxy can serve new clients now. Two conditions, as a load
 * balancer or Kubernetes needs them:
 * - the monitor's last heartbeat found a server of the required kind (writable by default);
 * - no pool has stayed saturated — a request waiting at least `maxCheckoutWaitMs` for a
 *   connection — for `saturatedForMs` without a break.
 * Saturation is sampled every janitor tick and on each check; one sample without a long wait
 * ends a saturated period.
 */
export class Readiness {
  private readonly saturatedSince = new Map<string, number>();

  constructor(
    private readonly options: Config['readiness'],
    private readonly members: () => MemberDescription[],
    private readonly pools: () => UpstreamPool[],
    private readonly draining: () => boolean = () => false,
  ) {}

  sample(now = Date.now()): void {
    const seen = new Set<string>();
    for (const p of this.pools()) {
      const key = p.address.toString();
      seen.add(key);
      if (p.oldestWaitMs(now) >= this.options.maxCheckoutWaitMs) {
        if (!this.saturatedSince.has(key)) this.saturatedSince.set(key, now);
      } else this.saturatedSince.delete(key);
    }
    for (const key of [...this.saturatedSince.keys()]) if (!seen.has(key)) this.saturatedSince.delete(key);
  }

  check(now = Date.now()): ReadinessReport {
    this.sample(now);
    const reasons: string[] = [];
    if (this.draining()) reasons.push('draining: mongoplex is shutting down and accepts no new clients');
    const members = this.members();
    const wanted = this.options.requires;
    const usable = members.filter((m) => (wanted === 'writable' ? WRITABLE.has(m.type) : m.type !== 'Unknown'));
    if (usable.length === 0) {
      const seen = members.map((m) => `${m.address} is ${m.type}${m.error ? ` (${m.error})` : m.type === 'Unknown' && m.rttMs === undefined ? ' (not checked yet)' : ''}`);
      reasons.push(`no ${wanted === 'writable' ? 'writable' : 'reachable'} upstream server: ${seen.join('; ') || 'none known'}`);
    }
    const pools = this.pools().map((p) => {
      const server = p.address.toString();
      const since = this.saturatedSince.get(server);
      const saturatedForMs = since === undefined ? 0 : now - since;
      const oldestWaitMs = p.oldestWaitMs(now);
      if (since !== undefined && saturatedForMs >= this.options.saturatedForMs) {
        reasons.push(`pool for ${server} saturated for ${(saturatedForMs / 1000).toFixed(1)} s: a request has waited ${(oldestWaitMs / 1000).toFixed(1)} s for one of its ${p.maxSize} connections`);
      }
      return { server, oldestWaitMs, saturatedForMs };
    });
    return {
      ready: reasons.length === 0,
      reasons,
      servers: members.map((m) => ({ server: m.address.toString(), type: m.type, ...(m.error ? { error: m.error } : {}) })),
      pools,
    };
  }
}
