import type { Document } from 'bson';
import type { Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import type { ScramMechanism, ScramSecret } from '../wire/scram';
import { indexUsers, userKey, UsersInfoReplySchema, type UserSecrets, type UserSource } from './users';

/** Runs one command on the upstream as mongoplex's service identity. */
export type UpstreamCommand = (db: string, command: Document) => Promise<Document>;

export interface UserQueryOptions {
  /** How long an answer (found or not) is used before the server is asked again. */
  readonly cacheTtlMs: number;
  /** Users remembered at once; the oldest answer is dropped first. */
  readonly maxUsers: number;
  /** A lookup not answered in this long fails (and so does the login waiting on it). */
  readonly timeoutMs: number;
}

/** A user that does not exist is asked about again after at most this long. */
const NOT_FOUND_TTL_MS = 5000;
/** A failed proof drops a cached secret only when it is at least this old (bounds the extra queries a wrong password can cause). */
const STALE_AFTER_MS = 1000;

interface Cached {
  readonly secrets: UserSecrets | undefined;
  readonly at: number;
}

/**
 * The auth query: users' SCRAM secrets asked from the upstream server with `usersInfo` and
 * `showCredentials: true` under mongoplex's own identity (upstream.auth), so no users file is
 * kept. Answers are cached for `cacheTtlMs` (a user that does not exist for at most 5 s); one
 * query per user at a time; a failed proof drops a cached secret so the next login asks again
 * (a password changed on the server works on the second attempt at the latest).
 */
export class UpstreamUserQuery implements UserSource {
  private readonly cache = new Map<string, Cached>();
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly run: UpstreamCommand, private readonly options: UserQueryOptions, private readonly log: Logger) {}

  get size(): number {
    return this.cache.size;
  }

  prepare(db: string, user: string, now = Date.now()): Promise<void> {
    const k = userKey(db, user);
    const c = this.cache.get(k);
    if (c && now - c.at < (c.secrets ? this.options.cacheTtlMs : Math.min(NOT_FOUND_TTL_MS, this.options.cacheTtlMs))) return Promise.resolve();
    let pending = this.inFlight.get(k);
    if (!pending) {
      pending = this.ask(db, user).finally(() => this.inFlight.delete(k));
      this.inFlight.set(k, pending);
    }
    return pending;
  }

  secret(db: string, user: string, mechanism: ScramMechanism): ScramSecret | undefined {
    return this.cache.get(userKey(db, user))?.secrets?.get(mechanism);
  }

  mechanisms(db: string, user: string): ScramMechanism[] | undefined {
    const s = this.cache.get(userKey(db, user))?.secrets;
    return s && [...s.keys()];
  }

  failed(db: string, user: string, now = Date.now()): void {
    const k = userKey(db, user);
    const c = this.cache.get(k);
    if (c?.secrets && now - c.at >= STALE_AFTER_MS) this.cache.delete(k);
  }

  /** The server refused the user's cached secret (auth.mode passthrough): ask it again at the next login. */
  forget(db: string, user: string): void {
    this.cache.delete(userKey(db, user));
  }

  private async ask(db: string, user: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
    });
    let secrets: UserSecrets | undefined;
    try {
      const reply = await Promise.race([this.run(db, { usersInfo: { user, db }, showCredentials: true }), deadline]);
      if (reply.ok !== 1) throw new Error(`usersInfo failed: ${String(reply.errmsg ?? reply.codeName ?? 'not ok')}`);
      const parsed = UsersInfoReplySchema.safeParse(reply);
      if (!parsed.success) throw new Error(`usersInfo answered without SCRAM credentials (${parsed.error.issues[0]?.path.join('.') ?? ''}: ${parsed.error.issues[0]?.message ?? ''})`);
      secrets = indexUsers(parsed.data).get(userKey(db, user));
    } catch (err) {
      // Nothing cached: the login fails (AuthenticationFailed) and the next one asks again.
      Metrics.userQueries.add(1, { result: 'failed' });
      this.log.warn({ db, user, err: (err as Error).message }, 'auth query: cannot look the user up on the server');
      return;
    } finally {
      clearTimeout(timer);
    }
    Metrics.userQueries.add(1, { result: secrets ? 'found' : 'not_found' });
    const k = userKey(db, user);
    this.cache.delete(k);
    this.cache.set(k, { secrets, at: Date.now() });
    while (this.cache.size > this.options.maxUsers) this.cache.delete(this.cache.keys().next().value!);
  }
}
