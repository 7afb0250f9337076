import type { Document } from 'bson';
import { connectionStatusReply } from '../auth/client-auth';
import { ErrorCode, type KnownError } from '../wire/errors';

/**
 * Commands whose meaning depends on "which connection" and that the proxy therefore handles
 * itself instead of forwarding to whichever pooled connection is free. (getLastError is pinned
 * instead: see last-error-pin.ts; hello/isMaster are answered by the topology presentation.)
 */
export type ConnectionScoped =
  | { readonly kind: 'answer'; readonly reply: (client: { remote: string }) => Document }
  | { readonly kind: 'refuse'; readonly error: KnownError; readonly message: string };

const AUTH_REFUSAL = 'mongoplex runs with auth.mode none: clients do not log in (they share its upstream identity); connect without credentials, or set auth.mode proxy with an auth.usersFile';

const HANDLING: ReadonlyMap<string, ConnectionScoped> = new Map<string, ConnectionScoped>([
  // Authentication is connection state: a pooled connection cannot carry one client's identity.
  ...['saslstart', 'saslcontinue', 'authenticate', 'getnonce', 'logout'].map((n): [string, ConnectionScoped] =>
    [n, { kind: 'refuse', error: ErrorCode.AuthenticationFailed, message: AUTH_REFUSAL }]),
  // The client's own connection is to the proxy: answer about that one.
  ['whatsmyuri', { kind: 'answer', reply: (c) => ({ you: c.remote, ok: 1 }) }],
  ['connectionstatus', { kind: 'answer', reply: () => connectionStatusReply() }],
  // Upstream, these would end every client's sessions (they all share the proxy's identity).
  ...['killallsessions', 'killallsessionsbypattern'].map((n): [string, ConnectionScoped] =>
    [n, { kind: 'refuse', error: ErrorCode.Unauthorized, message: `mongoplex refuses ${n}: on a shared upstream connection it would end every client's sessions; use killSessions with your own session ids` }]),
]);

export function connectionScopedHandling(commandName: string): ConnectionScoped | undefined {
  return HANDLING.get(commandName.toLowerCase());
}
