import * as net from 'node:net';
import * as tls from 'node:tls';
import { lookup } from 'node:dns/promises';
import { proxyV2Header } from './proxy-protocol';
import { BSON, type Document } from 'bson';
import { MessageFramer } from '../wire/framer';
import { OpCode, OP_MSG_WIRE_VERSION, stampIds, type WireMessage } from '../wire/header';
import { Metrics } from '../telemetry/metrics';
import { encodeOpQuery, parseOpReply } from '../wire/legacy';
import { encodeOpMsg, MsgFlag, opMsgFlags, parseOpMsg } from '../wire/opmsg';
import { compressMessage, decompressMessage, type CompressorName } from '../wire/compression';
import { MAX_MESSAGE_SIZE_BYTES } from '../wire/limits';
import type { ServerAddress } from './address';
import { describeServer, type ServerDescription } from './server-description';
import { completeLogin, LoginError, speculativeLogin, type UpstreamCredentials } from './login';
import { ScramError } from '../wire/scram';
import { tlsConnectOptions, type UpstreamTls } from './tls';

/** The upstream connection failed; the request may or may not have reached the server. */
export class UpstreamNetworkError extends Error {
  override name = 'UpstreamNetworkError';
  constructor(message: string, readonly address: ServerAddress, readonly phase: 'connect' | 'request') {
    super(message);
  }
}

export interface ConnectOptions {
  readonly connectTimeoutMs: number;
  /**
   * Dial this Envoy egress listener instead of the server, naming the server in a PROXY
   * protocol v2 header (Envoy then enforces connection caps, timeouts, TLS and per-host stats).
   */
  readonly via?: { readonly host: string; readonly port: number } | undefined;
  readonly appName: string;
  readonly compressors: readonly CompressorName[];
  /** Log in as this identity after the handshake (upstream.auth); undefined: no login. */
  readonly credentials?: UpstreamCredentials | undefined;
  /** Dial with TLS (upstream.tls; never with `via`, where Envoy originates TLS). */
  readonly tls?: UpstreamTls | undefined;
}

/** The server refused the proxy's own login (upstream.auth): a configuration problem, not a network one. */
export class UpstreamAuthError extends UpstreamNetworkError {
  override name = 'UpstreamAuthError';
}

/**
 * Why an upstream connection closed: a small fixed set, so it can label a metric. The free
 * text that goes with it (which timeout, which socket error) is for logs and error messages.
 */
export type CloseReason =
  | 'pool_closed' | 'idle' | 'checked_in_busy' | 'handshake_failed' | 'timeout'
  | 'server_closed' | 'socket_error' | 'protocol_error' | 'monitor_stopped' | 'pool_shrunk' | 'budget';

interface Pending {
  /** The id the proxy gave the request on this connection. */
  readonly requestId: number;
  /** The client's id for the request: the reply is renumbered to answer it. */
  readonly clientRequestId: number;
  readonly resolve: (m: WireMessage) => void;
  readonly reject: (e: Error) => void;
}

let nextConnectionId = 1;

/**
 * One pooled connection to a MongoDB server. Carries one request at a time (the server
 * answers a connection's requests in order anyway), forwards the client's bytes unchanged and
 * hands back the server's reply bytes unchanged (decompressed when the server compressed).
 */
export class UpstreamConnection {
  readonly id = nextConnectionId++;
  readonly createdAt = Date.now();
  lastUsedAt = Date.now();
  /** Cursors this connection created that are still open (some servers kill them with the connection). */
  private openCursors = 0;
  description!: ServerDescription;
  private compressor: CompressorName | undefined;
  private readonly framer: MessageFramer;
  private pending: Pending | undefined;
  private closedReason: string | undefined;
  private nextRequestId = 1;
  /**
   * Ids of recent fire-and-forget (moreToCome) requests. A conforming server never answers
   * them; some servers (FerretDB) do, and such a reply is dropped instead of being mistaken
   * for the answer to a later request.
   */
  private readonly unansweredIds: number[] = [];
  private readonly closeListeners: Array<(reason: CloseReason, detail: string) => void> = [];

  private constructor(private readonly socket: net.Socket, readonly address: ServerAddress) {
    this.framer = new MessageFramer(MAX_MESSAGE_SIZE_BYTES);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.close('socket_error', `socket error: ${err.message}`));
    socket.on('close', () => this.close('server_closed', 'closed by server'));
  }

  static async connect(address: ServerAddress, options: ConnectOptions): Promise<UpstreamConnection> {
    const via = options.via;
    let destinationIp: string | undefined;
    if (via) {
      try {
        destinationIp = net.isIP(address.host) ? address.host : (await lookup(address.host)).address;
      } catch (err) {
        throw new UpstreamNetworkError(`cannot resolve ${address.host}: ${(err as Error).message}`, address, 'connect');
      }
    }
    const dial = via ?? address;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const secure = options.tls !== undefined && via === undefined;
      const s = secure ? tls.connect(tlsConnectOptions(options.tls!, dial.host, dial.port)) : net.connect({ host: dial.host, port: dial.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new UpstreamNetworkError(`connect to ${address} timed out after ${options.connectTimeoutMs} ms`, address, 'connect'));
      }, options.connectTimeoutMs);
      s.once(secure ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        const what = options.tls && !via ? 'TLS connect' : 'connect';
        reject(new UpstreamNetworkError(`${what} to ${address}${via ? ` through Envoy ${via.host}:${via.port}` : ''} failed: ${err.message}`, address, 'connect'));
      });
    });
    if (destinationIp !== undefined) {
      socket.write(proxyV2Header({ ip: socket.localAddress ?? '', port: socket.localPort ?? 0 }, { ip: destinationIp, port: address.port }));
    }
    const conn = new UpstreamConnection(socket, address);
    try {
      await conn.handshake(options);
    } catch (err) {
      conn.close('handshake_failed', 'handshake failed');
      throw err instanceof UpstreamNetworkError ? err : new UpstreamNetworkError(`handshake with ${address} failed: ${(err as Error).message}`, address, 'connect');
    }
    return conn;
  }

  /** OP_QUERY isMaster works on every server generation, like the drivers' first message. */
  private async handshake(options: ConnectOptions): Promise<void> {
    const login = options.credentials && speculativeLogin(options.credentials);
    const cmd = BSON.serialize({
      isMaster: 1,
      helloOk: true,
      client: {
        driver: { name: 'mongoplex', version: '0.1.0' },
        os: { type: process.platform, architecture: process.arch },
        platform: `Node.js ${process.version}`,
        application: { name: options.appName },
      },
      compression: [...options.compressors],
      ...login?.fields,
    });
    const requestId = this.nextRequestId++;
    const timer = setTimeout(() => this.close('timeout', `handshake timed out after ${options.connectTimeoutMs} ms`), options.connectTimeoutMs);
    try {
      const reply = await this.roundTrip(encodeOpQuery(requestId, 'admin.$cmd', cmd), requestId);
      if (reply.header.opCode !== OpCode.REPLY) throw new Error(`handshake answered with opcode ${reply.header.opCode}`);
      const doc = parseOpReply(reply).documents[0];
      if (!doc) throw new Error('handshake reply has no document');
      this.description = describeServer(doc);
      this.compressor = options.compressors.find((c) => this.description.compression.includes(c));
      if (login) await this.logIn(options.credentials!, login, BSON.deserialize(doc, { promoteLongs: false }));
    } finally {
      clearTimeout(timer);
    }
  }

  private async logIn(credentials: UpstreamCredentials, login: ReturnType<typeof speculativeLogin>, hello: Document): Promise<void> {
    try {
      const mechanism = await completeLogin((db, cmd) => this.command(db, cmd), credentials, login, hello);
      Metrics.upstreamLogins.add(1, { result: 'ok', mechanism });
    } catch (err) {
      if (!(err instanceof LoginError || err instanceof ScramError)) throw err;
      Metrics.upstreamLogins.add(1, { result: 'failed', mechanism: credentials.mechanism });
      throw new UpstreamAuthError(`login as "${credentials.username}" (authSource ${credentials.source}) at ${this.address} failed: ${err.message}`, this.address, 'connect');
    }
  }

  /** A command the proxy itself sends (monitoring, cleanup): OP_MSG, or OP_QUERY to a server older than 3.6. */
  async command(db: string, command: Document): Promise<Document> {
    const requestId = this.nextRequestId++ & 0x7fffffff;
    if (this.description.maxWireVersion < OP_MSG_WIRE_VERSION) {
      const legacy = await this.roundTrip(encodeOpQuery(requestId, `${db}.$cmd`, BSON.serialize(command)), requestId);
      if (legacy.header.opCode !== OpCode.REPLY) throw new Error(`command answered with opcode ${legacy.header.opCode}`);
      const doc = parseOpReply(legacy).documents[0];
      if (!doc) throw new Error('command reply has no document');
      return BSON.deserialize(doc, { promoteLongs: false });
    }
    const reply = await this.roundTrip(encodeOpMsg(requestId, 0, BSON.serialize({ ...command, $db: db })), requestId);
    if (reply.header.opCode !== OpCode.MSG) throw new Error(`command answered with opcode ${reply.header.opCode}`);
    return BSON.deserialize(parseOpMsg(reply).body, { promoteLongs: false });
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  get busy(): boolean {
    return this.pending !== undefined;
  }

  /** A cursor this connection created is remembered by the cursor routes (the pool never reaps such a connection). */
  cursorOpened(): void {
    this.openCursors++;
  }

  cursorClosed(): void {
    this.openCursors = Math.max(0, this.openCursors - 1);
  }

  get holdsCursors(): boolean {
    return this.openCursors > 0;
  }

  onClose(listener: (reason: CloseReason, detail: string) => void): void {
    this.closeListeners.push(listener);
  }

  /**
   * Sends a client's request and resolves with the server's reply, renumbered to answer the
   * client's own requestId. The request is renumbered on this connection (ids are unique per
   * connection, whatever the clients chose). With `moreToCome` nothing is awaited.
   * The request buffer is modified in place.
   */
  async request(bytes: Buffer, options: { compressible: boolean; moreToCome: boolean }): Promise<WireMessage | undefined> {
    const clientRequestId = bytes.readInt32LE(4);
    const requestId = this.nextRequestId++ & 0x7fffffff;
    stampIds(bytes, { requestId });
    const wire = this.compressor && options.compressible ? await compressMessage(bytes, this.compressor) : bytes;
    if (options.moreToCome) {
      this.unansweredIds.push(requestId);
      if (this.unansweredIds.length > 16) this.unansweredIds.shift();
      this.send(wire);
      return undefined;
    }
    return this.roundTrip(wire, requestId, clientRequestId);
  }

  private roundTrip(bytes: Buffer, requestId: number, clientRequestId = requestId): Promise<WireMessage> {
    return new Promise<WireMessage>((resolve, reject) => {
      if (this.pending) {
        reject(new Error(`upstream connection ${this.id} already has a request in flight`));
        return;
      }
      this.pending = { requestId, clientRequestId, resolve, reject };
      this.send(bytes);
    });
  }

  private send(bytes: Buffer): void {
    if (this.closedReason !== undefined) throw new UpstreamNetworkError(`connection to ${this.address} is closed (${this.closedReason})`, this.address, 'request');
    this.lastUsedAt = Date.now();
    this.socket.write(bytes);
  }

  private onData(chunk: Buffer): void {
    let messages: WireMessage[];
    try {
      messages = this.framer.push(chunk);
    } catch (err) {
      this.close('protocol_error', `bad frame from server: ${(err as Error).message}`);
      return;
    }
    for (const m of messages) void this.deliver(m);
  }

  private async deliver(raw: WireMessage): Promise<void> {
    const stray = this.unansweredIds.indexOf(raw.header.responseTo);
    if (stray >= 0) {
      this.unansweredIds.splice(stray, 1);
      Metrics.upstreamStrayReplies.add(1, { server: this.address.toString() });
      return;
    }
    const p = this.pending;
    if (!p) {
      this.close('protocol_error', 'server sent a message with no request outstanding');
      return;
    }
    if (raw.header.responseTo !== p.requestId) {
      this.close('protocol_error', `server reply answers request ${raw.header.responseTo}, expected ${p.requestId}`);
      return;
    }
    this.pending = undefined;
    this.lastUsedAt = Date.now();
    let msg = raw;
    if (raw.header.opCode === OpCode.COMPRESSED) {
      try {
        msg = (await decompressMessage(raw, Number.MAX_SAFE_INTEGER)).message;
      } catch (err) {
        p.reject(new UpstreamNetworkError(`undecodable compressed reply: ${(err as Error).message}`, this.address, 'request'));
        this.close('protocol_error', 'undecodable compressed reply');
        return;
      }
    }
    if (msg.header.opCode === OpCode.MSG && opMsgFlags(msg) & MsgFlag.moreToCome) {
      // The proxy clears exhaustAllowed on every request, so a streamed reply means the
      // connection's state is unknown: never return it to the pool.
      p.reject(new UpstreamNetworkError('server streamed an exhaust reply that was not asked for', this.address, 'request'));
      this.close('protocol_error', 'unexpected moreToCome reply');
      return;
    }
    stampIds(msg.bytes, { responseTo: p.clientRequestId });
    p.resolve({ header: { ...msg.header, responseTo: p.clientRequestId }, bytes: msg.bytes });
  }

  /** Closes the connection; a request in flight fails with `detail` (what happened, in words). */
  close(reason: CloseReason, detail: string = reason): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = detail;
    this.socket.destroy();
    const p = this.pending;
    this.pending = undefined;
    p?.reject(new UpstreamNetworkError(`connection to ${this.address} lost: ${detail}`, this.address, 'request'));
    for (const l of this.closeListeners) l(reason, detail);
  }
}
