import { Binary, type Document } from 'bson';
import { clientCausedLogs, type Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import { ErrorCode, errorDocument } from '../wire/errors';
import { clientFirstUser, isScramMechanism, SCRAM_MECHANISMS, ScramError, ScramServer, type ScramMechanism, type ScramVerified } from '../wire/scram';
import type { PassthroughLogin } from './user-pools';
import type { UserSource } from './users';

/** connectionStatus as mongod answers it, for the user the connection logged in as (none: not logged in). */
export function connectionStatusReply(user?: { readonly user: string; readonly db: string }): Document {
  return { authInfo: { authenticatedUsers: user ? [{ user: user.user, db: user.db }] : [], authenticatedUserRoles: [] }, ok: 1 };
}

/** Commands the proxy answers itself in auth.mode proxy and passthrough (lower case). */
export const AUTH_COMMANDS: ReadonlySet<string> = new Set(['saslstart', 'saslcontinue', 'logout', 'connectionstatus', 'authenticate', 'getnonce']);

/** What a client may have forwarded before it logs in (mongod's commands that need no authentication). */
const WITHOUT_LOGIN: ReadonlySet<string> = new Set(['ping', 'buildinfo']);

/** mongod's answer to every failed login, whatever failed: user names cannot be probed by it. */
const FAILED: Document = errorDocument(ErrorCode.AuthenticationFailed, 'Authentication failed.');

interface Conversation {
  readonly id: number;
  readonly server: ScramServer;
  readonly db: string;
  readonly skipEmptyExchange: boolean;
  /** The proof checked out; the server-final message went out, the client's empty message is due. */
  verified?: ScramVerified;
}

function payloadOf(v: unknown): Buffer | undefined {
  if (v instanceof Binary) return Buffer.from(v.buffer);
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  return undefined;
}

/**
 * One client connection's login at the proxy (auth.mode proxy and passthrough): the server side of
 * SCRAM-SHA-256 and SCRAM-SHA-1 as drivers speak it — saslStart/saslContinue, or
 * speculativeAuthenticate inside the handshake hello, with or without skipEmptyExchange —
 * against the users file or the auth query (`UserSource`). Until a login succeeds, only the handshake, the login itself and
 * mongod's no-authentication commands are served.
 */
export class ClientAuth {
  private conversation: Conversation | undefined;
  private nextConversationId = 1;
  /**
   * Who this connection is logged in as (a new object at each login). In passthrough mode, with
   * the key its upstream connections log in with.
   */
  user: { readonly user: string; readonly db: string; readonly passthrough: PassthroughLogin | undefined } | undefined;

  constructor(
    private readonly users: UserSource,
    private readonly log: Logger,
    /** auth.mode passthrough: keep the ClientKey recovered from the proof, for the user's upstream pools. */
    private readonly passthrough = false,
  ) {}

  /** Whether a command may go on (upstream, or to the router) on this connection now. */
  allows(command: string): boolean {
    return this.user !== undefined || WITHOUT_LOGIN.has(command.toLowerCase());
  }

  /** hello's saslSupportedMechs and speculativeAuthenticate answers, to add to the reply. */
  async helloFields(request: Document): Promise<Document> {
    const out: Document = {};
    const asked = request.saslSupportedMechs;
    if (typeof asked === 'string' && asked.includes('.')) {
      const dot = asked.indexOf('.');
      const [db, user] = [asked.slice(0, dot), asked.slice(dot + 1)];
      await this.users.prepare(db, user);
      // An unknown user is told what a user made by `mongoplex users add` has: no difference to probe.
      out.saslSupportedMechs = this.users.mechanisms(db, user) ?? [...SCRAM_MECHANISMS];
    }
    const spec = request.speculativeAuthenticate as Document | undefined;
    if (spec && typeof spec === 'object' && spec.saslStart === 1) {
      const db = typeof spec.db === 'string' ? spec.db : 'admin';
      const started = await this.start(spec, db);
      // A speculative start that cannot proceed is left out, as mongod does: the driver then
      // runs saslStart, with the mechanism saslSupportedMechs named (a user made with
      // SCRAM-SHA-1 only, asked speculatively for SCRAM-SHA-256, the drivers' default).
      const c = this.conversation;
      const lacksMechanism = c !== undefined && !c.server.hasSecret && c.server.attemptedUser !== undefined && this.users.mechanisms(db, c.server.attemptedUser) !== undefined;
      if (lacksMechanism) this.conversation = undefined;
      else if (started.ok === 1) out.speculativeAuthenticate = { conversationId: started.conversationId, done: started.done, payload: started.payload };
    }
    return out;
  }

  /** Answers one of AUTH_COMMANDS; `db` is the command's database (the user's authSource for a login). */
  async command(name: string, body: Document, db: string): Promise<Document> {
    switch (name) {
      case 'saslstart':
        return this.start(body, db);
      case 'saslcontinue':
        return this.continue(body);
      case 'logout':
        this.user = undefined;
        this.conversation = undefined;
        return { ok: 1 };
      case 'connectionstatus':
        return connectionStatusReply(this.user);
      default:
        // MONGODB-CR (authenticate/getnonce) and x.509 are not offered.
        return this.fail(undefined, typeof body.user === 'string' ? body.user : undefined, db);
    }
  }

  private async start(body: Document, db: string): Promise<Document> {
    const mechanism = body.mechanism;
    const payload = payloadOf(body.payload);
    if (!isScramMechanism(mechanism) || !payload) return this.fail(isScramMechanism(mechanism) ? mechanism : undefined, undefined, db);
    const user = clientFirstUser(payload);
    if (user !== undefined) await this.users.prepare(db, user);
    const server = new ScramServer(mechanism, (user, m) => this.users.secret(db, user, m));
    let serverFirst: Buffer;
    try {
      serverFirst = server.start(payload);
    } catch (err) {
      if (!(err instanceof ScramError)) throw err;
      return this.fail(mechanism, server.attemptedUser, db, err.message);
    }
    const options = body.options as Document | undefined;
    const id = this.nextConversationId++;
    this.conversation = { id, server, db, skipEmptyExchange: options?.skipEmptyExchange === true };
    return { conversationId: id, done: false, payload: new Binary(serverFirst), ok: 1 };
  }

  private continue(body: Document): Document {
    const c = this.conversation;
    const payload = payloadOf(body.payload);
    if (!c || Number(body.conversationId) !== c.id || !payload) {
      this.conversation = undefined;
      return this.fail(undefined, undefined, c?.db ?? 'admin', 'no such conversation');
    }
    if (c.verified !== undefined) {
      // The client acknowledged the server's signature with its empty message: done.
      this.conversation = undefined;
      return this.succeed(c, c.verified, Buffer.alloc(0));
    }
    const verified = c.server.verify(payload);
    if (!verified) {
      this.conversation = undefined;
      if (c.server.attemptedUser !== undefined) this.users.failed(c.db, c.server.attemptedUser);
      return this.fail(c.server.mechanism, c.server.attemptedUser, c.db);
    }
    if (c.skipEmptyExchange) {
      this.conversation = undefined;
      return this.succeed(c, verified, verified.serverFinal);
    }
    c.verified = verified;
    return { conversationId: c.id, done: false, payload: new Binary(verified.serverFinal), ok: 1 };
  }

  private succeed(c: Conversation, verified: ScramVerified, payload: Buffer): Document {
    const { user, secret, clientKey } = verified;
    const mechanism = c.server.mechanism;
    this.user = { user, db: c.db, passthrough: this.passthrough ? { user, db: c.db, mechanism, secret, clientKey } : undefined };
    Metrics.clientLogins.add(1, { result: 'ok', mechanism: c.server.mechanism });
    this.log.debug({ user, db: c.db, mechanism: c.server.mechanism }, 'client logged in');
    return { conversationId: c.id, done: true, payload: new Binary(payload), ok: 1 };
  }

  private fail(mechanism: ScramMechanism | undefined, user: string | undefined, db: string, detail?: string): Document {
    Metrics.clientLogins.add(1, { result: 'failed', mechanism: mechanism ?? 'other' });
    if (clientCausedLogs.allow(this.log, 'auth_failed')) this.log.info({ db, mechanism, user, detail }, 'client login failed');
    return { ...FAILED };
  }
}
