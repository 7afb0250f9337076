import type { Document } from 'bson';
import { LEGACY_REMOVED_WIRE_VERSION, OpCode } from '../wire/header';
import type { CommandInfo } from '../wire/peek';
import type { ServerSet } from '../topology/server-set';
import type { TopologyMonitor } from '../topology/monitor';
import type { MemberDescription } from '../topology/member';
import type { CheckoutKind, UpstreamPool } from '../upstream/pool';
import type { UpstreamConnection } from '../upstream/connection';
import type { CursorRoutes } from './cursor-routes';
import type { TransactionRoutes } from './transaction-routes';
import type { ClientRoutes } from './client-routes';
import type { SessionOwners } from './session-owners';
import { isLastErrorCommand, isWriteCommand, NO_GETLASTERROR_WIRE_VERSION } from './last-error-pin';
import { selectServer } from './server-selection';
import { ErrorCode, errorDocument } from '../wire/errors';
import { Metrics } from '../telemetry/metrics';

/** Why a message goes where it goes (recorded on spans and in metrics). */
export type RouteReason = 'primary' | 'member' | 'cursor' | 'cursor_unknown' | 'pinned' | 'transaction' | 'selected';

/** A client request, as far as routing is concerned. */
export interface RoutedRequest {
  readonly opCode: number;
  /** The command name (OP_MSG, OP_QUERY on `$cmd`), else the opcode's name. */
  readonly name: string;
  /** Routing facts read from an OP_MSG command; undefined for OP_QUERY and the legacy opcodes. */
  readonly cmd: CommandInfo | undefined;
  /** No reply will come (OP_MSG moreToCome, OP_INSERT/UPDATE/DELETE/KILL_CURSORS). */
  readonly moreToCome: boolean;
}

export interface Route {
  readonly pool: UpstreamPool;
  readonly reason: RouteReason;
  /** A continuation (getMore, killCursors, a transaction's later statements) waits ahead of new work for a connection. */
  readonly checkout: CheckoutKind;
  /** A connection routing already holds for this client (the getLastError pin); otherwise check one out. */
  readonly connection: UpstreamConnection | undefined;
  /** Gives the connection back once the reply is read: to the pool, or held for a following getLastError. */
  release(conn: UpstreamConnection): void;
}

/** A route as the router makes them: one object per request, no closure. */
class PoolRoute implements Route {
  constructor(
    readonly pool: UpstreamPool,
    readonly reason: RouteReason,
    readonly checkout: CheckoutKind,
    readonly connection: UpstreamConnection | undefined,
    /** Set when the connection is held for this client's getLastError after the reply. */
    private readonly holdFor: ClientRoutes | undefined,
  ) {}

  release(conn: UpstreamConnection): void {
    if (this.holdFor) this.holdFor.lastError.hold(this.pool, conn);
    else this.pool.checkIn(conn);
  }
}

/** Where a request goes, or — when no server holds what it asks about — the answer itself. */
export type RouteDecision =
  | { readonly kind: 'forward'; readonly route: Route }
  | { readonly kind: 'answer'; readonly reply: Document | Promise<Document> };

/** mongos mode: the proxy selects servers itself from the monitored deployment. */
export interface Selection {
  readonly monitor: TopologyMonitor;
  readonly heartbeatMs: number;
}

/** auth.mode passthrough: the client's user pools were closed (its secret changed); drivers log in again and retry. */
const LOG_IN_AGAIN: Document = errorDocument(ErrorCode.ReauthenticationRequired, "mongoplex: this user's secret changed since the connection logged in; log in again");

/** getLastError's answer when the client's last write left no connection to ask. */
const NO_LAST_ERROR: Document = { ok: 1, err: null, n: 0 };

/**
 * Decides which upstream server (and, for getLastError, which connection) each request goes
 * to. Every routing rule lives here: cursor and transaction pins, the getLastError pin,
 * replica-set members, server selection, and the fallback for requests with no command to
 * read. Knows nothing about sockets.
 */
export class Router {
  constructor(
    private readonly servers: ServerSet,
    private readonly cursors: CursorRoutes,
    private readonly transactions: TransactionRoutes,
    private readonly selection?: Selection,
    /**
     * auth.mode proxy or passthrough: clients log in, and cursors and logical sessions are
     * served only to the user who opened them (undefined: clients do not log in).
     */
    private readonly sessionOwners?: SessionOwners,
  ) {}

  /**
   * A command in another user's logical session, or ending or killing one, is refused: upstream
   * every user of the proxy mode has the same identity, so the server would not tell them apart.
   */
  private foreignSession(cmd: CommandInfo, client: ClientRoutes, owners: SessionOwners): Document | undefined {
    const user = client.user;
    if (user === undefined) return undefined;
    const ids = cmd.sessionIds;
    if (ids ? owners.mayEnd(ids, user) : cmd.lsid === undefined || owners.claim(cmd.lsid, user)) return undefined;
    Metrics.foreignSessionRefusals.add(1, { command: cmd.name.toLowerCase() });
    return errorDocument(ErrorCode.Unauthorized, `mongoplex: ${ids ? 'a session listed' : 'the session (lsid)'} belongs to another user`);
  }

  /**
   * A getMore or killCursors on a cursor another user opened is refused as mongod refuses it
   * (Unauthorized); one on a cursor the proxy has no route for is CursorNotFound, since
   * whose it is cannot be told (the route was evicted, or opened before a restart).
   */
  private foreignCursor(cmd: CommandInfo, client: ClientRoutes): Document | undefined {
    const lname = cmd.name.toLowerCase();
    if (lname !== 'getmore' && lname !== 'killcursors') return undefined;
    const ids = lname === 'getmore' ? (cmd.cursorId === undefined ? [] : [cmd.cursorId]) : cmd.killCursorIds ?? [];
    for (const id of ids) {
      const known = cmd.cursorNs !== undefined ? this.cursors.lookup(id, cmd.cursorNs) : undefined;
      if (!known) return errorDocument(ErrorCode.CursorNotFound, `cursor id ${id} not found`);
      if (known.owner !== client.user) {
        Metrics.foreignCursorRefusals.add(1, { command: lname });
        return errorDocument(ErrorCode.Unauthorized, `cursor id ${id} was not created by the authenticated user`);
      }
    }
    return undefined;
  }

  /** The pools a client's requests go to: its user's own (auth.mode passthrough), else the shared ones. */
  private serversOf(client: ClientRoutes): ServerSet {
    return client.lease?.servers ?? this.servers;
  }

  route(req: RoutedRequest, client: ClientRoutes): RouteDecision {
    if (client.lease?.revoked) return { kind: 'answer', reply: LOG_IN_AGAIN };
    const owners = this.sessionOwners;
    const foreign = owners && req.cmd ? this.foreignCursor(req.cmd, client) ?? this.foreignSession(req.cmd, client, owners) : undefined;
    if (foreign) return { kind: 'answer', reply: foreign };
    const lastError = isLastErrorCommand(req.name);
    const pinned = client.lastError.take();
    if (!lastError) client.lastError.lastAnswer = undefined;
    const unacknowledgedWrite = isUnacknowledgedWrite(req);
    if (pinned && (lastError || unacknowledgedWrite)) {
      // The pinned connection carries the write's outcome: getLastError reads it there, and a
      // further unacknowledged write keeps using it so getLastError reports the latest one.
      return { kind: 'forward', route: this.routeTo(pinned.pool, 'pinned', client, 'new', unacknowledgedWrite, pinned.conn) };
    }
    if (pinned) pinned.pool.checkIn(pinned.conn);
    const { pool, reason } = req.cmd ? this.routeCommand(req.cmd, client) : this.fallback(client);
    if (lastError) {
      // No connection holds an outcome: the last answer (or the one read when the pin was
      // reclaimed), else "no error" — never another client's connection state. A server
      // without getLastError (5.1+) answers for itself.
      const known = client.lastError.lastAnswer;
      if (known) return { kind: 'answer', reply: known };
      if ((pool.description?.maxWireVersion ?? 0) < NO_GETLASTERROR_WIRE_VERSION) return { kind: 'answer', reply: NO_LAST_ERROR };
    }
    return { kind: 'forward', route: this.routeTo(pool, reason, client, req.cmd && isContinuation(req.cmd) ? 'continuation' : 'new', unacknowledgedWrite) };
  }

  /**
   * Whether the server legacy opcodes would go to has none left (5.1+: mongod refuses them,
   * FerretDB drops the connection): the proxy then answers for it instead of forwarding.
   */
  legacyOpcodesRemoved(client: ClientRoutes): boolean {
    return (this.fallback(client).pool.description?.maxWireVersion ?? 0) >= LEGACY_REMOVED_WIRE_VERSION;
  }

  private routeTo(pool: UpstreamPool, reason: RouteReason, client: ClientRoutes, checkout: CheckoutKind, holdForLastError: boolean, connection?: UpstreamConnection): Route {
    // Only a fire-and-forget write leaves an outcome a getLastError could ask about.
    return new PoolRoute(pool, reason, checkout, connection, holdForLastError ? client : undefined);
  }

  /**
   * `client.member`: the replica-set member whose proxy address the client connected to
   * (replset mode): the driver already selected that server, so its commands go there.
   */
  private routeCommand(cmd: CommandInfo, client: ClientRoutes): { pool: UpstreamPool; reason: RouteReason } {
    const lname = cmd.name.toLowerCase();
    if (lname === 'getmore' || lname === 'killcursors') {
      const id = lname === 'getmore' ? cmd.cursorId : cmd.killCursorIds?.[0];
      const known = id !== undefined && cmd.cursorNs !== undefined ? this.cursors.lookup(id, cmd.cursorNs) : undefined;
      const pool = known && this.serversOf(client).pool(known.server);
      // An unknown cursor (evicted, or opened before a restart) is tried on the writable server:
      // at worst it answers CursorNotFound, exactly as it would for an expired cursor.
      if (pool) return { pool, reason: 'cursor' };
      return { pool: this.memberPool(client) ?? this.serversOf(client).writable(), reason: 'cursor_unknown' };
    }
    const memberPool = this.memberPool(client);
    if (memberPool) return { pool: memberPool, reason: 'member' };
    if (cmd.inTransaction && cmd.lsid) {
      // Every statement of a transaction goes where startTransaction went.
      if (cmd.startTransaction) {
        const chosen = this.select(cmd, client);
        this.transactions.pin(cmd.lsid, chosen.pool.address);
        return { pool: chosen.pool, reason: 'transaction' };
      }
      const pinned = this.transactions.lookup(cmd.lsid);
      const pool = pinned && this.serversOf(client).pool(pinned);
      if (pool) return { pool, reason: 'transaction' };
    }
    return this.select(cmd, client);
  }

  /**
   * OP_QUERY and the legacy opcodes carry no command routing can read: they go to the member
   * the client dialled, else the writable server (a modern server refuses them itself, a
   * legacy one answers them).
   */
  private fallback(client: ClientRoutes): { pool: UpstreamPool; reason: RouteReason } {
    const member = this.memberPool(client);
    return member ? { pool: member, reason: 'member' } : { pool: this.serversOf(client).writable(), reason: 'primary' };
  }

  private select(cmd: CommandInfo, client: ClientRoutes): { pool: UpstreamPool; reason: RouteReason } {
    const servers = this.serversOf(client);
    if (!this.selection) return { pool: servers.writable(), reason: 'primary' };
    const rp = cmd.inTransaction ? undefined : cmd.readPreference;
    const chosen = selectServer(this.selection.monitor.members(), rp, this.selection.heartbeatMs, (eligible) => this.leastBusy(eligible, servers));
    const pool = chosen && servers.pool(chosen.address);
    return pool ? { pool, reason: 'selected' } : { pool: servers.writable(), reason: 'primary' };
  }

  /** Among eligible servers, the one whose pool is least busy (ties broken at random). */
  private leastBusy(eligible: MemberDescription[], servers: ServerSet): MemberDescription {
    let best: MemberDescription[] = [];
    let bestLoad = Number.POSITIVE_INFINITY;
    for (const m of eligible) {
      const s = servers.pool(m.address)?.stats();
      const load = s ? s.inUse + s.waiting : 0;
      if (load < bestLoad) {
        best = [m];
        bestLoad = load;
      } else if (load === bestLoad) best.push(m);
    }
    return best[Math.floor(Math.random() * best.length)]!;
  }

  private memberPool(client: ClientRoutes): UpstreamPool | undefined {
    return client.member && this.serversOf(client).pool(client.member);
  }
}

const LEGACY_WRITES: ReadonlySet<number> = new Set([OpCode.INSERT, OpCode.UPDATE, OpCode.DELETE]);

/** Work the server already holds resources for: a cursor's next batch or end, a transaction's later statements. */
function isContinuation(cmd: CommandInfo): boolean {
  const n = cmd.name.toLowerCase();
  return n === 'getmore' || n === 'killcursors' || (cmd.inTransaction && !cmd.startTransaction);
}

/** A write whose outcome only a following getLastError can learn. */
function isUnacknowledgedWrite(req: RoutedRequest): boolean {
  if (req.opCode === OpCode.MSG) return req.moreToCome && isWriteCommand(req.name);
  return LEGACY_WRITES.has(req.opCode);
}
