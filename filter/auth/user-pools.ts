import type { Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import type { ServerSet } from '../topology/server-set';
import { ConnectionBudget } from '../upstream/connection-budget';
import { UpstreamAuthError } from '../upstream/connection';
import type { PoolStats } from '../upstream/pool';
import type { ScramMechanism, ScramSecret } from '../wire/scram';
import { userKey } from './users';

/** A client's login, as passthrough needs it: the user and the ClientKey recovered from its proof. */
export interface PassthroughLogin {
  readonly user: string;
  readonly db: string;
  readonly mechanism: ScramMechanism;
  readonly secret: ScramSecret;
  readonly clientKey: Buffer;
}

export interface PassthroughLimits {
  /** Connections one user may hold to one server. */
  readonly maxPoolSizePerUser: number;
  /** Connections all users' pools may hold together (all servers). */
  readonly maxConnections: number;
}

/** One client's hold on its user's pools; released when the client logs out, logs in again or leaves. */
export interface UserLease {
  readonly servers: ServerSet;
  /** The user's secret changed, or the server refused it: the client must log in again. */
  readonly revoked: boolean;
  release(): void;
}

interface Entry {
  /** `db.user`, as /pools shows it. */
  readonly user: string;
  readonly servers: ServerSet;
  /** Which secret the pools log in with: a login checked against another one replaces them. */
  readonly secretTag: string;
  leases: number;
  revoked: boolean;
}

const tagOf = (s: ScramSecret): string => `${s.iterationCount}:${s.salt.toString('base64')}:${s.storedKey.toString('base64')}`;

/**
 * auth.mode passthrough: upstream pools per (user, mechanism), each connection logged in as
 * that user with the ClientKey recovered from the user's own proof, so the server enforces the
 * user's roles and mongoplex never holds a password. Two users never share a connection.
 *
 * Bounds: `maxPoolSizePerUser` per user and server; `maxConnections` across every user (idle
 * connections of other users are closed to make room, see ConnectionBudget); a user's pools are
 * dropped once no client holds them and their connections have been reaped. A login checked
 * against a new secret closes the pools made with the old one, and a server that refuses a
 * pool's login closes them too (the user's cached secret is dropped, so the next login asks the
 * server); the clients holding them are told to log in again (ReauthenticationRequired).
 */
export class UserPools {
  private readonly entries = new Map<string, Entry>();
  readonly budget: ConnectionBudget;

  constructor(
    private readonly base: ServerSet,
    private readonly limits: PassthroughLimits,
    /** The server refused a user's keys: forget the user's cached secret. */
    private readonly forgetSecret: (db: string, user: string) => void,
    private readonly log: Logger,
  ) {
    this.budget = new ConnectionBudget(limits.maxConnections);
  }

  get size(): number {
    return this.entries.size;
  }

  lease(login: PassthroughLogin): UserLease {
    const key = `${userKey(login.db, login.user)}/${login.mechanism}`;
    const tag = tagOf(login.secret);
    let entry = this.entries.get(key);
    if (entry && entry.secretTag !== tag) {
      this.revoke(key, entry, 'secret_changed');
      entry = undefined;
    }
    if (!entry) entry = this.create(key, tag, login);
    entry.leases++;
    const e = entry;
    let released = false;
    return {
      servers: e.servers,
      get revoked() {
        return e.revoked;
      },
      release: () => {
        if (released) return;
        released = true;
        e.leases--;
      },
    };
  }

  private create(key: string, secretTag: string, login: PassthroughLogin): Entry {
    const servers = this.base.derive({
      credentials: { username: login.user, source: login.db, mechanism: login.mechanism, secret: { keys: { ...login.secret, clientKey: login.clientKey } } },
      maxPoolSize: this.limits.maxPoolSizePerUser,
      minPoolSize: 0,
      budget: this.budget,
    });
    const entry: Entry = { user: `${login.db}.${login.user}`, servers, secretTag, leases: 0, revoked: false };
    servers.eachPool((pool) => pool.on('connectFailed', (err) => {
      // The server no longer takes these keys: its secret changed since it was looked up.
      if (err instanceof UpstreamAuthError && this.entries.get(key) === entry) {
        this.revoke(key, entry, 'login_refused');
        this.forgetSecret(login.db, login.user);
      }
    }));
    this.entries.set(key, entry);
    Metrics.userPools.add(1, { event: 'created' });
    return entry;
  }

  private revoke(key: string, entry: Entry, reason: 'secret_changed' | 'login_refused'): void {
    entry.revoked = true;
    this.entries.delete(key);
    entry.servers.close('revoked');
    Metrics.userPools.add(1, { event: reason });
    this.log.info({ user: entry.user, reason, clients: entry.leases }, "closed a user's upstream pools: its secret changed; its clients must log in again");
  }

  /** Drops the pools of users no client holds once their connections are gone (reaped idle, or taken by the budget). */
  sweep(): void {
    for (const [key, e] of this.entries) {
      if (e.leases > 0 || e.servers.all().some((p) => p.size > 0)) continue;
      this.entries.delete(key);
      e.servers.close();
      Metrics.userPools.add(1, { event: 'dropped' });
    }
  }

  /** Every user's pools, for /pools and /stats. */
  stats(now = Date.now()): Array<{ user: string; pool: PoolStats; maxPoolSize: number; oldestWaitMs: number }> {
    return [...this.entries.values()].flatMap((e) => e.servers.all().map((p) => ({ user: e.user, pool: p.stats(), maxPoolSize: p.maxSize, oldestWaitMs: p.oldestWaitMs(now) })));
  }

  close(): void {
    for (const e of this.entries.values()) e.servers.close();
    this.entries.clear();
  }
}
