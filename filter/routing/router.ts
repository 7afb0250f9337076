import type { CommandInfo } from '../wire/peek';
import type { ServerSet } from '../topology/server-set';
import type { TopologyMonitor } from '../topology/monitor';
import type { UpstreamPool } from '../upstream/pool';
import type { ServerAddress } from '../upstream/address';
import type { CursorRoutes } from './cursor-routes';
import type { TransactionRoutes } from './transaction-routes';
import { selectServer } from './server-selection';
import type { MemberDescription } from '../topology/member';

/** Why a message goes where it goes (recorded on spans and in metrics). */
export type RouteReason = 'primary' | 'member' | 'cursor' | 'cursor_unknown' | 'pinned' | 'transaction' | 'selected';

export interface Route {
  readonly pool: UpstreamPool;
  readonly reason: RouteReason;
}

/** mongos mode: the proxy selects servers itself from the monitored deployment. */
export interface Selection {
  readonly monitor: TopologyMonitor;
  readonly heartbeatMs: number;
}

/** Decides which upstream server each command goes to. Knows nothing about sockets. */
export class Router {
  constructor(
    private readonly servers: ServerSet,
    private readonly cursors: CursorRoutes,
    private readonly transactions: TransactionRoutes,
    private readonly selection?: Selection,
  ) {}

  /**
   * `member`: the replica-set member whose proxy address the client connected to (replset
   * mode): the driver already selected that server, so its commands go there.
   */
  route(cmd: CommandInfo, member?: ServerAddress): Route {
    const lname = cmd.name.toLowerCase();
    if (lname === 'getmore' || lname === 'killcursors') {
      const id = lname === 'getmore' ? cmd.cursorId : cmd.killCursorIds?.[0];
      const known = id !== undefined && cmd.cursorNs !== undefined ? this.cursors.lookup(id, cmd.cursorNs) : undefined;
      const pool = known && this.servers.pool(known.server);
      // An unknown cursor (evicted, or opened before a restart) is tried on the writable server:
      // at worst it answers CursorNotFound, exactly as it would for an expired cursor.
      if (pool) return { pool, reason: 'cursor' };
      return { pool: this.memberPool(member) ?? this.servers.writable(), reason: 'cursor_unknown' };
    }
    const memberPool = this.memberPool(member);
    if (memberPool) return { pool: memberPool, reason: 'member' };
    if (cmd.inTransaction && cmd.lsid) {
      // Every statement of a transaction goes where startTransaction went.
      if (cmd.startTransaction) {
        const chosen = this.select(cmd);
        this.transactions.pin(cmd.lsid, chosen.pool.address);
        return { pool: chosen.pool, reason: 'transaction' };
      }
      const pinned = this.transactions.lookup(cmd.lsid);
      const pool = pinned && this.servers.pool(pinned);
      if (pool) return { pool, reason: 'transaction' };
    }
    return this.select(cmd);
  }

  private select(cmd: CommandInfo): Route {
    if (!this.selection) return { pool: this.servers.writable(), reason: 'primary' };
    const rp = cmd.inTransaction ? undefined : cmd.readPreference;
    const chosen = selectServer(this.selection.monitor.members(), rp, this.selection.heartbeatMs, (eligible) => this.leastBusy(eligible));
    const pool = chosen && this.servers.pool(chosen.address);
    return pool ? { pool, reason: 'selected' } : { pool: this.servers.writable(), reason: 'primary' };
  }

  /** Among eligible servers, the one whose pool is least busy (ties broken at random). */
  private leastBusy(eligible: MemberDescription[]): MemberDescription {
    let best: MemberDescription[] = [];
    let bestLoad = Number.POSITIVE_INFINITY;
    for (const m of eligible) {
      const s = this.servers.pool(m.address)?.stats();
      const load = s ? s.inUse + s.waiting : 0;
      if (load < bestLoad) {
        best = [m];
        bestLoad = load;
      } else if (load === bestLoad) best.push(m);
    }
    return best[Math.floor(Math.random() * best.length)]!;
  }

  private memberPool(member: ServerAddress | undefined): UpstreamPool | undefined {
    return member && this.servers.pool(member);
  }
}
