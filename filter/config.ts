import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConnectionString } from 'mongodb-connection-string-url';
import { z } from 'zod';
import { COMPRESSOR_NAMES } from './wire/compression';
import { MAX_MESSAGE_SIZE_BYTES } from './wire/limits';

/**
 * mongoplex configuration: one YAML/JSON file, validated at start, with every leaf setting
 * overridable by an environment variable named after its path (`upstream.maxPoolSize` →
 * `MONGOPLEX_UPSTREAM_MAX_POOL_SIZE`). Anything unknown or invalid is refused by name.
 */

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected host:port');
const port = z.number().int().min(0).max(65535);
const ms = z.number().int().min(0);
/** A host:port, or `unix:` and an absolute path (a Unix domain socket). */
const grpcAddress = z.string().regex(/^unix:\/.+$|^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected host:port or unix:/absolute/path');
const file = z.string().min(1).nullable().default(null);
const authMode = z.enum(['none', 'proxy', 'passthrough']);

/** Settings whose values never leave the process (logs, /stats, reload results, errors). */
export const SECRET_SETTINGS: ReadonlySet<string> = new Set(['admin.token', 'upstream.auth.password', 'upstream.uri']);

export const ConfigSchema = z.strictObject({
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto').describe('processes serving clients: `auto` (the number of cores) or 1–64. See [workers, in Operations](operations.md): they share the TCP port, worker *i* serves ext_proc at `listen.grpc`\'s port + *i*, each pools its share of the upstream limits. More than one needs `topology.mode single` and `auth.mode none` on every listener; otherwise `auto` is 1 (logged at start) and an explicit number is refused. Restart to change'),
  listen: z.strictObject({
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
  }).prefault({}),
  upstream: z.strictObject({
    servers: z.array(hostPort).min(1).default(['127.0.0.1:27017']).describe('the MongoDB servers to pool connections to (`host:port`)'),
    uri: z.string().min(1).nullable().default(null).describe('a MongoDB connection string instead of `upstream.servers`, `upstream.auth` and `upstream.tls`: its hosts, `user:password@`, `authSource` (else the path\'s database, else `admin`), `authMechanism` (`SCRAM-SHA-256`, `SCRAM-SHA-1`, `DEFAULT`), `tls`/`ssl`, `tlsCAFile`, `tlsCertificateKeyFile`, `tlsAllowInvalidHostnames`; the driver\'s other options are ignored. Setting it together with any of those settings is an error, as is `mongodb+srv://` (list the hosts). A secret: never logged or shown, and errors about it do not quote it'),
    /** The identity pooled and monitor connections log in as (SCRAM); without a username they do not log in. */
    auth: z.strictObject({
      username: z.string().min(1).nullable().default(null).describe('the identity pooled and monitor connections log in as (SCRAM, with `speculativeAuthenticate` in the handshake); `null`: they do not log in. Wrong credentials stop the start (exit 2)'),
      password: z.string().min(1).nullable().default(null).describe('its password (never logged, shown or echoed); prefer `passwordFile` or the environment to the config file'),
      passwordFile: z.string().min(1).nullable().default(null).describe('a file holding the password (a mounted secret; one trailing newline ignored)'),
      source: z.string().min(1).default('admin').describe('the database the user is defined in (authSource)'),
      mechanism: z.enum(['DEFAULT', 'SCRAM-SHA-256', 'SCRAM-SHA-1']).default('DEFAULT').describe('`SCRAM-SHA-256`, `SCRAM-SHA-1`, or `DEFAULT`: SCRAM-SHA-256 when the server lists it for the user, else SCRAM-SHA-1'),
    }).prefault({}),
    maxPoolSize: z.number().int().min(1).default(16).describe('most connections per upstream server'),
    minPoolSize: z.number().int().min(0).default(0).describe('connections kept open even when idle'),
    maxConnecting: z.number().int().min(1).default(2).describe('connections being opened at once per server (absorbs connection storms)'),
    maxIdleTimeMs: ms.default(60_000).describe('close a pooled connection idle this long (0: never)'),
    waitQueueTimeoutMs: ms.default(10_000).describe('a request waiting longer for a pooled connection gets error 202 (0: wait forever)'),
    maxWaitQueueSize: z.number().int().min(1).default(50_000).describe('requests allowed to wait per server; more get error 462 at once'),
    connectTimeoutMs: z.number().int().min(1).default(10_000).describe('TCP connect + handshake limit'),
    socketTimeoutMs: ms.default(0).describe('a forwarded request with no reply after this long gets `NetworkTimeout` (89, `RetryableWriteError` on retryable writes) and its connection is discarded (0: wait as long as the server takes, as drivers do; set it above your longest query and awaitData wait)'),
    maxTimeGraceMs: ms.default(2000).describe('a command with `maxTimeMS` whose server has not answered by `maxTimeMS` + this gets `MaxTimeMSExpired` (50) from the proxy and its connection is discarded (a stalled server)'),
    via: hostPort.nullable().default(null).describe('dial pooled connections through this Envoy egress listener (`host:port`), naming the member with PROXY protocol v2'),
    compressors: z.array(z.enum(COMPRESSOR_NAMES)).default([]).describe('compressors offered to upstream servers'),
    /** TLS to the servers, dialled by mongoplex (with upstream.via, the Envoy egress originates TLS instead: `mongoplex envoy-config --upstream-tls`). */
    tls: z.strictObject({
      enabled: z.boolean().default(false).describe('pooled and monitor connections dial the servers with TLS, checking the certificate\'s chain and that it names the host dialled. Not with `upstream.via`: there the Envoy egress originates TLS (`mongoplex envoy-config --upstream-tls --upstream-ca FILE`)'),
      caFile: file.describe('CA certificates (PEM) the servers\' certificates are verified against (`null`: Node\'s bundled CAs)'),
      certFile: file.describe('a client certificate (PEM) presented to servers that require one'),
      keyFile: file.describe('its private key'),
      allowInvalidHostnames: z.boolean().default(false).describe('skip the host-name check (the chain is still verified), like the drivers\' `tlsAllowInvalidHostnames`'),
    }).prefault({}),
    appName: z.string().default('mongoplex').describe('`client.application.name` in the upstream handshake'),
  }).prefault({}),
  client: z.strictObject({
    compressors: z.array(z.enum(COMPRESSOR_NAMES)).default(['snappy', 'zstd', 'zlib']).describe('compressors accepted from clients'),
    maxMessageSizeBytes: z.number().int().min(1024).max(MAX_MESSAGE_SIZE_BYTES).default(MAX_MESSAGE_SIZE_BYTES).describe('largest client message; larger is refused before it is buffered'),
    maxBufferedBytes: z.number().int().min(1024).default(64 * 1024 * 1024).describe('bytes read from one client and not yet processed before its socket is paused'),
    maxTotalBufferedBytes: z.number().int().min(1024 * 1024).default(512 * 1024 * 1024).describe('client input all clients together may hold (queued messages, plus each message still arriving at its declared size, claimed when its header arrives); a message that would overrun it gets `ExceededMemoryLimit` (146) and its client is closed. At least `client.maxMessageSizeBytes`'),
    readTimeoutMs: ms.default(60_000).describe('a message must arrive in full within this long of its first byte (time spent paused by the proxy\'s own backpressure does not count), else `NetworkTimeout` (89) and the client is closed (0: no limit)'),
    maxPendingRequests: z.number().int().min(1).default(64).describe('pipelined requests queued per client before its socket is paused'),
    maxUnreadReplyBytes: z.number().int().min(1024 * 1024).default(64 * 1024 * 1024).describe('Envoy ext_proc clients: reply bytes sent since the client last sent anything; beyond it, or beyond `maxPendingRequests` replies, the client is reset (`unread_replies`: Envoy buffers what a client does not read). One reply always goes out, whatever its size'),
    lastErrorPinMs: z.number().int().min(1).default(5000).describe('how long an unacknowledged write keeps its upstream connection for a following getLastError'),
    idleTimeoutMs: ms.default(0).describe('close a client connection idle this long (0: never)'),
  }).prefault({}),
  topology: z.strictObject({
    mode: z.enum(['single', 'mongos', 'replset']).default('single').describe('`single`: one upstream server behind one address, presented as a mongos (or as a standalone over a standalone: see [What the proxy address presents](mongodb-semantics.md#what-the-proxy-address-presents)); `mongos`: one address presented the same way over a monitored replica set or mongos fleet, the proxy selecting servers; `replset`: one proxy address per replica-set member (see [Replica sets](mongodb-semantics.md#replica-sets))'),
    heartbeatMs: z.number().int().min(100).default(2000).describe('how often each upstream server is checked over its own heartbeat connection (every mode: readiness and `/stats` use it); in mongos and replset modes also at once after a "not primary" error'),
    advertiseHost: z.string().min(1).default('127.0.0.1').describe('host put in the proxy addresses clients are told about'),
    memberPorts: z.tuple([port, port]).default([27017, 27031]).describe('ports for the members\' proxy addresses, first and last, handed out in discovery order (`[0,0]`: any free port)'),
    advertise: z.record(hostPort, hostPort).default({}).describe('members advertised at fixed addresses instead of proxy ports, `{"real:port": "advertised:port"}` (e.g. one Envoy listener per member)'),
  }).prefault({}),
  cursors: z.strictObject({
    maxRoutes: z.number().int().min(1).default(100_000).describe('cursor routes remembered; the least recently used is evicted'),
    idleTtlMs: z.number().int().min(1000).default(15 * 60_000).describe('a cursor route unused this long is forgotten'),
  }).prefault({}),
  transactions: z.strictObject({
    maxPins: z.number().int().min(1).default(100_000).describe('transactions pinned to a server at once (mongos mode); the least recently used is evicted'),
    idleTimeoutMs: z.number().int().min(1000).default(2 * 60_000).describe('a transaction pin unused this long is dropped (mongod itself aborts a transaction after 60 s by default)'),
  }).prefault({}),
  readiness: z.strictObject({
    requires: z.enum(['writable', 'reachable']).default('writable').describe('what `/readyz` needs from the upstream: `writable` (a primary, mongos or standalone answered the last heartbeat) or `reachable` (any server answered; e.g. mongoplex in front of a secondary for reads)'),
    maxCheckoutWaitMs: z.number().int().min(1).default(5000).describe('a pool counts as saturated while a request has waited this long for one of its connections'),
    saturatedForMs: ms.default(10_000).describe('`/readyz` fails once a pool has stayed saturated this long without a break'),
  }).prefault({}),
  auth: z.strictObject({
    mode: authMode.default('none').describe('`proxy`: clients log in to mongoplex (SCRAM-SHA-256 / SCRAM-SHA-1) against `auth.userSource`, and upstream connections use `upstream.auth`; `passthrough`: clients log in the same way and each user gets its own upstream pools logged in as that user (needs `auth.userSource: upstream`); `none`: clients do not log in and share mongoplex\'s upstream identity (isolated networks only; warned at start). See [Security](security.md)'),
    userSource: z.enum(['file', 'upstream']).default('file').describe('where `auth.mode proxy` and `passthrough` find users\' SCRAM secrets: `file` (`auth.usersFile`) or `upstream` (the auth query: `usersInfo` with `showCredentials: true` on the writable server, as `upstream.auth`\'s user; see [Security](security.md))'),
    usersFile: z.string().min(1).nullable().default(null).describe('JSON file of users\' SCRAM secrets (`mongoplex users add`), re-read when it changes'),
    cacheTtlMs: z.number().int().min(1).default(60_000).describe('`userSource: upstream`: how long a user\'s secrets are used before the server is asked again (a user that does not exist: at most 5 s)'),
    cacheMaxUsers: z.number().int().min(1).default(10_000).describe('`userSource: upstream`: users whose secrets are cached at once; the oldest answer is dropped first'),
    maxSessions: z.number().int().min(1).default(100_000).describe('`auth.mode proxy`/`passthrough`: logical sessions (`lsid`) whose owning user is remembered, so another user\'s command in one is refused; the least recently used is forgotten first (and any after 30 idle minutes)'),
    /** auth.mode for one kind of listener (null: auth.mode). tcp: the TCP ingress and replica-set member listeners; grpc: the ext_proc ingress (Envoy). */
    listeners: z.strictObject({
      tcp: authMode.nullable().default(null).describe('`auth.mode` for the TCP ingress and replica-set member listeners (`null`: `auth.mode`)'),
      grpc: authMode.nullable().default(null).describe('`auth.mode` for the ext_proc ingress (`null`: `auth.mode`)'),
    }).prefault({}),
    passthrough: z.strictObject({
      maxPoolSizePerUser: z.number().int().min(1).default(4).describe('`auth.mode passthrough`: upstream connections one user may hold to one server'),
      maxConnections: z.number().int().min(1).default(64).describe('`auth.mode passthrough`: upstream connections of all users\' pools together (all servers); idle connections of other users are closed to make room'),
    }).prefault({}),
  }).prefault({}),
  admin: z.strictObject({
    host: z.string().default('127.0.0.1').describe('admin endpoint address; a non-loopback address needs `admin.token` (refused at start otherwise)'),
    port: port.nullable().default(null).describe('admin endpoint port (`null`: disabled, `0`: any free port)'),
    token: z.string().min(16, 'use at least 16 characters').nullable().default(null).describe('bearer token the control endpoints (`POST /pause`, `/resume`, `/drain`, `/reload`, `/capture/*`) require (≥ 16 characters); without one the admin endpoint must be on a loopback address. Never shown in `/stats`, logs or reload results'),
    maxPauseMs: z.number().int().min(1).default(5 * 60_000).describe('a pause ends by itself after this long (a `POST /pause` may ask for less), so a forgotten pause cannot hold clients forever'),
  }).prefault({}),
  stats: z.strictObject({
    enabled: z.boolean().default(true).describe('per-(db, collection, command) and per-callsite statistics on `/commands`, `/stats` and `/metrics`, and the status page\'s command rate and latency'),
    maxEntries: z.number().int().min(1).default(1000).describe('(db, collection, command) rows kept; further combinations share one row labelled `_other` (bounded series count)'),
    maxCallsites: z.number().int().min(1).default(200).describe('(callsite, command) rows kept (a callsite comes from a command\'s `comment`, see [Operations](operations.md)); the rest share `_other`'),
  }).prefault({}),
  accessLog: z.strictObject({
    path: z.string().min(1).nullable().default(null).describe('JSON-lines access log of forwarded commands: a file (created `0640`), `-` for stdout; `null`: off'),
    sampleRate: z.number().min(0).max(1).default(1).describe('fraction of commands logged'),
    maxPerSecond: z.number().int().min(1).default(1000).describe('most lines per second; the rest are counted (`mongoplex.access_log.lines{result=rate_limited}`), not written'),
    bufferBytes: z.number().int().min(64 * 1024).default(8 * 1024 * 1024).describe('lines waiting for the disk may hold this much; more are dropped and counted, never waited for'),
  }).prefault({}),
  capture: z.strictObject({
    enabled: z.boolean().default(false).describe('start recording when mongoplex starts (otherwise `POST /capture/start`); needs `capture.dir`'),
    dir: z.string().min(1).nullable().default(null).describe('directory for capture files (created if missing); `null`: captures cannot start'),
    sampleRate: z.number().min(0).max(1).default(1).describe('fraction of client connections recorded — whole connections, so their order, cursors and transactions stay complete'),
    namespaces: z.array(z.string().min(1)).default([]).describe('record only these (`db`, `db.*`, `db.collection`; comma-separated in the environment); empty: all. Commands naming no collection match on their database'),
    redact: z.boolean().default(false).describe('replace values in filters, updates and documents with same-type placeholders (see [Traffic](traffic.md))'),
    compression: z.enum(['zstd', 'none']).default('zstd').describe('`zstd` or `none`'),
    maxFileBytes: z.number().int().min(64 * 1024).default(64 * 1024 * 1024).describe('a new file is started past this size'),
    maxTotalBytes: z.number().int().min(64 * 1024).default(1024 * 1024 * 1024).describe('the capture stops once its files hold this much'),
    maxDurationMs: ms.default(60 * 60_000).describe('the capture stops after this long (`0`: no limit)'),
    queueBytes: z.number().int().min(1024).default(16 * 1024 * 1024).describe('records waiting to be written may hold this much; more are dropped and counted, never waited for'),
  }).prefault({}),
  mirror: z.strictObject({
    target: hostPort.nullable().default(null).describe('shadow server (host:port) that reads are copied to; `null`: no mirroring'),
    fraction: z.number().min(0).max(1).default(1).describe('fraction of eligible reads mirrored (find, count, distinct, aggregate without `$out`/`$merge`; never inside a transaction)'),
    namespaces: z.array(z.string().min(1)).default([]).describe('mirror only these (`db`, `db.*`, `db.collection`); empty: all'),
    poolSize: z.number().int().min(1).max(64).default(2).describe('connections to the shadow (reads in flight there)'),
    maxQueue: z.number().int().min(1).default(1000).describe('reads waiting for the shadow; more are dropped and counted'),
    queueBytes: z.number().int().min(1024).default(16 * 1024 * 1024).describe('bytes those waiting reads may hold (request + the primary\'s reply)'),
    timeoutMs: z.number().int().min(1).default(2000).describe('a shadow read (connect included) not answered in this long is dropped and its connection closed; mirrored reads are then dropped at once for this long'),
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('`fatal` `error` `warn` `info` `debug` `trace` `silent`; JSON logs on stderr'),
    slowMs: ms.default(1000).describe('forwarded commands slower than this are logged at `warn` with the access-log fields (at most 20 lines per 10 s); `0`: never'),
  }).prefault({}),
});

export type Config = z.infer<typeof ConfigSchema>;

/** What a POST /capture/start body may change for that capture (never where files go). */
export const CaptureStartSchema = z.strictObject({
  sampleRate: z.number().min(0).max(1).optional(),
  namespaces: z.array(z.string().min(1)).optional(),
  redact: z.boolean().optional(),
  compression: z.enum(['zstd', 'none']).optional(),
  maxDurationMs: ms.optional(),
  maxTotalBytes: z.number().int().min(64 * 1024).optional(),
});
export type ConfigInput = z.input<typeof ConfigSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A file a setting names (a password, a certificate): unreadable is a ConfigError naming the setting and the reason. */
export function readSettingFile(setting: string, name: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(`${setting}: cannot read ${name} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

const ENV_PREFIX = 'MONGOPLEX_';
/** Set by the primary in each worker's environment: which worker it is (not a setting). */
export const WORKER_INDEX_VARIABLE = 'MONGOPLEX_WORKER_INDEX';

export function envName(path: readonly string[]): string {
  return ENV_PREFIX + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

/** Every leaf setting path, from the schema's defaults. */
function leafPaths(obj: Record<string, unknown>, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(obj)) {
    // A nested section recurses; an empty mapping by default is a map-valued setting (a leaf).
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) out.push(...leafPaths(v as Record<string, unknown>, [...prefix, k]));
    else out.push([...prefix, k]);
  }
  return out;
}

/** Environment variable name → setting path, for documentation and overrides. */
export function environmentVariables(): Map<string, string[]> {
  const defaults = ConfigSchema.parse({}) as unknown as Record<string, unknown>;
  return new Map(leafPaths(defaults).map((p) => [envName(p), p]));
}

function parseEnvValue(raw: string): unknown {
  const t = raw.trim();
  if (t === '') return raw;
  if (t === 'null' || t === 'true' || t === 'false' || /^-?\d+(\.\d+)?$/.test(t) || t.startsWith('[') || t.startsWith('{')) {
    try {
      return JSON.parse(t);
    } catch {
      return raw;
    }
  }
  return raw;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === undefined || next === null || typeof next !== 'object') node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function describeIssues(error: z.ZodError, origin: (path: string) => string): string {
  return error.issues
    .map((i) => {
      const path = i.path.join('.') || '(root)';
      const keys = i.code === 'unrecognized_keys' ? ` ${i.keys.map((k) => (i.path.length ? `${path}.${k}` : k)).join(', ')}` : '';
      return `  ${path}${origin(path)}: ${i.message}${keys}`;
    })
    .join('\n');
}

/**
 * Builds the configuration from an optional file plus environment overrides.
 * Environment values are parsed as JSON when they look like JSON (numbers, booleans, arrays),
 * and as strings otherwise; `MONGOPLEX_UPSTREAM_SERVERS` also takes a comma-separated list.
 */
export type AuthMode = Config['auth']['mode'];
export type ListenerKind = keyof Config['auth']['listeners'];

/** The auth mode of each kind of listener: its own setting, else auth.mode. */
export function listenerAuthModes(cfg: Config): Record<ListenerKind, AuthMode> {
  return { tcp: cfg.auth.listeners.tcp ?? cfg.auth.mode, grpc: cfg.auth.listeners.grpc ?? cfg.auth.mode };
}

/** A configuration error about one setting (the same form as the schema's own errors). */
function invalid(setting: string, why: string): ConfigError {
  return new ConfigError(`invalid configuration:\n  ${setting}: ${why}`);
}

/** Settings upstream.uri fills in, which must then not be set on their own. */
const FROM_URI = [['servers'], ['auth', 'username'], ['auth', 'password'], ['auth', 'passwordFile'], ['auth', 'source'], ['auth', 'mechanism'], ['tls']] as const;

/**
 * upstream.uri → upstream.servers, upstream.auth and upstream.tls. Errors name the setting and
 * what is wrong, never the string itself (it may hold a password).
 */
function applyUpstreamUri(cfg: Config, given: Record<string, unknown>): void {
  const uri = cfg.upstream.uri!;
  const fail = (why: string): never => {
    throw invalid('upstream.uri', why);
  };
  const alsoSet = FROM_URI.filter((p) => p.reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], given) !== undefined).map((p) => `upstream.${p.join('.')}`);
  if (alsoSet.length > 0) fail(`also set: ${alsoSet.join(', ')}; the connection string gives servers, credentials and TLS, so leave those unset`);
  let cs: ConnectionString;
  try {
    cs = new ConnectionString(uri);
  } catch (err) {
    return fail(`not a MongoDB connection string (${(err as Error).message})`);
  }
  if (cs.isSRV) fail('mongodb+srv:// needs DNS SRV lookups mongoplex does not make; list the hosts (mongodb://host1:27017,host2:27017/)');
  const servers = cs.hosts.map((h) => (/:\d+$/.test(h) ? h : `${h}:27017`));
  if (!z.array(hostPort).min(1).safeParse(servers).success) fail('its hosts must each be host or host:port');
  const option = (name: string): string | undefined => {
    for (const [k, v] of cs.searchParams) if (k.toLowerCase() === name.toLowerCase()) return v;
    return undefined;
  };
  const flag = (name: string): boolean | undefined => {
    const v = option(name);
    if (v === undefined) return undefined;
    if (v !== 'true' && v !== 'false') fail(`${name} must be true or false`);
    return v === 'true';
  };
  const username = cs.username ? decodeURIComponent(cs.username) : null;
  const mechanism = option('authMechanism') ?? 'DEFAULT';
  if (mechanism !== 'DEFAULT' && mechanism !== 'SCRAM-SHA-1' && mechanism !== 'SCRAM-SHA-256') fail(`authMechanism ${mechanism} is not supported upstream (SCRAM-SHA-256, SCRAM-SHA-1 or DEFAULT)`);
  if (username === null && cs.password) fail('has a password but no user name');
  if (username !== null && !cs.password) fail(`names user "${username}" without a password`);
  const db = cs.pathname.replace(/^\//, '');
  cfg.upstream.servers = servers;
  cfg.upstream.auth = {
    username,
    password: username === null ? null : decodeURIComponent(cs.password),
    passwordFile: null,
    source: option('authSource') ?? (db || 'admin'),
    mechanism: mechanism as Config['upstream']['auth']['mechanism'],
  };
  const certificateKey = option('tlsCertificateKeyFile') ?? null;
  cfg.upstream.tls = {
    enabled: (flag('tls') ?? flag('ssl') ?? false) || certificateKey !== null || option('tlsCAFile') !== undefined,
    caFile: option('tlsCAFile') ?? null,
    certFile: certificateKey,
    keyFile: certificateKey,
    allowInvalidHostnames: flag('tlsAllowInvalidHostnames') ?? false,
  };
}

export function loadConfig(options: { file?: string | undefined; env?: NodeJS.ProcessEnv; overrides?: ConfigInput } = {}): Config {
  const env = options.env ?? process.env;
  let raw: Record<string, unknown> = {};
  if (options.file) {
    let text: string;
    try {
      text = readFileSync(options.file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${options.file}: ${(err as Error).message}`);
    }
    try {
      raw = (parseYaml(text) as Record<string, unknown> | null) ?? {};
    } catch (err) {
      throw new ConfigError(`config file ${options.file} is not valid YAML: ${(err as Error).message}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config file ${options.file} must hold a mapping`);
  }
  if (options.overrides) raw = mergeDeep(raw, options.overrides as Record<string, unknown>);
  const known = environmentVariables();
  const fromEnv = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue;
    if (name === 'MONGOPLEX_CONFIG' || name === WORKER_INDEX_VARIABLE) continue;
    const path = known.get(name);
    if (!path) throw new ConfigError(`unknown environment setting ${name} (known: ${[...known.keys()].join(', ')})`);
    let parsed = parseEnvValue(value);
    if (name === 'MONGOPLEX_UPSTREAM_SERVERS' && typeof parsed === 'string') parsed = parsed.split(',').map((s) => s.trim()).filter(Boolean);
    if (/(COMPRESSORS|NAMESPACES)$/.test(name) && typeof parsed === 'string') parsed = parsed.split(',').map((s) => s.trim()).filter(Boolean);
    setPath(raw, path, parsed);
    fromEnv.set(path.join('.'), name);
  }
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const origin = (p: string): string => {
      const e = fromEnv.get(p);
      return e ? ` (from ${e})` : options.file ? ` (in ${options.file})` : '';
    };
    throw new ConfigError(`invalid configuration:\n${describeIssues(result.error, origin)}`);
  }
  const cfg = result.data;
  if (cfg.upstream.uri !== null) applyUpstreamUri(cfg, raw.upstream as Record<string, unknown>);
  if (cfg.client.maxTotalBufferedBytes < cfg.client.maxMessageSizeBytes) {
    throw invalid('client.maxTotalBufferedBytes', 'must be at least client.maxMessageSizeBytes');
  }
  if (cfg.capture.enabled && !cfg.capture.dir) {
    throw invalid('capture.enabled', 'needs capture.dir (where capture files go)');
  }
  const ua = cfg.upstream.auth;
  if (ua.username !== null && (ua.password === null) === (ua.passwordFile === null)) {
    throw invalid('upstream.auth', 'with a username, set exactly one of upstream.auth.password and upstream.auth.passwordFile');
  }
  if (ua.username === null && (ua.password !== null || ua.passwordFile !== null)) {
    throw invalid('upstream.auth.username', 'needed with a password');
  }
  const modes = new Set(Object.values(listenerAuthModes(cfg)));
  if (modes.has('passthrough') && cfg.auth.userSource !== 'upstream') {
    throw invalid('auth.userSource', "auth.mode passthrough logs users in upstream with keys that fit only the server's own salts; set auth.userSource upstream");
  }
  if (modes.has('passthrough') && cfg.auth.passthrough.maxPoolSizePerUser > cfg.auth.passthrough.maxConnections) {
    throw invalid('auth.passthrough.maxPoolSizePerUser', 'must not exceed auth.passthrough.maxConnections');
  }
  if (modes.has('proxy') && cfg.auth.userSource === 'file' && !cfg.auth.usersFile) {
    throw invalid('auth.usersFile', 'auth.mode proxy verifies clients against it (create it with `mongoplex users add`), or set auth.userSource upstream');
  }
  if ((modes.has('proxy') || modes.has('passthrough')) && cfg.auth.userSource === 'upstream' && ua.username === null) {
    throw invalid('auth.userSource', 'upstream asks the server for users\' secrets as upstream.auth.username; set it');
  }
  const pairs: Array<[string, { certFile: string | null; keyFile: string | null }]> = [['listen.tls', cfg.listen.tls], ['listen.grpcTls', cfg.listen.grpcTls], ['upstream.tls', cfg.upstream.tls]];
  for (const [name, t] of pairs) {
    if ((t.certFile === null) !== (t.keyFile === null)) throw invalid(name, 'set both certFile and keyFile, or neither');
  }
  if (cfg.listen.tls.certFile === null && (cfg.listen.tls.caFile !== null || cfg.listen.tls.requireClientCert)) {
    throw invalid('listen.tls', 'caFile and requireClientCert need certFile and keyFile (TLS is on when certFile is set)');
  }
  if (cfg.listen.tls.requireClientCert && cfg.listen.tls.caFile === null) {
    throw invalid('listen.tls.requireClientCert', 'needs listen.tls.caFile (the CA client certificates are verified against)');
  }
  if (cfg.listen.grpcTls.certFile !== null && cfg.listen.grpcTls.caFile === null) {
    throw invalid('listen.grpcTls.caFile', 'the gRPC ingress\'s TLS is mutual; set the CA that Envoy\'s client certificate is signed by');
  }
  const ut = cfg.upstream.tls;
  if (!ut.enabled && (ut.caFile !== null || ut.certFile !== null || ut.allowInvalidHostnames)) {
    throw invalid('upstream.tls.enabled', 'the other upstream.tls settings need it');
  }
  if (ut.enabled && cfg.upstream.via !== null) {
    throw invalid('upstream.tls.enabled', 'with upstream.via, the Envoy egress originates TLS to the servers (mongoplex envoy-config --upstream-tls --upstream-ca FILE); mongoplex dials Envoy in plain TCP');
  }
  if (cfg.upstream.minPoolSize > cfg.upstream.maxPoolSize) {
    throw invalid('upstream.minPoolSize', 'must not exceed upstream.maxPoolSize');
  }
  return cfg;
}

function mergeDeep(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)) {
      out[k] = mergeDeep(cur as Record<string, unknown>, v as Record<string, unknown>);
    } else out[k] = v;
  }
  return out;
}
