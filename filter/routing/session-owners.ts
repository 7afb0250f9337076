import { Metrics } from '../telemetry/metrics';
import { LruTtlMap } from './lru-ttl-map';

interface Owner {
  readonly user: string;
  lastUsedAt: number;
}

/**
 * auth.mode proxy and passthrough: which user each logical session (lsid) belongs to, learnt from
 * the first command that used it. Upstream every client of the proxy mode shares one identity, so
 * the server cannot tell users' sessions apart: the proxy refuses a session, or its
 * endSessions/killSessions, to any other user. Bounded in size (least recently used forgotten
 * first) and in idle time (mongod forgets a session after 30 idle minutes). A forgotten session
 * is claimed again by whoever uses it next; session ids are random UUIDs, so that needs the id.
 */
export class SessionOwners {
  private readonly owners: LruTtlMap<Owner>;

  constructor(maxSessions: number, idleTtlMs: number) {
    this.owners = new LruTtlMap(maxSessions, idleTtlMs, (_k, _v, reason) => Metrics.sessionOwnersEvicted.add(1, { reason }));
  }

  get size(): number {
    return this.owners.size;
  }

  /** The session is used by `user`: true if it is (now) the user's, false if another user's. */
  claim(lsid: string, user: string): boolean {
    const known = this.owners.get(lsid);
    if (known) return known.user === user;
    this.owners.set(lsid, { user, lastUsedAt: Date.now() });
    return true;
  }

  /** Whether `user` may end or kill these sessions: none of them is another user's. */
  mayEnd(lsids: readonly string[], user: string): boolean {
    return lsids.every((id) => {
      const known = this.owners.get(id);
      return !known || known.user === user;
    });
  }

  sweep(now = Date.now()): void {
    this.owners.sweep(now);
  }
}
