import { BSON, Long, ObjectId, type Document } from 'bson';
import type { Logger } from '../log';
import type { Config } from '../config';
import { Metrics } from '../telemetry/metrics';
import { endSpanWithError, startCommandSpan } from '../telemetry/tracing';
import { FramingError, MessageFramer } from '../wire/framer';
import { LEGACY_OPCODES, newRequestId, OpCode, opcodeName, type WireMessage } from '../wire/header';
import { clearOpMsgFlags, encodeOpMsg, MsgFlag, parseOpMsg } from '../wire/opmsg';
import { parseOpQuery, parseOpReply } from '../wire/legacy';
import { readCommand, readReply, type CommandInfo } from '../wire/peek';
import { compressMessage, decompressMessage, negotiateCompressor, UNCOMPRESSIBLE_COMMANDS, type CompressorName } from '../wire/compression';
import { ErrorCode, ProtocolError, type KnownError } from '../wire/errors';
import type { Router, Route } from '../routing/router';
import type { CursorRoutes } from '../routing/cursor-routes';
import type { ServerSet } from '../topology/server-set';
import { CheckoutError } from '../upstream/pool';
import type { UpstreamConnection } from '../upstream/connection';
import { deserializeCommand, isHelloCommand } from './hello';
import { isLastErrorCommand, isWriteCommand, LastErrorPin } from './last-error-pin';
import { connectionScopedHandling, type ConnectionScoped } from './connection-scoped';
import { ClientResources, runCleanup } from './client-resources';
import type { Presentation } from '../topology/presentation';
import type { ServerAddress } from '../upstream/address';
import { encodeReply, errorDocument, failureLabels } from './error-reply';
import type { ClientTransport } from './transport';

export interface SessionDeps {
  readonly config: Config;
  readonly router: Router;
  readonly cursors: CursorRoutes;
  readonly servers: ServerSet;
  readonly presentation: Presentation;
  readonly log: Logger;
}

/** What a forwarded request is, for getLastError pinning. */
type Purpose = 'command' | 'unacknowledged_write' | 'last_error';

/** How one request reached the client-facing wire, so its reply can mirror it. */
interface Inbound {
  /** The request after OP_COMPRESSED was unwrapped. */
  readonly message: WireMessage;
  /** The client's compressor when the request came compressed. */
  readonly compressor: CompressorName | 'noop' | undefined;
}

let nextSessionId = 1;

/** The serviceId load-balanced clients see: one per proxy process. */
const SERVICE_ID = new ObjectId();

/**
 * One client connection: reassembles its messages, answers the handshake itself, and sends
 * every other command through routing to a pooled upstream connection, one request at a time
 * (as mongod itself serves a connection). Bounded: at most `maxPendingRequests` queued and
 * `maxBufferedBytes` held before the client is paused.
 */
export class ClientSession {
  readonly id = nextSessionId++;
  private readonly framer: MessageFramer;
  private readonly queue: WireMessage[] = [];
  private queuedBytes = 0;
  private running = false;
  private paused = false;
  private closed = false;
  private inputEnded = false;
  private compression: CompressorName[] = [];
  private readonly log: Logger;
  private readonly lastError: LastErrorPin;
  /** Set by a hello with `loadBalanced: true`: the client expects its cursors and transactions to die with it. */
  private loadBalanced: ClientResources | undefined;
  lastActivityAt = Date.now();

  /**
   * `member`: in replset mode, the member whose proxy address this client connected to;
   * undefined when the proxy presents a single mongos.
   */
  constructor(private readonly transport: ClientTransport, private readonly deps: SessionDeps, readonly member?: ServerAddress) {
    this.framer = new MessageFramer(deps.config.client.maxMessageSizeBytes);
    this.log = deps.log.child({ session: this.id, remote: transport.remote, ...(member ? { member: member.toString() } : {}) });
    this.lastError = new LastErrorPin(deps.config.client.lastErrorPinMs);
  }

  get bufferedBytes(): number {
    return this.framer.bufferedBytes + this.queuedBytes;
  }

  /** Bytes from the client, in whatever chunks the transport delivers. */
  receive(chunk: Buffer): void {
    if (this.closed) return;
    this.lastActivityAt = Date.now();
    let messages: WireMessage[];
    try {
      messages = this.framer.push(chunk);
    } catch (err) {
      if (err instanceof FramingError) this.failFraming(err);
      else throw err;
      return;
    }
    for (const m of messages) {
      this.queue.push(m);
      this.queuedBytes += m.bytes.length;
    }
    const { maxBufferedBytes, maxMessageSizeBytes } = this.deps.config.client;
    if (this.bufferedBytes > maxBufferedBytes + maxMessageSizeBytes) {
      // Only a transport that cannot pause (Envoy ext_proc) gets here.
      Metrics.clientProtocolErrors.add(1, { reason: 'buffer_limit' });
      this.log.warn({ bufferedBytes: this.bufferedBytes }, 'closing client connection: it sends faster than it reads its replies');
      this.close('buffer_limit');
      return;
    }
    this.applyBackpressure();
    if (!this.running) void this.run();
  }

  /** The client sent its last byte (half-close): answer what is queued, then close. */
  endOfInput(): void {
    this.inputEnded = true;
    if (!this.running) this.close('client_end_of_input');
  }

  /** The transport is gone (client closed, reset, or the proxy closed it). */
  transportClosed(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.lastError.release();
    if (this.loadBalanced) void this.loadBalanced.release(this.deps.servers, this.log);
    this.queue.length = 0;
    this.queuedBytes = 0;
    Metrics.clientConnectionsClosed.add(1, { reason });
    this.log.debug({ reason }, 'client connection closed');
  }

  /** Closes the client connection from the proxy's side. */
  close(reason: string): void {
    if (this.closed) return;
    this.transport.close(reason);
    this.transportClosed(reason);
  }

  private applyBackpressure(): void {
    const { maxBufferedBytes, maxPendingRequests } = this.deps.config.client;
    const over = this.queue.length > 0 && (this.bufferedBytes > maxBufferedBytes || this.queue.length >= maxPendingRequests);
    if (over && !this.paused) {
      this.paused = true;
      this.transport.pause();
    } else if (!over && this.paused) {
      this.paused = false;
      this.transport.resume();
    }
  }

  private failFraming(err: FramingError): void {
    Metrics.clientProtocolErrors.add(1, { reason: err.reason });
    this.log.warn({ err: err.message }, 'closing client connection: unframeable input');
    if (err.requestId !== undefined) {
      const kind = err.reason === 'too_large' ? ErrorCode.BSONObjectTooLarge : ErrorCode.ProtocolError;
      this.transport.write(encodeOpMsg(newRequestId(), err.requestId, BSON.serialize(errorDocument(kind, `mongoplex: ${err.message}; closing connection`))));
    }
    this.close(`protocol_error_${err.reason}`);
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (!this.closed && this.queue.length > 0) {
        const m = this.queue.shift()!;
        this.queuedBytes -= m.bytes.length;
        await this.handle(m);
        this.applyBackpressure();
      }
    } catch (err) {
      this.log.error({ err }, 'unexpected error handling a client message');
      this.close('internal_error');
    } finally {
      this.running = false;
    }
    if (this.inputEnded && this.queue.length === 0) this.close('client_end_of_input');
  }

  private async handle(raw: WireMessage): Promise<void> {
    let inbound: Inbound = { message: raw, compressor: undefined };
    try {
      if (raw.header.opCode === OpCode.COMPRESSED) {
        const d = await decompressMessage(raw, this.deps.config.client.maxMessageSizeBytes);
        inbound = { message: d.message, compressor: d.compressor };
        Metrics.clientCompressedMessages.add(1, { compressor: d.compressor });
      }
      const op = inbound.message.header.opCode;
      if (op === OpCode.MSG) await this.handleOpMsg(inbound);
      else if (op === OpCode.QUERY) await this.handleOpQuery(inbound);
      else if (LEGACY_OPCODES.has(op)) {
        // OP_INSERT/UPDATE/DELETE/KILL_CURSORS expect no reply; the writes may be followed by getLastError.
        const noReply = op !== OpCode.GET_MORE;
        await this.forward(inbound, undefined, inbound.message.bytes, noReply, noReply && op !== OpCode.KILL_CURSORS ? 'unacknowledged_write' : 'command');
      }
      else throw new ProtocolError(`mongoplex does not accept ${opcodeName(op)} from clients`, ErrorCode.ProtocolError.code, ErrorCode.ProtocolError.codeName);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      Metrics.clientProtocolErrors.add(1, { reason: err.codeName });
      this.log.info({ err: err.message, opCode: raw.header.opCode }, 'refused malformed client message');
      await this.reply(inbound, { ok: 0, errmsg: `mongoplex: ${err.message}`, code: err.code, codeName: err.codeName }, 'refused');
    }
  }

  private async handleOpMsg(inbound: Inbound): Promise<void> {
    const msg = parseOpMsg(inbound.message);
    const cmd = readCommand(msg.body);
    const moreToCome = (msg.flagBits & MsgFlag.moreToCome) !== 0;
    if (isHelloCommand(cmd.name)) return this.answerHello(inbound, deserializeCommand(msg.body));
    const scoped = connectionScopedHandling(cmd.name);
    if (scoped) return this.handleConnectionScoped(inbound, cmd, scoped);
    // Exhaust replies would hold a pooled connection for a whole stream: clearing
    // exhaustAllowed makes the client fall back to ordinary getMore round trips.
    const bytes = clearOpMsgFlags(inbound.message, MsgFlag.exhaustAllowed);
    if (isLastErrorCommand(cmd.name)) return this.forwardLastError(inbound, cmd, bytes);
    // Only a fire-and-forget write leaves an outcome a getLastError could ask about.
    await this.forward(inbound, cmd, bytes, moreToCome, moreToCome && isWriteCommand(cmd.name) ? 'unacknowledged_write' : 'command');
  }

  private async handleOpQuery(inbound: Inbound): Promise<void> {
    const q = parseOpQuery(inbound.message);
    if (q.fullCollectionName.endsWith('.$cmd')) {
      const doc = deserializeCommand(q.query);
      const command = doc.$query && typeof doc.$query === 'object' ? (doc.$query as Document) : doc;
      const name = Object.keys(command)[0] ?? '';
      if (isHelloCommand(name)) return this.answerHello(inbound, command);
      if (isLastErrorCommand(name)) return this.forwardLastError(inbound, undefined, inbound.message.bytes);
      const scoped = connectionScopedHandling(name);
      if (scoped) return this.handleConnectionScoped(inbound, undefined, scoped);
    }
    // Anything else on OP_QUERY is the server's business: a modern server refuses it itself,
    // a legacy one answers it.
    await this.forward(inbound, undefined, inbound.message.bytes, false, 'command');
  }

  private async answerHello(inbound: Inbound, request: Document): Promise<void> {
    Metrics.commands.add(1, { handling: 'answered', command: 'hello' });
    if (request.loadBalanced === true) {
      if (this.member) {
        return this.refuse(inbound, undefined, ErrorCode.BadValue, 'mongoplex: loadBalanced clients need topology.mode single or mongos (this is a replica-set member address)');
      }
      this.loadBalanced ??= new ClientResources();
    }
    if (Array.isArray(request.compression)) {
      this.compression = negotiateCompressor(request.compression, this.deps.config.client.compressors);
    }
    let reply: Document;
    try {
      reply = await this.deps.presentation.hello(request, {
        connectionId: this.id,
        compression: this.compression,
        maxMessageSizeBytes: this.deps.config.client.maxMessageSizeBytes,
      }, this.member);
    } catch (err) {
      return this.refuse(inbound, undefined, ErrorCode.HostUnreachable, `mongoplex cannot reach its upstream server: ${(err as Error).message}`);
    }
    if (this.loadBalanced) reply.serviceId = SERVICE_ID;
    await this.reply(inbound, reply, 'hello');
  }

  private async handleConnectionScoped(inbound: Inbound, cmd: CommandInfo | undefined, h: ConnectionScoped): Promise<void> {
    if (h.kind === 'refuse') return this.refuse(inbound, cmd, h.error, h.message);
    Metrics.commands.add(1, { handling: 'answered', command: cmd?.name ?? 'legacy' });
    await this.reply(inbound, h.reply({ remote: this.transport.remote }), 'answered');
  }

  private async refuse(inbound: Inbound, cmd: CommandInfo | undefined, kind: KnownError, message: string, labels: readonly string[] = []): Promise<void> {
    Metrics.commandErrors.add(1, { code: kind.codeName });
    Metrics.commands.add(1, { handling: 'refused', command: cmd?.name ?? 'legacy' });
    await this.reply(inbound, errorDocument(kind, message, labels), 'refused');
  }

  /** Sends a document the proxy produced itself, in the request's wire form. */
  private async reply(inbound: Inbound, doc: Document, command: string): Promise<void> {
    const bytes = encodeReply(inbound.message, doc);
    const compressible = command !== 'hello';
    await this.write(bytes, compressible ? inbound.compressor : undefined);
  }

  private async write(bytes: Buffer, compressor: CompressorName | 'noop' | undefined): Promise<void> {
    if (this.closed) return;
    const out = compressor ? await compressMessage(bytes, compressor) : bytes;
    if (this.closed) return;
    if (!this.transport.write(out)) await this.transport.waitForDrain();
  }

  /**
   * getLastError: on the connection pinned by the last unacknowledged write; without one (or
   * repeated), the last answer, or "no error" — never another client's connection state.
   */
  private async forwardLastError(inbound: Inbound, cmd: CommandInfo | undefined, bytes: Buffer): Promise<void> {
    if (this.lastError.hasPin()) return this.forward(inbound, cmd, bytes, false, 'last_error');
    Metrics.commands.add(1, { handling: 'answered', command: 'getLastError' });
    await this.reply(inbound, this.lastError.lastAnswer ?? { ok: 1, err: null, n: 0 }, 'getLastError');
  }

  /** Sends a request to the routed server over a pooled connection and relays the reply. */
  private async forward(inbound: Inbound, cmd: CommandInfo | undefined, bytes: Buffer, moreToCome: boolean, purpose: Purpose): Promise<void> {
    const started = performance.now();
    const pinned = this.lastError.take();
    if (purpose !== 'last_error') this.lastError.lastAnswer = undefined;
    const usePin = pinned && purpose !== 'command';
    if (pinned && !usePin) pinned.pool.checkIn(pinned.conn);
    const route: Route = usePin
      ? { pool: pinned.pool, reason: 'pinned' }
      : cmd
        ? this.deps.router.route(cmd, this.member)
        : { pool: (this.member && this.deps.servers.pool(this.member)) || this.deps.servers.writable(), reason: this.member ? 'member' : 'primary' };
    const name = cmd?.name ?? opcodeName(inbound.message.header.opCode);
    const span = startCommandSpan({
      command: name,
      db: cmd?.db,
      collection: cmd?.collection ?? cmd?.cursorCollection,
      server: route.pool.address,
      route: route.reason,
      sessionId: this.id,
    });
    const compressible = !UNCOMPRESSIBLE_COMMANDS.has(name.toLowerCase());
    let conn: UpstreamConnection;
    try {
      conn = usePin ? pinned.conn : await route.pool.checkOut();
    } catch (err) {
      const e = err as CheckoutError;
      const kind = e.reason === 'timeout' ? ErrorCode.NetworkInterfaceExceededTimeLimit
        : e.reason === 'queue_full' ? ErrorCode.IngressRequestRateLimitExceeded
          : ErrorCode.HostUnreachable;
      const labels = e.reason === 'queue_full' ? ['SystemOverloadedError', 'RetryableError'] : failureLabels(cmd);
      endSpanWithError(span, kind.code, e.message);
      if (route.reason === 'cursor' && cmd?.cursorId !== undefined) this.abandonCursor(route, cmd);
      if (moreToCome) return this.dropUnanswerable(name, e.message);
      return this.refuse(inbound, cmd, kind, `mongoplex: ${e.message}`, labels);
    }
    let reply: WireMessage | undefined;
    try {
      reply = await conn.request(bytes, { compressible, moreToCome });
    } catch (err) {
      route.pool.checkIn(conn);
      const message = (err as Error).message;
      endSpanWithError(span, ErrorCode.HostUnreachable.code, message);
      if (moreToCome) return this.dropUnanswerable(name, message);
      return this.refuse(inbound, cmd, ErrorCode.HostUnreachable, `mongoplex: ${message}`, failureLabels(cmd));
    }
    // An unacknowledged write keeps its connection for the getLastError that may follow.
    if (purpose === 'unacknowledged_write' && !this.closed) this.lastError.hold(route.pool, conn);
    else route.pool.checkIn(conn);
    Metrics.commands.add(1, { handling: 'forwarded', route: route.reason });
    Metrics.commandDuration.record(performance.now() - started, { command: name });
    if (!reply) {
      span.end();
      return;
    }
    if (purpose === 'last_error') this.lastError.lastAnswer = decodeReplyDocument(reply);
    const out = cmd && reply.header.opCode === OpCode.MSG ? await this.observeReply(cmd, reply, route, conn) : reply.bytes;
    span.end();
    // A client that left mid-request: the reply is dropped, the pooled connection stays healthy.
    await this.write(out, compressible ? inbound.compressor : undefined);
  }

  /**
   * The proxy failed a getMore itself (no pooled connection in time): the client will treat the
   * cursor as dead, so kill it upstream rather than leave it holding server resources until
   * its timeout (FerretDB even holds a SQLite connection per open cursor).
   */
  private abandonCursor(route: Route, cmd: CommandInfo): void {
    this.cursorGone(cmd.cursorId!, cmd.cursorNs);
    void runCleanup(route.pool, cmd.db ?? 'admin', { killCursors: cmd.cursorCollection, cursors: [Long.fromBigInt(cmd.cursorId!)] }, 'abandonedCursor', this.log);
  }

  /** A cursor is exhausted, killed or unknown to its server: no route, nothing to clean up. */
  private cursorGone(id: bigint, ns: string | undefined): void {
    if (ns === undefined) return; // no collection named: no route was ever keyed by it
    this.deps.cursors.forget(id, ns);
    this.loadBalanced?.cursorClosed(id, ns);
  }

  private dropUnanswerable(command: string, message: string): void {
    Metrics.commandErrors.add(1, { code: 'unacknowledged_dropped' });
    this.log.warn({ command, err: message }, 'fire-and-forget (moreToCome) request could not be delivered');
  }

  /**
   * Learns from a reply what routing needs (cursors opened and closed, a member's state
   * change) and returns the bytes for the client: the server's own, unless the topology
   * presentation must rewrite member addresses in them.
   */
  private async observeReply(cmd: CommandInfo, reply: WireMessage, route: Route, conn: UpstreamConnection): Promise<Buffer> {
    const lname = cmd.name.toLowerCase();
    if (lname === 'killcursors') {
      for (const id of cmd.killCursorIds ?? []) this.cursorGone(id, cmd.cursorNs);
      return reply.bytes;
    }
    if (this.loadBalanced && cmd.lsid) {
      if (cmd.startTransaction && cmd.lsidDocument && cmd.txnNumber !== undefined) {
        this.loadBalanced.transactionStarted(cmd.lsid, cmd.lsidDocument, cmd.txnNumber, route.pool.address);
      } else if (lname === 'committransaction' || lname === 'aborttransaction') this.loadBalanced.transactionEnded(cmd.lsid);
    }
    let body: Buffer;
    let info;
    try {
      body = parseOpMsg(reply).body;
      info = readReply(body);
    } catch {
      return reply.bytes; // the client receives the server's bytes as they are; routing learns nothing
    }
    if (lname === 'getmore') {
      if (cmd.cursorId !== undefined && (info.cursor?.id === 0n || info.code === ErrorCode.CursorNotFound.code)) {
        this.cursorGone(cmd.cursorId, cmd.cursorNs);
      }
    } else if (info.cursor && info.cursor.id !== 0n) {
      const ns = info.cursor.ns ?? `${cmd.db}.${cmd.collection}`;
      this.deps.cursors.remember(info.cursor.id, ns, route.pool.address, conn);
      this.loadBalanced?.cursorOpened(info.cursor.id, ns, route.pool.address);
    }
    if (!info.ok && info.code !== undefined) await this.deps.presentation.replyError(info.code, route.pool.address);
    const rewritten = info.ok ? this.deps.presentation.rewriteReply(cmd.name, body) : undefined;
    return rewritten ? encodeOpMsg(reply.header.requestId, reply.header.responseTo, rewritten) : reply.bytes;
  }
}

/** The document of a command reply (OP_MSG body or first OP_REPLY document), if readable. */
function decodeReplyDocument(reply: WireMessage): Document | undefined {
  try {
    if (reply.header.opCode === OpCode.MSG) return deserializeCommand(parseOpMsg(reply).body);
    if (reply.header.opCode === OpCode.REPLY) {
      const first = parseOpReply(reply).documents[0];
      return first ? deserializeCommand(first) : undefined;
    }
  } catch {
    // unreadable: nothing cached, the client still gets the server's bytes
  }
  return undefined;
}
