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
  /**
   * Processes serving clients: auto (the number of cores) or a number. With more than one, a
   * primary process forks them: they share the TCP ingress port, worker i serves the ext_proc
   * ingress on listen.grpc's port + i (a Unix socket: its path + `.i`, worker 0 the path itself),
   * each pools its share of the upstream limits, and the admin endpoint adds them up. More than
   * one needs topology.mode single and auth.mode none on every listener (cursor routes,
   * transaction pins and session and cursor owners are per process); auto then means 1.
   */
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto'),
  listen: z.strictObject({
    /** Address of the plain TCP ingress (clients or Envoy tcp_proxy connect here). */
    host: z.string().min(1).default('127.0.0.1'),
    /** Port of the plain TCP ingress; null disables it (ext_proc only). */
    port: port.nullable().default(27016),
    /**
     * TLS for the TCP ingress (and replset mode's member listeners): on when certFile is set.
     * The files are re-read when they change, for new connections.
     */
    tls: z.strictObject({
      /** PEM certificate chain the proxy presents. */
      certFile: file,
      keyFile: file,
      /** PEM CA certificates that client certificates are verified against. */
      caFile: file,
      /** Refuse clients without a certificate signed by caFile. */
      requireClientCert: z.boolean().default(false),
    }).prefault({}),
    /**
     * Envoy network ext_proc gRPC ingress: host:port or unix:/path (a Unix domain socket, Envoy's
     * `pipe` address), or null to disable it. A non-loopback host:port needs listen.grpcTls.
     */
    grpc: grpcAddress.nullable().default(null),
    /** Mutual TLS on the gRPC ingress: on when certFile is set; Envoy must present a certificate signed by caFile. */
    grpcTls: z.strictObject({
      certFile: file,
      keyFile: file,
      caFile: file,
    }).prefault({}),
    /** Each ext_proc reply tells Envoy the db, collection and command it answers, as dynamic metadata `mongoplex` (Envoy access logs, RBAC). */
    grpcDynamicMetadata: z.boolean().default(false),
    /** Most client connections served at once; more are closed on accept and counted. */
    maxClientConnections: z.number().int().min(1).default(20000),
    /** On SIGTERM/SIGINT: how long clients get to receive the replies to what they sent before the rest are closed. */
    drainTimeoutMs: ms.default(25_000),
    /**
     * On SIGTERM/SIGINT/POST /drain: /readyz fails at once, but new clients are still accepted
     * for this long, so load balancers (Envoy's health check) stop sending them first.
     */
    drainDelayMs: ms.default(0),
    /**
     * Then, before closing clients: how long drivers get to leave on their own. Their monitor's
     * next hello (every heartbeatFrequencyMS, 10 s by default) is answered with
     * ShutdownInProgress, so the driver closes its connections itself once their requests are
     * answered and reconnects elsewhere. 0: close clients between requests at once.
     */
    drainNoticeMs: ms.default(12_000),
  }).prefault({}),
  upstream: z.strictObject({
    /** The MongoDB server(s) to pool connections to, as host:port. */
    servers: z.array(hostPort).min(1).default(['127.0.0.1:27017']),
    /**
     * A MongoDB connection string instead of upstream.servers / upstream.auth / upstream.tls:
     * hosts, `user:password@`, authSource, authMechanism, tls, tlsCAFile,
     * tlsCertificateKeyFile, tlsAllowInvalidHostnames (other options are the driver's and are
     * ignored). A secret: it is never logged or shown.
     */
    uri: z.string().min(1).nullable().default(null),
    /** The identity pooled and monitor connections log in as (SCRAM); without a username they do not log in. */
    auth: z.strictObject({
      username: z.string().min(1).nullable().default(null),
      /** Prefer passwordFile (or the environment): a password in the config file is readable by whoever reads the file. */
      password: z.string().min(1).nullable().default(null),
      /** A file holding the password (trailing newline ignored), e.g. a mounted secret. */
      passwordFile: z.string().min(1).nullable().default(null),
      /** The database the user is defined in (authSource). */
      source: z.string().min(1).default('admin'),
      /** DEFAULT: SCRAM-SHA-256 when the server offers it for the user, else SCRAM-SHA-1. */
      mechanism: z.enum(['DEFAULT', 'SCRAM-SHA-256', 'SCRAM-SHA-1']).default('DEFAULT'),
    }).prefault({}),
    maxPoolSize: z.number().int().min(1).default(16),
    minPoolSize: z.number().int().min(0).default(0),
    /** Connections being opened at once per server (absorbs connection storms). */
    maxConnecting: z.number().int().min(1).default(2),
    /** Close a pooled connection idle this long (0: never). */
    maxIdleTimeMs: ms.default(60_000),
    /** A request waiting longer than this for a pooled connection gets an error reply. */
    waitQueueTimeoutMs: ms.default(10_000),
    /** Requests allowed to wait for a pooled connection per server; more are refused at once. */
    maxWaitQueueSize: z.number().int().min(1).default(50_000),
    connectTimeoutMs: z.number().int().min(1).default(10_000),
    /** A forwarded request with no reply after this long gets NetworkTimeout and its connection is discarded (0: wait as long as the server takes, as drivers do). */
    socketTimeoutMs: ms.default(0),
    /** A command with maxTimeMS gets MaxTimeMSExpired from the proxy when the server has not answered by maxTimeMS plus this (a stalled server). */
    maxTimeGraceMs: ms.default(2000),
    /** Dial pooled connections through this Envoy egress listener (host:port), naming the server with PROXY protocol v2; null dials directly. */
    via: hostPort.nullable().default(null),
    /** Compressors offered to upstream servers (empty: none). */
    compressors: z.array(z.enum(COMPRESSOR_NAMES)).default([]),
    /** TLS to the servers, dialled by mongoplex (with upstream.via, the Envoy egress originates TLS instead: `mongoplex envoy-config --upstream-tls`). */
    tls: z.strictObject({
      enabled: z.boolean().default(false),
      /** PEM CA certificates the servers' certificates are verified against (default: Node's bundled CAs). */
      caFile: file,
      /** A client certificate and key to present (servers that require one). */
      certFile: file,
      keyFile: file,
      /** Skip the check that a server's certificate names the host dialled (the chain is still verified). */
      allowInvalidHostnames: z.boolean().default(false),
    }).prefault({}),
    appName: z.string().default('mongoplex'),
  }).prefault({}),
  client: z.strictObject({
    /** Compressors the proxy accepts from clients, in order of preference. */
    compressors: z.array(z.enum(COMPRESSOR_NAMES)).default(['snappy', 'zstd', 'zlib']),
    /** Largest message accepted in either direction. */
    maxMessageSizeBytes: z.number().int().min(1024).max(MAX_MESSAGE_SIZE_BYTES).default(MAX_MESSAGE_SIZE_BYTES),
    /** Bytes read from one client but not yet processed before its socket is paused. */
    maxBufferedBytes: z.number().int().min(1024).default(64 * 1024 * 1024),
    /** Client input all clients together may hold (queued messages + messages arriving, at their declared size); a message that would overrun it is refused. */
    maxTotalBufferedBytes: z.number().int().min(1024 * 1024).default(512 * 1024 * 1024),
    /** A message must arrive in full within this long of its first byte, else the client is closed (0: no limit). */
    readTimeoutMs: ms.default(60_000),
    /** Requests read from one client and not yet answered (pipelining bound). */
    maxPendingRequests: z.number().int().min(1).default(64),
    /**
     * Envoy ext_proc clients: reply bytes injected since the client last sent anything. Envoy
     * buffers every injected byte the client does not read (ext_proc has no backpressure), so
     * a client that pipelines requests and stops reading is reset (reason `unread_replies`)
     * beyond this, or beyond `maxPendingRequests` replies; a single reply always goes out.
     */
    maxUnreadReplyBytes: z.number().int().min(1024 * 1024).default(64 * 1024 * 1024),
    /** How long an unacknowledged write keeps its upstream connection for a following getLastError. */
    lastErrorPinMs: z.number().int().min(1).default(5000),
    /** Close a client connection idle this long (0: never). */
    idleTimeoutMs: ms.default(0),
  }).prefault({}),
  topology: z.strictObject({
    /**
     * single: one upstream server behind one address, presented as a mongos (a standalone
     * over a standalone: hello promises no more than the server has);
     * mongos: one address presented as a mongos; the proxy monitors the upstream (a replica
     * set or a fleet of mongos) and selects servers from $readPreference, pinning transactions;
     * replset: one proxy address per replica-set member, hello rewritten (listen.port unused).
     */
    mode: z.enum(['single', 'mongos', 'replset']).default('single'),
    /** How often each upstream server is checked over its own monitoring connection (every mode: readiness uses it). */
    heartbeatMs: z.number().int().min(100).default(2000),
    /** The host clients are told to dial for each member's proxy address. */
    advertiseHost: z.string().min(1).default('127.0.0.1'),
    /** Ports for the members' proxy addresses, [first, last], in discovery order; [0, 0]: any free port. */
    memberPorts: z.tuple([port, port]).default([27017, 27031]),
    /**
     * Members advertised at fixed addresses instead of proxy ports: real host:port → the address
     * clients are told (e.g. the Envoy listener whose ext_proc metadata names that member).
     */
    advertise: z.record(hostPort, hostPort).default({}),
  }).prefault({}),
  cursors: z.strictObject({
    /** Cursor routes remembered at once (cursor id + namespace → server); the oldest is evicted. */
    maxRoutes: z.number().int().min(1).default(100_000),
    /** A cursor route unused this long is forgotten (mongod's own cursor timeout is 10 min). */
    idleTtlMs: z.number().int().min(1000).default(15 * 60_000),
  }).prefault({}),
  transactions: z.strictObject({
    /** Transactions pinned to a server at once (lsid → server, mongos mode); the oldest is evicted. */
    maxPins: z.number().int().min(1).default(100_000),
    /** A pin unused this long is dropped (mongod aborts a transaction after transactionLifetimeLimitSeconds, 60 s by default). */
    idleTimeoutMs: z.number().int().min(1000).default(2 * 60_000),
  }).prefault({}),
  readiness: z.strictObject({
    /** What /readyz needs from the upstream: a writable server (primary, mongos or standalone) or any server that answers. */
    requires: z.enum(['writable', 'reachable']).default('writable'),
    /** A pool counts as saturated while a request has waited this long for one of its connections. */
    maxCheckoutWaitMs: z.number().int().min(1).default(5000),
    /** /readyz fails once a pool has stayed saturated this long without a break. */
    saturatedForMs: ms.default(10_000),
  }).prefault({}),
  auth: z.strictObject({
    /**
     * none: clients are not authenticated and share the proxy's upstream identity (for an
     * isolated network only; said loudly at start). proxy: clients log in to mongoplex with
     * SCRAM-SHA-256/SCRAM-SHA-1 (secrets from auth.userSource); upstream connections use
     * upstream.auth. passthrough: clients log in the same way, and each user gets its own upstream
     * pools, logged in as that user with the key recovered from its proof (needs auth.userSource
     * upstream): the server enforces each user's roles, and mongoplex holds no password.
     */
    mode: authMode.default('none'),
    /**
     * Where auth.mode proxy and passthrough find users' SCRAM secrets. file: auth.usersFile. upstream: the
     * server, asked with usersInfo showCredentials as upstream.auth's user (needs a role that
     * may view users' credentials), answers cached.
     */
    userSource: z.enum(['file', 'upstream']).default('file'),
    /** JSON file of users' SCRAM secrets, as `mongoplex users add` writes it; re-read when it changes. */
    usersFile: z.string().min(1).nullable().default(null),
    /** userSource upstream: how long a user's secrets are used before the server is asked again (a user that does not exist: at most 5 s). */
    cacheTtlMs: z.number().int().min(1).default(60_000),
    /** userSource upstream: users whose secrets are cached at once; the oldest is dropped first. */
    cacheMaxUsers: z.number().int().min(1).default(10_000),
    /** Logical sessions whose owning user is remembered (a session is refused to other users); the least recently used is forgotten first. */
    maxSessions: z.number().int().min(1).default(100_000),
    /** auth.mode for one kind of listener (null: auth.mode). tcp: the TCP ingress and replica-set member listeners; grpc: the ext_proc ingress (Envoy). */
    listeners: z.strictObject({
      tcp: authMode.nullable().default(null),
      grpc: authMode.nullable().default(null),
    }).prefault({}),
    passthrough: z.strictObject({
      /** Upstream connections one user may hold to one server. */
      maxPoolSizePerUser: z.number().int().min(1).default(4),
      /** Upstream connections all users' pools may hold together; idle ones of other users are closed to make room. */
      maxConnections: z.number().int().min(1).default(64),
    }).prefault({}),
  }).prefault({}),
  admin: z.strictObject({
    /** HTTP admin endpoint (status page, /metrics, /stats, inspection and control); port 0 picks a free port, null disables it. */
    host: z.string().default('127.0.0.1'),
    port: port.nullable().default(null),
    /** Bearer token the control endpoints (POST /pause, /resume, /drain, /reload, /capture/…) require; without one they are served only on a loopback admin address. */
    token: z.string().min(16, 'use at least 16 characters').nullable().default(null),
    /** A pause (POST /pause) ends by itself after this long unless the request says less. */
    maxPauseMs: z.number().int().min(1).default(5 * 60_000),
  }).prefault({}),
  stats: z.strictObject({
    /** Per-db/collection/command and per-callsite statistics (/stats, /metrics). */
    enabled: z.boolean().default(true),
    /** Rows of (db, collection, command) kept; further combinations share one `_other` row. */
    maxEntries: z.number().int().min(1).default(1000),
    /** Rows of (callsite, command) kept (callsites come from a command's comment); the rest share `_other`. */
    maxCallsites: z.number().int().min(1).default(200),
  }).prefault({}),
  accessLog: z.strictObject({
    /** JSON-lines access log of forwarded commands: a file path, `-` for stdout, null: off. */
    path: z.string().min(1).nullable().default(null),
    /** Fraction of commands logged. */
    sampleRate: z.number().min(0).max(1).default(1),
    /** Most lines per second; more are counted (mongoplex.access_log.lines{result=rate_limited}), not written. */
    maxPerSecond: z.number().int().min(1).default(1000),
    /** Lines waiting to be written may hold this many bytes; more are dropped and counted. */
    bufferBytes: z.number().int().min(64 * 1024).default(8 * 1024 * 1024),
  }).prefault({}),
  capture: z.strictObject({
    /** Start recording forwarded commands when mongoplex starts (else: POST /capture/start). */
    enabled: z.boolean().default(false),
    /** Directory for capture files; null: captures cannot start. */
    dir: z.string().min(1).nullable().default(null),
    /** Fraction of client connections recorded, whole connections at a time. */
    sampleRate: z.number().min(0).max(1).default(1),
    /** Only these namespaces (`db`, `db.*`, `db.collection`); empty: all. */
    namespaces: z.array(z.string().min(1)).default([]),
    /** Replace values in filters and documents with type-preserving placeholders. */
    redact: z.boolean().default(false),
    compression: z.enum(['zstd', 'none']).default('zstd'),
    /** Start a new file past this size. */
    maxFileBytes: z.number().int().min(64 * 1024).default(64 * 1024 * 1024),
    /** Stop the capture once its files hold this much. */
    maxTotalBytes: z.number().int().min(64 * 1024).default(1024 * 1024 * 1024),
    /** Stop the capture after this long (0: no limit). */
    maxDurationMs: ms.default(60 * 60_000),
    /** Records waiting to be written may hold this many bytes; more are dropped and counted. */
    queueBytes: z.number().int().min(1024).default(16 * 1024 * 1024),
  }).prefault({}),
  mirror: z.strictObject({
    /** Shadow server (host:port) that a fraction of reads is copied to; null: no mirroring. */
    target: hostPort.nullable().default(null),
    /** Fraction of eligible reads (find, aggregate without $out/$merge, count, distinct; not in transactions) mirrored. */
    fraction: z.number().min(0).max(1).default(1),
    /** Only these namespaces (`db`, `db.*`, `db.collection`); empty: all. */
    namespaces: z.array(z.string().min(1)).default([]),
    /** Connections to the shadow server (reads in flight there). */
    poolSize: z.number().int().min(1).max(64).default(2),
    /** Reads waiting for the shadow; more are dropped and counted. */
    maxQueue: z.number().int().min(1).default(1000),
    /** Bytes those waiting reads may hold (request + primary reply). */
    queueBytes: z.number().int().min(1024).default(16 * 1024 * 1024),
    /** A shadow read not answered in this long is dropped and its connection closed. */
    timeoutMs: z.number().int().min(1).default(2000),
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Forwarded commands slower than this are logged at warn (rate-limited); 0: never. */
    slowMs: ms.default(1000),
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

function envName(path: readonly string[]): string {
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
