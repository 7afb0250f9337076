import { ObjectId, type Document } from 'bson';
import type { Config } from '../config';
import { clientCausedLogs, type Logger } from '../log';
import type { ClientRoutes } from '../routing/client-routes';
import type { ReplyObserver } from '../routing/reply-observer';
import type { Route, RoutedRequest, Router } from '../routing/router';
import { Metrics } from '../telemetry/metrics';
import { isHelloCommand } from '../topology/hello-reply';
import { mayRefuse, type Presentation } from '../topology/presentation';
import { compressMessage, decompressMessage, isCompressible, negotiateCompressor, type CompressorName } from '../wire/compression';
import { deserializeCommand } from '../wire/document';
import { ErrorCode, ProtocolError, type KnownError } from '../wire/errors';
import { expectsReply, LEGACY_OPCODES, OpCode, opcodeName, type WireMessage } from '../wire/header';
import { parseOpQuery, validateLegacyMessage } from '../wire/legacy';
import { clearOpMsgFlags, encodeOpMsg, MsgFlag, parseOpMsg } from '../wire/opmsg';
import { readCommand, type CommandInfo } from '../wire/peek';
import { connectionScopedHandling, type ConnectionScoped } from './connection-scoped';
import { encodeReply, errorDocument } from './error-reply';
import { Forwarder } from './forwarder';
import { collectionOf, writesThroughPipeline, type ForwardedCommand, type TrafficTap } from '../traffic/taps';
import type { ClientInfo } from './client-info';
import type { PauseGate } from './pause-gate';
import { SHUTDOWN_MESSAGE, type ShutdownNotice } from './shutdown-notice';
import { AUTH_COMMANDS, ClientAuth } from '../auth/client-auth';
import type { UserSource } from '../auth/users';
import type { UserPools } from '../auth/user-pools';

export interface HandlerDeps {
  readonly config: Config;
  readonly router: Router;
  readonly observer: ReplyObserver;
  /** What this client's listener tells clients about the deployment. */
  readonly presentation: Presentation;
  /** Watchers of forwarded commands (capture, mirror, statistics, access log); each says whether it is on. */
  readonly taps: readonly TrafficTap[];
  /** PAUSE: commands wait here before they are routed. */
  readonly gate: PauseGate;
  /** Draining: drivers are asked to leave through their next heartbeat. */
  readonly shutdown: ShutdownNotice;
  /** auth.mode proxy and passthrough: the users clients log in as; undefined: clients do not log in. */
  readonly users: UserSource | undefined;
  /** auth.mode passthrough: each user's own upstream pools. */
  readonly userPools: UserPools | undefined;
}

/** Reads a driver retries after a ShutdownInProgress error (the retryable-reads specification's list). */
const RETRYABLE_READS = new Set(['find', 'aggregate', 'distinct', 'count', 'listdatabases', 'listcollections', 'listindexes']);

/** How one request reached the client-facing wire, so its reply can mirror it. */
interface Inbound {
  /** The request after OP_COMPRESSED was unwrapped. */
  readonly message: WireMessage;
  /** The client's compressor when the request came compressed. */
  readonly compressor: CompressorName | 'noop' | undefined;
}

/**
 * auth.mode passthrough: commands about the connection's identity that go to the server, which
 * sees the client's own user there (on a shared identity the proxy answers or refuses them).
 */
const ASKED_AS_THE_USER: ReadonlySet<string> = new Set(['connectionstatus', 'killallsessions', 'killallsessionsbypattern']);

/** The serviceId load-balanced clients see: one per proxy process. */
const SERVICE_ID = new ObjectId();

/**
 * Decides, for each message of one client, whether the proxy answers it itself (the
 * handshake, connection-scoped commands), refuses it (malformed, unsupported), or forwards it
 * along the route the router picks; and produces the bytes the client gets back.
 */
export class CommandHandler {
  private compression: CompressorName[] = [];
  private readonly forwarder: Forwarder;
  /** This connection's login at the proxy (auth.mode proxy and passthrough). */
  private readonly auth: ClientAuth | undefined;
  /** The login routing last heard of (each login is a new object). */
  private routedLogin: ClientAuth['user'];
  /** The connection's handshake hello was answered: later hellos are a monitor's heartbeats. */
  private handshaken = false;
  /** This connection was told the proxy is shutting down. */
  private toldToLeave = false;
  /** The last reply told a monitor the proxy is shutting down: the connection closes after it. */
  leaving = false;

  constructor(
    private readonly deps: HandlerDeps,
    private readonly client: ClientRoutes,
    private readonly connection: ClientInfo,
    private readonly log: Logger,
  ) {
    this.forwarder = new Forwarder(connection.id, deps.config.upstream, log);
    this.auth = deps.users && new ClientAuth(deps.users, log, deps.userPools !== undefined);
  }

  /** Handles one client message; resolves with the bytes to send back, or undefined when no reply is due. */
  async handle(raw: WireMessage): Promise<Buffer | undefined> {
    try {
      return await this.handleMessage(raw);
    } finally {
      this.connection.finished();
    }
  }

  private async handleMessage(raw: WireMessage): Promise<Buffer | undefined> {
    let inbound: Inbound = { message: raw, compressor: undefined };
    try {
      if (raw.header.opCode === OpCode.COMPRESSED) {
        const d = await decompressMessage(raw, this.deps.config.client.maxMessageSizeBytes, this.compression);
        inbound = { message: d.message, compressor: d.compressor };
        Metrics.clientCompressedMessages.add(1, { compressor: d.compressor });
      }
      const op = inbound.message.header.opCode;
      if (op === OpCode.MSG) return await this.handleOpMsg(inbound);
      if (op === OpCode.QUERY) return await this.handleOpQuery(inbound);
      if (LEGACY_OPCODES.has(op)) {
        // Only a legacy server understands these; OP_INSERT/UPDATE/DELETE/KILL_CURSORS expect no reply.
        if (!expectsReply(op)) {
          if (this.refuseUnanswerable(inbound.message)) return undefined;
        } else validateLegacyMessage(inbound.message);
        if (this.deps.router.legacyOpcodesRemoved(this.client)) {
          // A 5.1+ server has no such opcode: answer as one, rather than cost a pooled connection.
          if (!expectsReply(op)) {
            Metrics.commands.add(1, { handling: 'refused', command: opcodeName(op) });
            return undefined;
          }
          return this.refuse(inbound, opcodeName(op), ErrorCode.CommandNotSupported, `mongoplex: ${opcodeName(op)} is not supported by the upstream server (MongoDB 5.1 removed it); use OP_MSG`);
        }
        return await this.forward(inbound, { opCode: op, name: opcodeName(op), cmd: undefined, moreToCome: !expectsReply(op) }, inbound.message.bytes);
      }
      throw new ProtocolError(`mongoplex does not accept ${opcodeName(op)} from clients`, ErrorCode.ProtocolError.code, ErrorCode.ProtocolError.codeName);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      Metrics.clientProtocolErrors.add(1, { reason: err.codeName });
      if (clientCausedLogs.allow(this.log, err.codeName)) this.log.info({ err: err.message, opCode: raw.header.opCode }, 'refused malformed client message');
      return this.reply(inbound, { ok: 0, errmsg: `mongoplex: ${err.message}`, code: err.code, codeName: err.codeName }, true);
    }
  }

  private async handleOpMsg(inbound: Inbound): Promise<Buffer | undefined> {
    const msg = parseOpMsg(inbound.message);
    const cmd = readCommand(msg.body);
    if (isHelloCommand(cmd.name)) return this.answerHello(inbound, deserializeCommand(msg.body));
    const answered = this.answerHere(inbound, cmd.name, msg.body, cmd.db ?? 'admin');
    if (answered) return answered;
    // Exhaust replies would hold a pooled connection for a whole stream: clearing
    // exhaustAllowed makes the client fall back to ordinary getMore round trips.
    const bytes = clearOpMsgFlags(inbound.message, MsgFlag.exhaustAllowed);
    const moreToCome = (msg.flagBits & MsgFlag.moreToCome) !== 0;
    return this.forward(inbound, { opCode: OpCode.MSG, name: cmd.name, cmd, moreToCome }, bytes);
  }

  private async handleOpQuery(inbound: Inbound): Promise<Buffer | undefined> {
    const q = parseOpQuery(inbound.message);
    let name = opcodeName(OpCode.QUERY);
    if (q.fullCollectionName.endsWith('.$cmd')) {
      const doc = deserializeCommand(q.query);
      const command = doc.$query && typeof doc.$query === 'object' ? (doc.$query as Document) : doc;
      name = Object.keys(command)[0] ?? name;
      if (isHelloCommand(name)) return this.answerHello(inbound, command);
      const answered = this.answerHere(inbound, name, command, q.fullCollectionName.slice(0, -'.$cmd'.length));
      if (answered) return answered;
    }
    validateLegacyMessage(inbound.message);
    return this.forward(inbound, { opCode: OpCode.QUERY, name, cmd: undefined, moreToCome: false }, inbound.message.bytes);
  }

  private async answerHello(inbound: Inbound, request: Document): Promise<Buffer> {
    if (this.handshaken && this.deps.shutdown.given) {
      // A monitor's heartbeat: its driver drops this connection, so it is closed after the reply.
      this.leaving = true;
      return this.askToLeave(inbound, 'hello', []);
    }
    Metrics.commands.add(1, { handling: 'answered', command: 'hello' });
    if (request.loadBalanced === true) {
      if (this.client.member) {
        return this.refuse(inbound, 'hello', ErrorCode.BadValue, 'mongoplex: loadBalanced clients need topology.mode single or mongos (this is a replica-set member address)');
      }
      this.client.becomeLoadBalanced();
    }
    if (Array.isArray(request.compression)) {
      this.compression = negotiateCompressor(request.compression, this.deps.config.client.compressors);
    }
    let reply: Document;
    try {
      reply = await this.deps.presentation.hello(request, {
        connectionId: this.connection.id,
        compression: this.compression,
        maxMessageSizeBytes: this.deps.config.client.maxMessageSizeBytes,
      }, this.client.member);
    } catch (err) {
      return this.refuse(inbound, 'hello', ErrorCode.HostUnreachable, `mongoplex cannot reach its upstream server: ${(err as Error).message}`);
    }
    if (this.auth) {
      Object.assign(reply, await this.auth.helloFields(request));
      this.loggedInAs();
    }
    this.connection.handshake(request.client);
    this.handshaken = true;
    if (this.client.loadBalanced) reply.serviceId = SERVICE_ID;
    return this.reply(inbound, reply, false);
  }

  /**
   * The proxy's own answer to a login command or a connection-scoped one (`body`: the command,
   * or its BSON, read only when needed); undefined: the command goes on to routing.
   */
  private answerHere(inbound: Inbound, name: string, body: Buffer | Document, db: string): Promise<Buffer> | undefined {
    if (this.askedAsTheUser(name)) return undefined;
    if (this.auth && AUTH_COMMANDS.has(name.toLowerCase())) return this.answerAuth(inbound, name, Buffer.isBuffer(body) ? deserializeCommand(body) : body, db);
    const scoped = connectionScopedHandling(name);
    return scoped && this.handleConnectionScoped(inbound, name, scoped);
  }

  /** Whether a passthrough user's connection sends this command to the server, where it runs as that user. */
  private askedAsTheUser(command: string): boolean {
    return this.auth?.user?.passthrough !== undefined && ASKED_AS_THE_USER.has(command.toLowerCase());
  }

  /**
   * Routing keeps cursors to the user who opened them, and in passthrough mode sends the
   * user's requests to its own pools: tell it who this client is now.
   */
  private loggedInAs(): void {
    const login = this.auth?.user;
    if (login === this.routedLogin) return;
    this.routedLogin = login;
    const lease = login?.passthrough && this.deps.userPools?.lease(login.passthrough);
    this.client.logIn(login && `${login.db}.${login.user}`, lease);
  }

  private async answerAuth(inbound: Inbound, name: string, body: Document, db: string): Promise<Buffer> {
    const reply = await this.auth!.command(name.toLowerCase(), body, db);
    this.loggedInAs();
    if (reply.ok !== 1) return this.refused(inbound, name, reply);
    Metrics.commands.add(1, { handling: 'answered', command: name });
    return this.reply(inbound, reply, false);
  }

  /** ShutdownInProgress, as a mongod shutting down answers (see ShutdownNotice). */
  private askToLeave(inbound: Inbound, command: string, errorLabels: string[]): Promise<Buffer> {
    this.toldToLeave = true;
    return this.refused(inbound, command, errorDocument(ErrorCode.ShutdownInProgress, SHUTDOWN_MESSAGE, errorLabels));
  }

  /**
   * A load-balanced client has no monitor to hear the shutdown notice: the first command on
   * this connection its driver retries (a retryable write, or a read that starts a cursor) is
   * answered with it instead, once. The connection stays open: the driver may retry on it (a
   * cursor-creating read keeps its pinned connection) and closes it itself once the request is
   * done, as its pool was cleared.
   */
  private retriedElsewhere(req: RoutedRequest, bytes: Buffer): string[] | undefined {
    const cmd = req.cmd;
    if (!this.deps.shutdown.given || this.toldToLeave || !this.client.loadBalanced || !cmd || cmd.inTransaction) return undefined;
    if (cmd.hasTxnNumber) return ['RetryableWriteError'];
    const name = cmd.name.toLowerCase();
    if (RETRYABLE_READS.has(name) && !(name === 'aggregate' && writesThroughPipeline(bytes))) return [];
    return undefined;
  }

  private handleConnectionScoped(inbound: Inbound, name: string, h: ConnectionScoped): Promise<Buffer> {
    if (h.kind === 'refuse') return this.refuse(inbound, name, h.error, h.message);
    Metrics.commands.add(1, { handling: 'answered', command: name });
    return this.reply(inbound, h.reply({ remote: this.connection.remote }), true);
  }

  /** Routes the request, forwards it, and lets routing learn from the reply. */
  private async forward(inbound: Inbound, req: RoutedRequest, bytes: Buffer): Promise<Buffer | undefined> {
    if (this.auth && !this.auth.allows(req.name)) {
      return this.refuse(inbound, req.name, ErrorCode.Unauthorized, `command ${req.name} requires authentication`);
    }
    const refusal = req.cmd && mayRefuse(req.cmd) ? this.deps.presentation.refusal(req.cmd) : undefined;
    if (refusal) return this.refused(inbound, req.name, refusal);
    const paused = this.deps.gate.pass();
    if (paused) await paused;
    const leaveLabels = this.retriedElsewhere(req, bytes);
    if (leaveLabels) return this.askToLeave(inbound, req.name, leaveLabels);
    const decision = this.deps.router.route(req, this.client);
    if (decision.kind === 'answer') {
      Metrics.commands.add(1, { handling: 'answered', command: req.name });
      return this.reply(inbound, await decision.reply, isCompressible(req.name));
    }
    const { route } = decision;
    this.connection.started(req.name, req.cmd?.db, req.cmd && collectionOf(req.cmd));
    const startedAt = performance.now();
    const outcome = await this.forwarder.forward({ req, route, bytes });
    // Nothing is built for the taps unless one is on (the common case costs one check).
    const tapped = this.tapsOn(req);
    if (outcome.kind === 'no_reply') {
      if (tapped) this.tap(inbound, req, bytes, route, startedAt, 0, undefined, undefined, undefined);
      return undefined;
    }
    if (outcome.kind === 'failed') {
      if (outcome.abandoned) this.deps.observer.abandoned(req, route, this.client);
      if (tapped) this.tap(inbound, req, bytes, route, startedAt, 0, undefined, undefined, outcome.error);
      return this.refused(inbound, req.name, outcome.error);
    }
    const { reply, conn } = outcome;
    const seen = this.deps.observer.observe(req, reply, route, conn, this.client);
    const observed = seen instanceof Promise ? await seen : seen;
    if (tapped) this.tap(inbound, req, bytes, route, startedAt, reply.bytes.length, observed?.body, observed?.info, undefined);
    const rewritten = observed?.info.ok ? this.deps.presentation.rewriteReply(req.name, observed.body) : undefined;
    const out = rewritten ? encodeOpMsg(reply.header.requestId, reply.header.responseTo, rewritten) : reply.bytes;
    return this.compress(out, isCompressible(req.name) ? inbound.compressor : undefined);
  }

  /** Whether a traffic tap (capture, mirror) is on and this request is one they watch (an OP_MSG command). */
  private tapsOn(req: RoutedRequest): req is RoutedRequest & { cmd: CommandInfo } {
    if (req.cmd === undefined || req.opCode !== OpCode.MSG) return false;
    for (const t of this.deps.taps) if (t.active) return true;
    return false;
  }

  /** Shows a forwarded OP_MSG command and its outcome to the traffic taps that are on (one object: the event). */
  private tap(
    inbound: Inbound, req: RoutedRequest, forwarded: Buffer, route: Route, startedAt: number,
    replyBytes: number, replyBody: Buffer | undefined, replyInfo: ForwardedCommand['replyInfo'], error: Document | undefined,
  ): void {
    const event: ForwardedCommand = {
      client: this.connection, startedAt, request: inbound.message, forwarded, cmd: req.cmd!,
      server: route.pool.address.toString(), replyBytes, replyBody, replyInfo, error,
      durationMs: performance.now() - startedAt,
      failed: error !== undefined || (replyInfo !== undefined && !replyInfo.ok),
      errorCode: replyInfo ? (replyInfo.ok ? undefined : replyInfo.code) : (error?.code as number | undefined),
    };
    for (const t of this.deps.taps) if (t.active) t.forwarded(event);
  }

  private refuse(inbound: Inbound, command: string, kind: KnownError, message: string): Promise<Buffer> {
    return this.refused(inbound, command, errorDocument(kind, message));
  }

  private refused(inbound: Inbound, command: string, error: Document): Promise<Buffer> {
    Metrics.commandErrors.add(1, { code: String(error.codeName) });
    Metrics.commands.add(1, { handling: 'refused', command });
    return this.reply(inbound, error, isCompressible(command));
  }

  /**
   * A malformed fire-and-forget legacy message (OP_INSERT, OP_UPDATE, OP_DELETE, OP_KILL_CURSORS)
   * cannot be answered: it is not forwarded (a server would drop the pooled connection), and the
   * error becomes what the client's next getLastError reports, as a server would record it.
   */
  private refuseUnanswerable(message: WireMessage): boolean {
    try {
      validateLegacyMessage(message);
      return false;
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      Metrics.clientProtocolErrors.add(1, { reason: err.codeName });
      if (clientCausedLogs.allow(this.log, err.codeName)) this.log.info({ err: err.message, opCode: message.header.opCode }, 'refused malformed client message (no reply possible; its getLastError reports it)');
      this.client.lastError.release();
      this.client.lastError.lastAnswer = { ok: 1, err: `mongoplex: ${err.message}`, code: err.code, codeName: err.codeName, n: 0 };
      return true;
    }
  }

  /** A document the proxy produced itself, in the request's wire form. */
  private async reply(inbound: Inbound, doc: Document, compressible: boolean): Promise<Buffer> {
    return this.compress(encodeReply(inbound.message, doc), compressible ? inbound.compressor : undefined);
  }

  /** Replies travel the way their request came: compressed with the client's compressor, or not (then at once). */
  private compress(bytes: Buffer, compressor: CompressorName | 'noop' | undefined): Buffer | Promise<Buffer> {
    return compressor ? compressMessage(bytes, compressor) : bytes;
  }
}
