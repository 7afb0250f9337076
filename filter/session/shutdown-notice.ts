/**
 * The step of a drain in which drivers are asked to leave on their own, so that no request
 * races a connection the proxy closes. A driver's monitor sends `hello` on its own connection
 * every heartbeat (10 s by default; the proxy serves no awaitable hello); answering that
 * heartbeat with ShutdownInProgress (91) is what a mongod that is shutting down does, and the
 * driver reacts as the SDAM specification says: it marks the server Unknown and clears its
 * pool, closing idle connections at once and busy ones when their request is answered, then
 * reconnects (through the load balancer, to another mongoplex). Requests already sent are
 * answered normally.
 *
 * Clients in load-balanced mode have no monitor: their next retryable command gets the same
 * error with the labels a server would add, so the driver clears its pool and retries it.
 */
export class ShutdownNotice {
  /** Heartbeats (and load-balanced clients' retryable commands) are answered with ShutdownInProgress. */
  given = false;
}

export const SHUTDOWN_MESSAGE = 'mongoplex is shutting down; reconnect to reach another instance';
