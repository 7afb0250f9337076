import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Config } from '../config';
import { clientCausedLogs, type Logger } from '../log';
import type { Proxy } from '../proxy';
import type { ClientSession } from '../session/client-session';
import type { ClientInfo } from '../session/client-info';
import type { ClientTransport } from '../session/transport';
import { Metrics } from '../telemetry/metrics';
import { ServerAddress } from '../upstream/address';
import { whenDrained } from './drain';
import { claimSocketPath, parseGrpcAddress } from './exposure';
import { loadPemFiles, type PemFiles } from '../pem-files';
import { decodeRequest, encodeResponse, type ProcessingRequest, type ProcessingResponse, type Struct as StructMessage, type StructValue } from './ext-proc-codec';

/**
 * Envoy network ext_proc ingress (`envoy.service.network_ext_proc.v3.NetworkExternalProcessor`):
 * Envoy terminates the client's TCP connection and streams its bytes here, one gRPC stream
 * per client connection. Facts of Envoy 1.40's filter this relies on:
 * - every `read_data` must be answered exactly once; an empty `read_data` answer consumes the
 *   bytes (nothing reaches the next filter, a no-op terminal filter such as echo);
 * - a `write_data` response is injected toward the client even when no write is pending, which
 *   is how replies reach the client (`process_write: SKIP`, so Envoy never asks);
 * - `connection_status: CLOSE` closes the client connection after flushing what was written
 *   (which waits for a client that does not read); `CLOSE_RST` resets it at once, and Envoy
 *   frees what it buffered for it;
 * - Envoy takes every injected byte whether or not the client reads, and says nothing of what
 *   it delivered: the transport bounds replies sent since the client's last input instead;
 * - Envoy cannot be told to stop reading, so the session's byte bound is enforced by closing.
 * - with `connection_attributes: [source.address]`, the first `read_data` of a stream carries
 *   the client's `host:port` in `attributes["envoy.filters.network.ext_proc"]`; later ones do not.
 * Per-listener facts arrive as gRPC initial metadata (`x-mongoplex-listener`), so the session
 * opens at the stream's first read, once the client's address is known.
 */

export const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');
export const SERVICE_PROTO = 'envoy/service/network_ext_proc/v3/network_external_processor.proto';
/** `/package.Service/Method` of the stream, as the proto declares it. */
export const PROCESS_METHOD_PATH = '/envoy.service.network_ext_proc.v3.NetworkExternalProcessor/Process';
/** How proto-loader rendered the messages before the hand-written codec (which reproduces it: see ext-proc-codec). */
export const REFERENCE_LOAD_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true } as const;
/** gRPC health checking: Envoy's grpc_health_check asks it over the stream's own connection (a Unix socket has no admin address beside it). */
const HEALTH_PROTO = 'grpc/health/v1/health.proto';
/** Replies larger than this go out as several write_data messages (Envoy's gRPC limits). */
const WRITE_CHUNK = 1024 * 1024;

/** The namespace of the dynamic metadata mongoplex gives Envoy (`%DYNAMIC_METADATA(mongoplex:command)%`). */
export const METADATA_NAMESPACE = 'mongoplex';
type ProcessCall = grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>;

/** The attribute key Envoy files connection attributes under. */
const ATTRIBUTES_KEY = 'envoy.filters.network.ext_proc';

/** The client's `host:port` as Envoy reported it, if the listener asks Envoy for it. */
export function clientAddress(req: ProcessingRequest): string | undefined {
  const v = req.attributes?.[ATTRIBUTES_KEY]?.fields?.['source.address']?.stringValue;
  return v && v.length > 0 ? v : undefined;
}

/** `{mongoplex: {db, collection, command}}` of the client's last forwarded command. */
function lastCommandMetadata(info: ClientInfo): StructMessage {
  const fields: Record<string, StructValue> = { command: { stringValue: info.lastCommand! } };
  if (info.lastDb !== undefined) fields.db = { stringValue: info.lastDb };
  if (info.lastCollection !== undefined) fields.collection = { stringValue: info.lastCollection };
  return { fields: { [METADATA_NAMESPACE]: { structValue: { fields } } } };
}

/** The acknowledgement of a read (consumed: nothing reaches the next filter), encoded once. */
const CONSUMED: ProcessingResponse = { read_data: { data: Buffer.alloc(0), end_of_stream: false }, data_processing_status: 'MODIFIED' };
const CONSUMED_BYTES = encodeResponse(CONSUMED);

function clientSideOnly(): never {
  throw new Error('ext_proc: the client side of the Process stream is not implemented here');
}

/**
 * The Process stream with the hand-written codec of its two messages (the hot path: one
 * request per client read, two responses per command); the health service through proto-loader.
 */
function loadServices(): { extProc: grpc.ServiceDefinition; health: grpc.ServiceDefinition } {
  const def = protoLoader.loadSync([HEALTH_PROTO], { includeDirs: [PROTO_DIR], ...REFERENCE_LOAD_OPTIONS });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  const extProc: grpc.ServiceDefinition = {
    Process: {
      path: PROCESS_METHOD_PATH,
      requestStream: true,
      responseStream: true,
      requestDeserialize: decodeRequest,
      responseSerialize: (r: ProcessingResponse) => (r === CONSUMED ? CONSUMED_BYTES : encodeResponse(r)),
      // A server never sends requests nor reads responses.
      requestSerialize: clientSideOnly,
      responseDeserialize: clientSideOnly,
    },
  };
  return { extProc, health: pkg.grpc.health.v1.Health.service };
}

/** The close reason of a client that stopped reading what it asked for. */
export const UNREAD_REPLIES = 'unread_replies';
/** The limits read at every reply (a reload changes them for open streams too). */
type UnreadLimits = Pick<Config['client'], 'maxUnreadReplyBytes' | 'maxPendingRequests'>;

/**
 * One ext_proc stream as a session transport. Envoy takes every injected reply whether or not
 * the client reads it, and says nothing of what the client read; what a client cannot have
 * read is what it was sent since it last sent something. Beyond the limits on that, the
 * client is reset (CLOSE_RST: Envoy drops what it buffered for it at once).
 */
class ExtProcTransport implements ClientTransport {
  private ended = false;
  /** Set from the first read, before the session opens. */
  remote = '';
  /** With listen.grpcDynamicMetadata: whose last command each reply describes to Envoy. */
  describes: ClientInfo | undefined;
  /** Told once when the client has more unread replies than the limits allow; the session closes it. */
  onUnread: (() => void) | undefined;
  private unreadBytes = 0;
  private unreadReplies = 0;
  constructor(private readonly call: ProcessCall, private readonly limits: UnreadLimits) {}

  /** The client sent bytes: what went before may have been read. */
  sawInput(): void {
    this.unreadBytes = 0;
    this.unreadReplies = 0;
  }

  write(bytes: Buffer): boolean {
    if (this.ended) return true;
    if (this.unreadReplies > 0 && (this.unreadBytes + bytes.length > this.limits.maxUnreadReplyBytes || this.unreadReplies >= this.limits.maxPendingRequests)) {
      this.onUnread?.();
      return true;
    }
    this.unreadBytes += bytes.length;
    this.unreadReplies++;
    let ok = true;
    for (let off = 0; off < bytes.length; off += WRITE_CHUNK) {
      const response: ProcessingResponse = { write_data: { data: bytes.subarray(off, off + WRITE_CHUNK), end_of_stream: false }, data_processing_status: 'MODIFIED' };
      if (off === 0 && this.describes?.lastCommand !== undefined) response.dynamic_metadata = lastCommandMetadata(this.describes);
      ok = this.call.write(response);
    }
    return ok;
  }

  waitForDrain(): Promise<void> {
    return this.ended ? Promise.resolve() : whenDrained(this.call);
  }

  /** Envoy cannot be paused from here; the session closes the client if it overruns its bound. */
  pause(): void {}
  resume(): void {}

  acknowledgeRead(): void {
    if (!this.ended) this.call.write(CONSUMED);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  close(reason?: string): void {
    if (this.ended) return;
    this.call.write({ connection_status: reason === UNREAD_REPLIES ? 'CLOSE_RST' : 'CLOSE', data_processing_status: 'UNMODIFIED' });
    this.end();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.call.end();
  }
}

/** Resets a client that stopped reading its replies, counted and logged (rate-limited: the client's doing). */
function closeUnread(session: ClientSession, transport: ExtProcTransport, log: Logger): () => void {
  return () => {
    Metrics.clientProtocolErrors.add(1, { reason: UNREAD_REPLIES });
    if (clientCausedLogs.allow(log, UNREAD_REPLIES)) log.warn({ session: session.id, remote: transport.remote }, 'resetting client connection: it stopped reading its replies (more than client.maxUnreadReplyBytes or client.maxPendingRequests since it last sent anything)');
    session.close(UNREAD_REPLIES);
  };
}

/** Server credentials that require and verify a client certificate (Envoy's). */
function mutualTls(files: PemFiles): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(files.ca!, [{ cert_chain: files.cert!, private_key: files.key! }], true);
}

export class ExtProcIngress {
  private readonly server: grpc.Server;
  private warnedNoAddress = false;

  constructor(private readonly proxy: Proxy) {
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_permit_without_calls': 1,
      // Channelz (off here: nothing reads it) stamps Date.now() on every message of every stream.
      'grpc.enable_channelz': 0,
    });
    const services = loadServices();
    this.server.addService(services.extProc, { Process: (call: ProcessCall) => this.onStream(call) });
    // SERVING exactly when GET /readyz passes (draining, upstream down, pool jammed: NOT_SERVING).
    this.server.addService(services.health, {
      Check: (_call: grpc.ServerUnaryCall<unknown, unknown>, reply: grpc.sendUnaryData<{ status: string }>) => reply(null, { status: proxy.readiness.check().ready ? 'SERVING' : 'NOT_SERVING' }),
    });
  }

  private onStream(call: ProcessCall): void {
    const listener = call.metadata.get('x-mongoplex-listener')[0]?.toString() ?? 'default';
    const transport = new ExtProcTransport(call, this.proxy.config.client);
    // A listener that stands for one replica-set member names it (replset mode).
    const memberName = call.metadata.get('x-mongoplex-member')[0]?.toString();
    let member: ServerAddress | undefined;
    try {
      member = memberName ? ServerAddress.parse(memberName) : undefined;
    } catch {
      this.proxy.log.error({ listener, member: memberName }, 'invalid x-mongoplex-member metadata: expected host:port');
      transport.close();
      return;
    }
    let session: ClientSession | undefined;
    let reason = 'client_closed';
    call.on('data', (req: ProcessingRequest) => {
      if (!session) {
        if (transport.isEnded) return;
        transport.remote = clientAddress(req) ?? this.unknownClient(listener, call);
        session = this.proxy.openSession(transport, member, 'grpc');
        if (!session) return transport.close();
        if (this.proxy.config.listen.grpcDynamicMetadata) transport.describes = this.proxy.clientInfo(session);
        transport.onUnread = closeUnread(session, transport, this.proxy.log);
      }
      this.onRequest(req, session, transport);
    });
    call.on('error', (err: Error) => {
      reason = 'stream_error';
      this.proxy.log.debug({ err: err.message, session: session?.id }, 'ext_proc stream error');
    });
    call.on('cancelled', () => {
      reason = 'stream_cancelled';
    });
    call.on('end', () => transport.end());
    call.on('close', () => {
      if (session) this.proxy.endSession(session, reason);
    });
  }

  /** Without `connection_attributes`, the client's address is unknown: say where the bytes came from instead. */
  private unknownClient(listener: string, call: ProcessCall): string {
    if (!this.warnedNoAddress) {
      this.warnedNoAddress = true;
      this.proxy.log.warn({ listener }, "Envoy does not send the client's address: add connection_attributes: [source.address] to the ext_proc filter (whatsmyuri and logs show Envoy's address until then)");
    }
    return call.getPeer();
  }

  private onRequest(req: ProcessingRequest, session: ClientSession, transport: ExtProcTransport): void {
    if (req.read_data) {
      // Answer first: Envoy holds the bytes (and its message timer) until it hears back.
      transport.acknowledgeRead();
      const data = req.read_data.data;
      if (data && data.length > 0) {
        transport.sawInput();
        session.receive(data);
      }
      if (req.read_data.end_of_stream) session.endOfInput();
      return;
    }
    if (req.write_data) {
      // Only sent when process_write is not SKIP: let the bytes through unchanged.
      Metrics.clientProtocolErrors.add(1, { reason: 'unexpected_write_data' });
      const d = req.write_data;
      transport.write(d.data ?? Buffer.alloc(0));
    }
  }

  /**
   * Binds `listen.grpc` (host:port or unix:/path; a stale socket file is removed first), with
   * mutual TLS when listen.grpcTls is set. Resolves with the TCP port (0 for a Unix socket).
   */
  async listen(address: string): Promise<number> {
    const where = parseGrpcAddress(address);
    if (where.kind === 'unix') await claimSocketPath(where.path);
    const tls = this.proxy.config.listen.grpcTls;
    const credentials = tls.certFile === null ? grpc.ServerCredentials.createInsecure() : mutualTls(loadPemFiles('listen.grpcTls', tls));
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port)));
    });
  }

  /** No new streams (Envoy closes the client connections it cannot open one for); open streams carry on. */
  stopAccepting(): void {
    this.server.tryShutdown(() => undefined);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.tryShutdown(() => resolve());
      setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000).unref();
    });
  }
}
