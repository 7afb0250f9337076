import { z } from 'zod';
import { authMode, invalid } from './kit';

/** Client authentication: who may connect, against which secrets, with which upstream identity. */

export const auth = z.strictObject({
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
}).prefault({});

type Auth = z.infer<typeof auth>;
export type AuthMode = Auth['mode'];
export type ListenerKind = keyof Auth['listeners'];

/** The auth mode of each kind of listener: its own setting, else auth.mode. */
export function listenerAuthModes(cfg: { auth: Auth }): Record<ListenerKind, AuthMode> {
  return { tcp: cfg.auth.listeners.tcp ?? cfg.auth.mode, grpc: cfg.auth.listeners.grpc ?? cfg.auth.mode };
}

/** What the listeners' auth modes need: a source of users' secrets, and an identity to ask the server with. */
export function checkAuth(a: Auth, upstreamUser: string | null): void {
  const modes = new Set(Object.values(listenerAuthModes({ auth: a })));
  if (modes.has('passthrough') && a.userSource !== 'upstream') {
    throw invalid('auth.userSource', "auth.mode passthrough logs users in upstream with keys that fit only the server's own salts; set auth.userSource upstream");
  }
  if (modes.has('passthrough') && a.passthrough.maxPoolSizePerUser > a.passthrough.maxConnections) {
    throw invalid('auth.passthrough.maxPoolSizePerUser', 'must not exceed auth.passthrough.maxConnections');
  }
  if (modes.has('proxy') && a.userSource === 'file' && !a.usersFile) {
    throw invalid('auth.usersFile', 'auth.mode proxy verifies clients against it (create it with `mongoplex users add`), or set auth.userSource upstream');
  }
  if ((modes.has('proxy') || modes.has('passthrough')) && a.userSource === 'upstream' && upstreamUser === null) {
    throw invalid('auth.userSource', 'upstream asks the server for users\' secrets as upstream.auth.username; set it');
  }
}
