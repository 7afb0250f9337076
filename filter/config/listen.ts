import { z } from 'zod';
import { COMPRESSOR_NAMES } from '../wire/compression';
import { MAX_MESSAGE_SIZE_BYTES } from '../wire/limits';
import { checkCertificatePair, file, grpcAddress, invalid, ms, port } from './kit';

/** Where clients connect and what each client may hold: the TCP and ext_proc ingresses, their TLS, the process count, and the per-client bounds. */

export const workers = z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto').describe('processes serving clients: `auto` (the number of cores) or 1–64. See [workers, in Operations](operations.md): they share the TCP port, worker *i* serves ext_proc at `listen.grpc`\'s port + *i*, each pools its share of the upstream limits. More than one needs `topology.mode single` and `auth.mode none` on every listener; otherwise `auto` is 1 (logged at start) and an explicit number is refused. Restart to change');

export const listen = z.strictObject({
  host: z.string().min(1).default('127.0.0.1').describe('address of the TCP ingress'),
  port: port.nullable().default(27016).describe('port of the TCP ingress (0: any free port, `null`: no TCP ingress)'),
  /**
   * TLS for the TCP ingress (and replset mode's member listeners): on when certFile is set.
   * The files are re-read when they change, for new connections.
   */
  tls: z.strictObject({
    certFile: file.describe('PEM certificate chain of the TCP ingress (and replset mode\'s member listeners): TLS is on when set. The files are re-read when they change (checked every second) and used for new connections; files that do not load are logged, counted (`mongoplex.tls.reloads{result="failed"}`) and the previous certificate kept'),
    keyFile: file.describe('its private key (PEM)'),
    caFile: file.describe('CA certificates (PEM) that client certificates are verified against; clients may present one'),
    requireClientCert: z.boolean().default(false).describe('refuse clients without a certificate signed by `caFile` (counted in `mongoplex.tls.handshake_failures`)'),
  }).prefault({}),
  grpc: grpcAddress.nullable().default(null).describe('the Envoy network ext_proc gRPC ingress: `host:port`, or `unix:/path` (a Unix domain socket; Envoy\'s `pipe` address; a socket file left by a dead process is replaced, a live one is an error) (`null`: off). A non-loopback `host:port` without `listen.grpcTls` is refused at start. Also serves gRPC health checking (`grpc.health.v1.Health/Check`: `SERVING` exactly when `/readyz` passes)'),
  /** Mutual TLS on the gRPC ingress: on when certFile is set; Envoy must present a certificate signed by caFile. */
  grpcTls: z.strictObject({
    certFile: file.describe('mutual TLS on the gRPC ingress: mongoplex\'s certificate (PEM); on when set. Read at start'),
    keyFile: file.describe('its private key'),
    caFile: file.describe('the CA Envoy\'s client certificate must be signed by (required with `certFile`)'),
  }).prefault({}),
  grpcDynamicMetadata: z.boolean().default(false).describe('each ext_proc reply carries Envoy dynamic metadata `mongoplex: {db, collection, command}` of the command it answers, for Envoy\'s access log (`%DYNAMIC_METADATA(mongoplex:command)%`) and RBAC; the generated Envoy config accepts the namespace'),
  maxClientConnections: z.number().int().min(1).default(20000).describe('client connections served at once; more are closed on accept and counted'),
  drainTimeoutMs: ms.default(25_000).describe('on SIGTERM/SIGINT/`POST /drain`, how long clients get to receive the replies to what they already sent before the rest are closed (the delay below included; see [Operations](operations.md))'),
  drainDelayMs: ms.default(0).describe('on a drain, `/readyz` fails at once but new clients are still accepted this long, so load balancers stop sending them first; behind the generated Envoy config (health check every 2 s, 2 failures) Envoy stopped choosing the slot within ~2–4 s in tests: use ≥ `6000`'),
  drainNoticeMs: ms.default(12_000).describe('then, before any client is closed, how long drivers get to leave on their own: a monitor\'s next heartbeat `hello` is answered with `ShutdownInProgress` (91), so the driver clears its pool, closes its connections itself once their requests are answered, and reconnects; a load-balanced client gets it on its first retryable command. Keep it above the drivers\' `heartbeatFrequencyMS` (10 s by default). `0`: close clients between requests at once'),
}).prefault({});

export const client = z.strictObject({
  compressors: z.array(z.enum(COMPRESSOR_NAMES)).default(['snappy', 'zstd', 'zlib']).describe('compressors accepted from clients'),
  maxMessageSizeBytes: z.number().int().min(1024).max(MAX_MESSAGE_SIZE_BYTES).default(MAX_MESSAGE_SIZE_BYTES).describe('largest client message; larger is refused before it is buffered'),
  maxBufferedBytes: z.number().int().min(1024).default(64 * 1024 * 1024).describe('bytes read from one client and not yet processed before its socket is paused'),
  maxTotalBufferedBytes: z.number().int().min(1024 * 1024).default(512 * 1024 * 1024).describe('client input all clients together may hold (queued messages, plus each message still arriving at its declared size, claimed when its header arrives); a message that would overrun it gets `ExceededMemoryLimit` (146) and its client is closed. At least `client.maxMessageSizeBytes`'),
  readTimeoutMs: ms.default(60_000).describe('a message must arrive in full within this long of its first byte (time spent paused by the proxy\'s own backpressure does not count), else `NetworkTimeout` (89) and the client is closed (0: no limit)'),
  maxPendingRequests: z.number().int().min(1).default(64).describe('pipelined requests queued per client before its socket is paused'),
  maxUnreadReplyBytes: z.number().int().min(1024 * 1024).default(64 * 1024 * 1024).describe('Envoy ext_proc clients: reply bytes sent since the client last sent anything; beyond it, or beyond `maxPendingRequests` replies, the client is reset (`unread_replies`: Envoy buffers what a client does not read). One reply always goes out, whatever its size'),
  lastErrorPinMs: z.number().int().min(1).default(5000).describe('how long an unacknowledged write keeps its upstream connection for a following getLastError'),
  idleTimeoutMs: ms.default(0).describe('close a client connection idle this long (0: never)'),
}).prefault({});

/** The listen and client settings that only make sense together. */
export function checkListen(l: z.infer<typeof listen>, c: z.infer<typeof client>): void {
  if (c.maxTotalBufferedBytes < c.maxMessageSizeBytes) {
    throw invalid('client.maxTotalBufferedBytes', 'must be at least client.maxMessageSizeBytes');
  }
  checkCertificatePair('listen.tls', l.tls);
  checkCertificatePair('listen.grpcTls', l.grpcTls);
  if (l.tls.certFile === null && (l.tls.caFile !== null || l.tls.requireClientCert)) {
    throw invalid('listen.tls', 'caFile and requireClientCert need certFile and keyFile (TLS is on when certFile is set)');
  }
  if (l.tls.requireClientCert && l.tls.caFile === null) {
    throw invalid('listen.tls.requireClientCert', 'needs listen.tls.caFile (the CA client certificates are verified against)');
  }
  if (l.grpcTls.certFile !== null && l.grpcTls.caFile === null) {
    throw invalid('listen.grpcTls.caFile', 'the gRPC ingress\'s TLS is mutual; set the CA that Envoy\'s client certificate is signed by');
  }
}
