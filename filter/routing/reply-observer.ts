import { Long } from 'bson';
import type { Logger } from '../log';
import type { TopologyMonitor } from '../topology/monitor';
import { replyDocument } from '../wire/document';
import { ErrorCode } from '../wire/errors';
import { OpCode, type WireMessage } from '../wire/header';
import { parseOpMsg } from '../wire/opmsg';
import { readReply, type ReplyInfo } from '../wire/peek';
import type { UpstreamConnection } from '../upstream/connection';
import { runCleanup } from './client-resources';
import type { ClientRoutes } from './client-routes';
import type { CursorRoutes } from './cursor-routes';
import { isLastErrorCommand } from './last-error-pin';
import type { Route, RoutedRequest } from './router';

/** "Not primary" class codes: the member's state probably changed. */
const STATE_CHANGE_CODES: ReadonlySet<number> = new Set([10107, 13435, 13436, 11600, 11602, 189, 91]);

/** A forwarded OP_MSG reply, as read by the observer. */
export interface ObservedReply {
  readonly body: Buffer;
  readonly info: ReplyInfo;
}

/**
 * Learns from every forwarded reply what routing needs next: cursors opened and closed (cursor
 * routes, a load-balanced client's open cursors and transactions), the answer to a getLastError
 * (kept for a repeated one), and a member's state change after a "not primary" error (re-checked
 * before the client sees the error, so its retry meets the new state).
 */
export class ReplyObserver {
  constructor(private readonly cursors: CursorRoutes, private readonly monitor: TopologyMonitor | undefined, private readonly log: Logger) {}

  /** Returns the reply's body and facts when it is a readable OP_MSG (for the presentation to rewrite). */
  observe(req: RoutedRequest, reply: WireMessage, route: Route, conn: UpstreamConnection, client: ClientRoutes): ObservedReply | Promise<ObservedReply> | undefined {
    if (isLastErrorCommand(req.name)) {
      client.lastError.lastAnswer = replyDocument(reply);
      return undefined;
    }
    const cmd = req.cmd;
    if (!cmd || reply.header.opCode !== OpCode.MSG) return undefined;
    const lname = cmd.name.toLowerCase();
    if (lname === 'killcursors') {
      for (const id of cmd.killCursorIds ?? []) this.cursorGone(id, cmd.cursorNs, client);
      return undefined;
    }
    const lb = client.loadBalanced;
    if (lb && cmd.lsid) {
      if (cmd.startTransaction && cmd.lsidDocument && cmd.txnNumber !== undefined) {
        lb.transactionStarted(cmd.lsid, cmd.lsidDocument, cmd.txnNumber, route.pool.address);
      } else if (lname === 'committransaction' || lname === 'aborttransaction') lb.transactionEnded(cmd.lsid);
    }
    let observed: ObservedReply;
    try {
      const body = parseOpMsg(reply).body;
      observed = { body, info: readReply(body) };
    } catch {
      return undefined; // the client receives the server's bytes as they are; routing learns nothing
    }
    const { info } = observed;
    if (lname === 'getmore') {
      if (cmd.cursorId !== undefined && (info.cursor?.id === 0n || info.code === ErrorCode.CursorNotFound.code)) {
        this.cursorGone(cmd.cursorId, cmd.cursorNs, client);
      }
    } else if (info.cursor && info.cursor.id !== 0n) {
      const ns = info.cursor.ns ?? `${cmd.db}.${cmd.collection}`;
      this.cursors.remember(info.cursor.id, ns, route.pool.address, conn, client.user);
      lb?.cursorOpened(info.cursor.id, ns, route.pool.address);
    }
    if (!info.ok && info.code !== undefined && this.monitor && STATE_CHANGE_CODES.has(info.code)) {
      // Refresh before the client sees the error: its retry (or its driver's immediate
      // re-check) must meet the new state, not the one from the last heartbeat. Only then is
      // there anything to wait for: every other reply is observed synchronously.
      return this.monitor.recheck(route.pool.address).then(() => observed);
    }
    return observed;
  }

  /**
   * The proxy gave up on a request: it never reached the server (no connection in time), or
   * its reply did not come in time (the connection was discarded). A getMore failed that way
   * leaves a cursor the client now treats as dead: kill it upstream rather than leave it holding
   * server resources until its timeout (FerretDB even holds a SQLite connection per open cursor).
   */
  abandoned(req: RoutedRequest, route: Route, client: ClientRoutes): void {
    const cmd = req.cmd;
    if (route.reason !== 'cursor' || cmd?.cursorId === undefined) return;
    this.cursorGone(cmd.cursorId, cmd.cursorNs, client);
    void runCleanup(route.pool, cmd.db ?? 'admin', { killCursors: cmd.cursorCollection, cursors: [Long.fromBigInt(cmd.cursorId)] }, 'abandonedCursor', this.log);
  }

  /** A cursor is exhausted, killed or unknown to its server: no route, nothing to clean up. */
  private cursorGone(id: bigint, ns: string | undefined, client: ClientRoutes): void {
    if (ns === undefined) return; // no collection named: no route was ever keyed by it
    this.cursors.forget(id, ns);
    client.loadBalanced?.cursorClosed(id, ns);
  }
}
