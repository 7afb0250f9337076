import { Binary, type Document } from 'bson';
import { ConfigError, readSettingFile, type Config } from '../config';
import { ScramClient, type ScramClientSecret, type ScramMechanism } from '../wire/scram';

/**
 * The identity an upstream connection logs in as: mongoplex's own (upstream.auth, with a
 * password), or in auth.mode passthrough a client's user (with the keys recovered from its proof).
 */
export interface UpstreamCredentials {
  readonly username: string;
  /** The database holding the user (authSource). */
  readonly source: string;
  /** DEFAULT (passwords only): SCRAM-SHA-256 when the server lists it for the user, else SCRAM-SHA-1 (the drivers' rule). */
  readonly mechanism: ScramMechanism | 'DEFAULT';
  /** A password with its salted-password cache (PBKDF2 runs once per process, not per connection), or a user's keys. */
  readonly secret: ScramClientSecret;
}

/** upstream.auth as credentials (the password read from its file); undefined without a username. */
export function upstreamCredentials(auth: Config['upstream']['auth']): UpstreamCredentials | undefined {
  if (auth.username === null) return undefined;
  let password = auth.password;
  if (auth.passwordFile !== null) {
    password = readSettingFile('upstream.auth', 'passwordFile', auth.passwordFile).toString('utf8').replace(/\r?\n$/, '');
    if (password.length === 0) throw new ConfigError(`upstream.auth.passwordFile ${auth.passwordFile} is empty`);
  }
  return { username: auth.username, source: auth.source, mechanism: auth.mechanism, secret: { password: password!, saltedCache: new Map() } };
}

/** What the handshake hello carries to log in during it (speculativeAuthenticate). */
export interface SpeculativeLogin {
  readonly fields: Document;
  readonly client: ScramClient;
}

/** Fields for the handshake: speculativeAuthenticate with the first SCRAM message, and saslSupportedMechs. */
export function speculativeLogin(c: UpstreamCredentials): SpeculativeLogin {
  const client = new ScramClient(c.mechanism === 'DEFAULT' ? 'SCRAM-SHA-256' : c.mechanism, c.username, c.secret);
  const fields: Document = {
    speculativeAuthenticate: { saslStart: 1, mechanism: client.mechanism, payload: new Binary(client.clientFirst), db: c.source, options: { skipEmptyExchange: true } },
  };
  if (c.mechanism === 'DEFAULT') fields.saslSupportedMechs = `${c.source}.${c.username}`;
  return { fields, client };
}

/** The server refused the proxy's login, or answered it in a way SCRAM does not allow. */
export class LoginError extends Error {
  override name = 'LoginError';
}

type Command = (db: string, cmd: Document) => Promise<Document>;

function payloadOf(reply: Document): Buffer {
  const p = reply.payload as unknown;
  if (p instanceof Binary) return Buffer.from(p.buffer);
  if (Buffer.isBuffer(p)) return p;
  throw new LoginError('SCRAM reply carries no payload');
}

function refused(reply: Document): LoginError {
  return new LoginError(typeof reply.errmsg === 'string' ? reply.errmsg : `code ${String(reply.code)}`);
}

/**
 * Logs the connection in after its handshake: continues the speculative conversation when the
 * server took it, or runs saslStart / saslContinue. Throws LoginError; never includes the
 * password in a message.
 */
export async function completeLogin(command: Command, c: UpstreamCredentials, speculative: SpeculativeLogin, hello: Document): Promise<ScramMechanism> {
  let client = speculative.client;
  let step: Document;
  const spec = hello.speculativeAuthenticate as Document | undefined;
  if (spec && spec.payload !== undefined) {
    step = spec;
  } else {
    if (c.mechanism === 'DEFAULT') {
      const mechs = Array.isArray(hello.saslSupportedMechs) ? (hello.saslSupportedMechs as unknown[]) : [];
      const mechanism: ScramMechanism = mechs.includes('SCRAM-SHA-256') ? 'SCRAM-SHA-256' : 'SCRAM-SHA-1';
      if (mechanism !== client.mechanism) client = new ScramClient(mechanism, c.username, c.secret);
    }
    step = await command(c.source, { saslStart: 1, mechanism: client.mechanism, payload: new Binary(client.clientFirst), autoAuthorize: 1, options: { skipEmptyExchange: true } });
    if (step.ok !== 1) throw refused(step);
  }
  const conversationId = step.conversationId as unknown;
  const final = await command(c.source, { saslContinue: 1, conversationId, payload: new Binary(client.clientFinal(payloadOf(step))) });
  if (final.ok !== 1) throw refused(final);
  client.verifyServerFinal(payloadOf(final));
  let last = final;
  // Without skipEmptyExchange support the server wants one more, empty, round trip.
  for (let i = 0; last.done !== true; i++) {
    if (i >= 2) throw new LoginError('SCRAM conversation did not finish');
    last = await command(c.source, { saslContinue: 1, conversationId, payload: new Binary(Buffer.alloc(0)) });
    if (last.ok !== 1) throw refused(last);
  }
  return client.mechanism;
}
