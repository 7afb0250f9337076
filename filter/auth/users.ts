import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../config';
import type { Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import { deriveSecret, MIN_ITERATIONS, SCRAM_MECHANISMS, type ScramMechanism, type ScramSecret } from '../wire/scram';

/**
 * The users file (auth.usersFile): each user's SCRAM secrets, never a password. The layout is
 * MongoDB's own — what `usersInfo` with `showCredentials: true` answers — so a server's users
 * can be copied into it:
 *
 *     {"users": [{"user": "app", "db": "admin",
 *                 "credentials": {"SCRAM-SHA-256": {"iterationCount": 15000, "salt": "…",
 *                                                   "storedKey": "…", "serverKey": "…"}}}]}
 */

const base64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'expected base64');
const SecretSchema = z.object({
  iterationCount: z.number().int().min(MIN_ITERATIONS),
  salt: base64,
  storedKey: base64,
  serverKey: base64,
});
const UserSchema = z.object({
  user: z.string().min(1),
  db: z.string().min(1),
  credentials: z.object({ 'SCRAM-SHA-1': SecretSchema.optional(), 'SCRAM-SHA-256': SecretSchema.optional() })
    .refine((c) => c['SCRAM-SHA-1'] !== undefined || c['SCRAM-SHA-256'] !== undefined, 'needs SCRAM-SHA-1 or SCRAM-SHA-256'),
});
const UsersFileSchema = z.object({ users: z.array(UserSchema) });
type UsersFile = z.infer<typeof UsersFileSchema>;
/** What `usersInfo` with `showCredentials: true` answers (other fields ignored). */
export const UsersInfoReplySchema = UsersFileSchema;

/** One user's secrets, by mechanism. */
export type UserSecrets = ReadonlyMap<ScramMechanism, ScramSecret>;

export function userKey(db: string, user: string): string {
  return `${db}\u0000${user}`;
}

/**
 * Where client logins find users' SCRAM secrets: the users file, or the upstream server asked
 * with usersInfo (auth.userSource). `prepare` makes a user's secrets available to the
 * synchronous lookups the SCRAM conversation makes.
 */
export interface UserSource {
  prepare(db: string, user: string): Promise<void>;
  secret(db: string, user: string, mechanism: ScramMechanism): ScramSecret | undefined;
  /** The mechanisms a user has secrets for (hello's saslSupportedMechs); undefined for no such user. */
  mechanisms(db: string, user: string): ScramMechanism[] | undefined;
  /** A login as this user failed its proof: a cached secret may be stale. */
  failed(db: string, user: string): void;
}

/** Reads and validates a users file; throws with a message naming the file and the problem. */
function readUsersFile(file: string): UsersFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read users file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    // Not the parser's message: it quotes the file, and the file holds secrets.
    throw new Error(`users file ${file} is not valid JSON`, { cause: err });
  }
  const parsed = UsersFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`users file ${file} is invalid at ${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  return parsed.data;
}

/** Users in the usersInfo layout, indexed by (db, user). */
export function indexUsers(file: UsersFile): Map<string, UserSecrets> {
  const users = new Map<string, UserSecrets>();
  for (const u of file.users) {
    const secrets = new Map<ScramMechanism, ScramSecret>();
    for (const m of SCRAM_MECHANISMS) {
      const c = u.credentials[m];
      if (c) secrets.set(m, { iterationCount: c.iterationCount, salt: Buffer.from(c.salt, 'base64'), storedKey: Buffer.from(c.storedKey, 'base64'), serverKey: Buffer.from(c.serverKey, 'base64') });
    }
    users.set(userKey(u.db, u.user), secrets);
  }
  return users;
}

/** How often, at most, the file's modification time is looked at. */
const RECHECK_MS = 1000;

/**
 * The users the proxy verifies clients against. The file is re-read when it changes (checked
 * at most once a second, when a client logs in), so a changed or removed secret applies to
 * the next login; a file that became invalid is logged and the last good one kept.
 */
export class UserDirectory implements UserSource {
  private users: Map<string, UserSecrets>;
  private mtimeMs: number;
  private checkedAt = 0;

  constructor(private readonly file: string, private readonly log: Logger) {
    this.users = indexUsers(readUsersFile(file));
    this.mtimeMs = statSync(file).mtimeMs;
    log.info({ file, users: this.users.size }, 'users loaded');
  }

  get size(): number {
    return this.users.size;
  }

  /** The file is local: nothing to fetch. */
  prepare(): Promise<void> {
    return Promise.resolve();
  }

  /** The file changes only when someone writes it (re-read then). */
  failed(): void {}

  secret(db: string, user: string, mechanism: ScramMechanism): ScramSecret | undefined {
    this.refresh();
    return this.users.get(userKey(db, user))?.get(mechanism);
  }

  /** The mechanisms a user has secrets for (hello's saslSupportedMechs); undefined for no such user. */
  mechanisms(db: string, user: string): ScramMechanism[] | undefined {
    this.refresh();
    const e = this.users.get(userKey(db, user));
    return e && [...e.keys()];
  }

  private refresh(now = Date.now()): void {
    if (now - this.checkedAt < RECHECK_MS) return;
    this.checkedAt = now;
    try {
      const mtimeMs = statSync(this.file).mtimeMs;
      if (mtimeMs === this.mtimeMs) return;
      this.users = indexUsers(readUsersFile(this.file));
      this.mtimeMs = mtimeMs;
      Metrics.usersFileLoads.add(1, { result: 'ok' });
      this.log.info({ file: this.file, users: this.users.size }, 'users file changed: reloaded');
    } catch (err) {
      Metrics.usersFileLoads.add(1, { result: 'failed' });
      this.log.error({ file: this.file, err: (err as Error).message }, 'users file not reloaded: the users loaded before stay');
    }
  }
}

/** The users file at start: a missing or invalid file is a configuration error. */
export function loadUsers(file: string, log: Logger): UserDirectory {
  try {
    return new UserDirectory(file, log);
  } catch (err) {
    throw new ConfigError(`auth.usersFile: ${(err as Error).message}`);
  }
}

/**
 * `mongoplex users add`: derives the user's secrets from a password and writes them into the
 * file (created 0600 if missing; an existing user is replaced). Written to a temporary file
 * and renamed, so a running proxy never reads half a file.
 */
export function addUser(file: string, user: string, db: string, password: string, mechanisms: readonly ScramMechanism[] = SCRAM_MECHANISMS): void {
  const current: UsersFile = existsSync(file) ? readUsersFile(file) : { users: [] };
  const credentials: Record<string, z.infer<typeof SecretSchema>> = {};
  for (const m of mechanisms) {
    const s = deriveSecret(m, user, password);
    credentials[m] = { iterationCount: s.iterationCount, salt: s.salt.toString('base64'), storedKey: s.storedKey.toString('base64'), serverKey: s.serverKey.toString('base64') };
  }
  const users = current.users.filter((u) => !(u.user === user && u.db === db));
  users.push({ user, db, credentials });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ users }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}
