import type { Logger } from '../log';
import type { ServerSet } from '../topology/server-set';
import type { ServerAddress } from '../upstream/address';
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
  /**
   * auth.mode proxy: who the client is logged in as (`db.user`), undefined before a login.
   * Cursors remember it: another user's getMore/killCursors on them is refused.
   */
  user: string | undefined;

  /**
   * `member`: in replset mode, the member whose proxy address this client connected to;
   * undefined when the proxy presents a single mongos.
   */
  constructor(readonly member: ServerAddress | undefined, lastErrorPinMs: number, pins: LastErrorPins) {
    this.lastError = new LastErrorPin(lastErrorPinMs, pins);
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
    if (this.resources) void this.resources.release(servers, log);
  }
}
