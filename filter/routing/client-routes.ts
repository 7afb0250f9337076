import type { Logger } from '../log';
import type { ServerSet } from '../topology/server-set';
import type { ServerAddress } from '../upstream/address';
import type { UserLease } from '../auth/user-pools';
import { ClientResources } from './client-resources';
import { LastErrorPin, type LastErrorPins } from './last-error-pin';

/**
 * What routing remembers about one client connection: the member it dialled (replset mode),
 * the connection its last unacknowledged write ran on (for getLastError), and, for a
 * load-balanced client, the cursors and transactions that must die with it.
 */
export class ClientRoutes {
  readonly lastError: LastErrorPin;
  private resources: ClientResources | undefined;
  private identity: { readonly user: string | undefined; readonly lease: UserLease | undefined } = { user: undefined, lease: undefined };

  /**
   * `member`: in replset mode, the member whose proxy address this client connected to;
   * undefined when the proxy presents a single mongos.
   */
  constructor(readonly member: ServerAddress | undefined, lastErrorPinMs: number, pins: LastErrorPins) {
    this.lastError = new LastErrorPin(lastErrorPinMs, pins);
  }

  /**
   * auth.mode proxy and passthrough: who the client is logged in as (`db.user`), undefined
   * before a login. Cursors remember it: another user's getMore/killCursors on them is refused.
   */
  get user(): string | undefined {
    return this.identity.user;
  }

  /** auth.mode passthrough: the logged-in user's own pools (undefined: the shared ones). */
  get lease(): UserLease | undefined {
    return this.identity.lease;
  }

  /** The client logged in (or out): routing follows, and the previous user's pools are let go. */
  logIn(user: string | undefined, lease: UserLease | undefined): void {
    this.identity.lease?.release();
    this.identity = { user, lease };
  }

  /** Set by a hello with `loadBalanced: true`: the client expects its cursors and transactions to die with it. */
  get loadBalanced(): ClientResources | undefined {
    return this.resources;
  }

  becomeLoadBalanced(): void {
    this.resources ??= new ClientResources();
  }

  /** The client is gone: give back what routing held for it, and clean up what it left open upstream. */
  close(servers: ServerSet, log: Logger): void {
    this.lastError.close();
    // A passthrough user's cursors and transactions are cleaned up as that user, on its pools.
    const lease = this.identity.lease;
    const cleanup = this.resources ? this.resources.release(lease?.servers ?? servers, log) : Promise.resolve();
    void cleanup.finally(() => lease?.release());
  }
}
