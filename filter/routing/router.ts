import type { CommandInfo } from '../wire/peek';
import type { ServerSet } from '../topology/server-set';
import type { UpstreamPool } from '../upstream/pool';
import type { ServerAddress } from '../upstream/address';
import type { CursorRoutes } from './cursor-routes';

/** Why a message goes where it goes (recorded on spans and in metrics). */
export type RouteReason = 'primary' | 'member' | 'cursor' | 'cursor_unknown' | 'pinned';

export interface Route {
  readonly pool: UpstreamPool;
  readonly reason: RouteReason;
}

/** Decides which upstream server each command goes to. Knows nothing about sockets. */
export class Router {
  constructor(private readonly servers: ServerSet, private readonly cursors: CursorRoutes) {}

  /**
   * `member`: the replica-set member whose proxy address the client connected to (replset
   * mode): the driver already selected that server, so its commands go there.
   */
  route(cmd: CommandInfo, member?: ServerAddress): Route {
    const lname = cmd.name.toLowerCase();
    if (lname === 'getmore' || lname === 'killcursors') {
      const id = lname === 'getmore' ? cmd.cursorId : cmd.killCursorIds?.[0];
      const ns = `${cmd.db}.${cmd.cursorCollection}`;
      const known = id !== undefined ? this.cursors.lookup(id, ns) : undefined;
      const pool = known && this.servers.pool(known.server);
      // An unknown cursor (evicted, or opened before a restart) is tried on the writable server:
      // at worst it answers CursorNotFound, exactly as it would for an expired cursor.
      if (pool) return { pool, reason: 'cursor' };
      return { pool: this.memberPool(member) ?? this.servers.writable(), reason: 'cursor_unknown' };
    }
    const pool = this.memberPool(member);
    if (pool) return { pool, reason: 'member' };
    return { pool: this.servers.writable(), reason: 'primary' };
  }

  private memberPool(member: ServerAddress | undefined): UpstreamPool | undefined {
    return member && this.servers.pool(member);
  }
}
