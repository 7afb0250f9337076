import { ConnectionString } from 'mongodb-connection-string-url';
import { z } from 'zod';
import { COMPRESSOR_NAMES } from '../wire/compression';
import { checkCertificatePair, file, hostPort, invalid, ms } from './kit';

/** The MongoDB servers pooled to: addresses, pool limits and deadlines, mongoplex's own login and TLS. */

export const upstream = z.strictObject({
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
}).prefault({});

type Upstream = z.infer<typeof upstream>;

/** Settings upstream.uri fills in, which must then not be set on their own. */
const FROM_URI = [['servers'], ['auth', 'username'], ['auth', 'password'], ['auth', 'passwordFile'], ['auth', 'source'], ['auth', 'mechanism'], ['tls']] as const;

/**
 * upstream.uri → upstream.servers, upstream.auth and upstream.tls. Errors name the setting and
 * what is wrong, never the string itself (it may hold a password).
 */
export function applyUpstreamUri(u: Upstream, given: Record<string, unknown> | undefined): void {
  const uri = u.uri!;
  const fail = (why: string): never => {
    throw invalid('upstream.uri', why);
  };
  const alsoSet = FROM_URI.filter((p) => p.reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], given ?? {}) !== undefined).map((p) => `upstream.${p.join('.')}`);
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
  u.servers = servers;
  u.auth = {
    username,
    password: username === null ? null : decodeURIComponent(cs.password),
    passwordFile: null,
    source: option('authSource') ?? (db || 'admin'),
    mechanism: mechanism as Upstream['auth']['mechanism'],
  };
  const certificateKey = option('tlsCertificateKeyFile') ?? null;
  u.tls = {
    enabled: (flag('tls') ?? flag('ssl') ?? false) || certificateKey !== null || option('tlsCAFile') !== undefined,
    caFile: option('tlsCAFile') ?? null,
    certFile: certificateKey,
    keyFile: certificateKey,
    allowInvalidHostnames: flag('tlsAllowInvalidHostnames') ?? false,
  };
}

/** The upstream settings that only make sense together. */
export function checkUpstream(u: Upstream): void {
  const ua = u.auth;
  if (ua.username !== null && (ua.password === null) === (ua.passwordFile === null)) {
    throw invalid('upstream.auth', 'with a username, set exactly one of upstream.auth.password and upstream.auth.passwordFile');
  }
  if (ua.username === null && (ua.password !== null || ua.passwordFile !== null)) {
    throw invalid('upstream.auth.username', 'needed with a password');
  }
  checkCertificatePair('upstream.tls', u.tls);
  const ut = u.tls;
  if (!ut.enabled && (ut.caFile !== null || ut.certFile !== null || ut.allowInvalidHostnames)) {
    throw invalid('upstream.tls.enabled', 'the other upstream.tls settings need it');
  }
  if (ut.enabled && u.via !== null) {
    throw invalid('upstream.tls.enabled', 'with upstream.via, the Envoy egress originates TLS to the servers (mongoplex envoy-config --upstream-tls --upstream-ca FILE); mongoplex dials Envoy in plain TCP');
  }
  if (u.minPoolSize > u.maxPoolSize) {
    throw invalid('upstream.minPoolSize', 'must not exceed upstream.maxPoolSize');
  }
}
