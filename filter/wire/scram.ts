import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { saslprep } from '@mongodb-js/saslprep';

/**
 * SCRAM (RFC 5802, RFC 7677) as MongoDB speaks it, both sides: the proxy logging in to its
 * upstream (ScramClient) and clients logging in to the proxy (ScramServer). The primitives
 * are node:crypto's; only the message syntax is written here.
 *
 * MongoDB's two differences from the RFC: SCRAM-SHA-1 salts not the password but the hex MD5
 * of `user:mongo:password` (its MONGODB-CR digest), without SASLprep; and a conversation may
 * end one round trip early when the client asks for `skipEmptyExchange`.
 */

export type ScramMechanism = 'SCRAM-SHA-1' | 'SCRAM-SHA-256';
export const SCRAM_MECHANISMS: readonly ScramMechanism[] = ['SCRAM-SHA-256', 'SCRAM-SHA-1'];

export function isScramMechanism(v: unknown): v is ScramMechanism {
  return v === 'SCRAM-SHA-1' || v === 'SCRAM-SHA-256';
}

/** What a server keeps for one user and mechanism: the fields of MongoDB's `credentials`. */
export interface ScramSecret {
  readonly salt: Buffer;
  readonly iterationCount: number;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

const DIGEST = { 'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-256': 'sha256' } as const;
const KEY_LENGTH = { 'SCRAM-SHA-1': 20, 'SCRAM-SHA-256': 32 } as const;
/** mongod's defaults (scramIterationCount, scramSHA256IterationCount) and its minimum. */
export const DEFAULT_ITERATIONS = { 'SCRAM-SHA-1': 10_000, 'SCRAM-SHA-256': 15_000 } as const;
export const MIN_ITERATIONS = 4096;
/** Salt lengths mongod uses: 16 bytes for SHA-1, 28 for SHA-256. */
const SALT_LENGTH = { 'SCRAM-SHA-1': 16, 'SCRAM-SHA-256': 28 } as const;

/** A message that does not follow the SCRAM syntax, or a check that failed. */
export class ScramError extends Error {
  override name = 'ScramError';
}

const hmac = (m: ScramMechanism, key: Buffer, data: string | Buffer): Buffer => createHmac(DIGEST[m], key).update(data).digest();
const hash = (m: ScramMechanism, data: Buffer): Buffer => createHash(DIGEST[m]).update(data).digest();

function xor(a: Buffer, b: Buffer): Buffer {
  if (a.length !== b.length) throw new ScramError('proof has the wrong length');
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** What MongoDB feeds PBKDF2 for this mechanism. */
function passwordInput(m: ScramMechanism, user: string, password: string): string {
  if (m === 'SCRAM-SHA-1') return createHash('md5').update(`${user}:mongo:${password}`, 'utf8').digest('hex');
  return saslprep(password);
}

export function saltedPassword(m: ScramMechanism, user: string, password: string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(passwordInput(m, user, password), salt, iterations, KEY_LENGTH[m], DIGEST[m]);
}

/** The secret a server stores for a password: `mongoplex users add`. */
export function deriveSecret(m: ScramMechanism, user: string, password: string, iterations: number = DEFAULT_ITERATIONS[m], salt = randomBytes(SALT_LENGTH[m])): ScramSecret {
  const salted = saltedPassword(m, user, password, salt, iterations);
  const clientKey = hmac(m, salted, 'Client Key');
  return { salt, iterationCount: iterations, storedKey: hash(m, clientKey), serverKey: hmac(m, salted, 'Server Key') };
}

/** `a=1,b=2` → {a: '1', b: '2'}; values may contain '='. */
function attributes(message: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of message.split(',')) {
    const eq = part.indexOf('=');
    if (eq !== 1) throw new ScramError(`malformed SCRAM attribute "${part.slice(0, 16)}"`);
    out.set(part[0]!, part.slice(2));
  }
  return out;
}

function required(attrs: Map<string, string>, key: string): string {
  const v = attrs.get(key);
  if (v === undefined || v.length === 0) throw new ScramError(`SCRAM message lacks "${key}="`);
  return v;
}

/** RFC 5802 5.1: ',' and '=' in a user name travel as '=2C' and '=3D'. */
const escapeName = (u: string): string => u.replace(/=/g, '=3D').replace(/,/g, '=2C');
function unescapeName(u: string): string {
  if (/=(?!2C|3D)/.test(u)) throw new ScramError('malformed user name');
  return u.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

const GS2_HEADER = 'n,,';
const CHANNEL_BINDING = Buffer.from(GS2_HEADER).toString('base64'); // "biws"

/**
 * What the proxy logs in upstream with: a password (its own service identity; PBKDF2 runs once
 * per salt and iteration count, kept in `saltedCache`), or a user's keys (auth.mode
 * passthrough: the ClientKey recovered from that user's own proof and the ServerKey the server
 * keeps, valid only for the salt and iteration count they were derived with).
 */
export type ScramClientSecret =
  | { readonly password: string; readonly saltedCache?: Map<string, Buffer> }
  | { readonly keys: ScramSecret & { readonly clientKey: Buffer } };

/** The proxy logging in to a server as one user (its pooled and monitor connections). */
export class ScramClient {
  private readonly nonce = randomBytes(24).toString('base64');
  private readonly clientFirstBare: string;
  private serverSignature: Buffer | undefined;

  constructor(
    readonly mechanism: ScramMechanism,
    private readonly user: string,
    private readonly secret: ScramClientSecret,
  ) {
    this.clientFirstBare = `n=${escapeName(user)},r=${this.nonce}`;
  }

  get clientFirst(): Buffer {
    return Buffer.from(GS2_HEADER + this.clientFirstBare);
  }

  /** The client-final message answering the server-first one. */
  clientFinal(serverFirst: Buffer): Buffer {
    const first = serverFirst.toString('utf8');
    const attrs = attributes(first);
    const nonce = required(attrs, 'r');
    if (!nonce.startsWith(this.nonce) || nonce.length === this.nonce.length) throw new ScramError('server nonce does not extend ours');
    const salt = Buffer.from(required(attrs, 's'), 'base64');
    const iterations = Number(required(attrs, 'i'));
    if (!Number.isInteger(iterations) || iterations < MIN_ITERATIONS) throw new ScramError(`server asks for ${attrs.get('i')} iterations (fewer than ${MIN_ITERATIONS})`);
    const { clientKey, serverKey } = this.keys(salt, iterations);
    const withoutProof = `c=${CHANNEL_BINDING},r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${first},${withoutProof}`;
    const proof = xor(clientKey, hmac(this.mechanism, hash(this.mechanism, clientKey), authMessage));
    this.serverSignature = hmac(this.mechanism, serverKey, authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  }

  /** ClientKey and ServerKey for the salt and iteration count the server asked for. */
  private keys(salt: Buffer, iterations: number): { clientKey: Buffer; serverKey: Buffer } {
    const s = this.secret;
    if ('keys' in s) {
      // Keys recovered from a proof fit only the secret they were made with.
      if (!salt.equals(s.keys.salt) || iterations !== s.keys.iterationCount) throw new ScramError('the server holds another secret for this user (its password changed)');
      return { clientKey: s.keys.clientKey, serverKey: s.keys.serverKey };
    }
    const cacheKey = `${this.mechanism}:${salt.toString('base64')}:${iterations}`;
    let salted = s.saltedCache?.get(cacheKey);
    if (!salted) {
      salted = saltedPassword(this.mechanism, this.user, s.password, salt, iterations);
      s.saltedCache?.set(cacheKey, salted);
    }
    return { clientKey: hmac(this.mechanism, salted, 'Client Key'), serverKey: hmac(this.mechanism, salted, 'Server Key') };
  }

  /** Checks the server-final message: the server proved it knows our secret too. */
  verifyServerFinal(serverFinal: Buffer): void {
    const attrs = attributes(serverFinal.toString('utf8'));
    if (attrs.has('e')) throw new ScramError(`server refused: ${attrs.get('e')}`);
    const v = Buffer.from(required(attrs, 'v'), 'base64');
    if (!this.serverSignature || v.length !== this.serverSignature.length || !timingSafeEqual(v, this.serverSignature)) throw new ScramError('server signature does not match');
  }
}

/** The outcome of a client's proof. */
export interface ScramVerified {
  readonly user: string;
  readonly serverFinal: Buffer;
  /**
   * The client's ClientKey, recovered from its proof (ClientProof XOR ClientSignature, and
   * H(ClientKey) = StoredKey): what lets the proxy log in upstream as that user without its
   * password. Keep it no longer than needed.
   */
  readonly clientKey: Buffer;
  /** The secret the proof was checked against (the ClientKey fits only its salt and iteration count). */
  readonly secret: ScramSecret;
}

/** client-first-message: the bare part, the user and the client's nonce. Throws ScramError. */
function parseClientFirst(clientFirst: Buffer): { bare: string; user: string; nonce: string } {
  const text = clientFirst.toString('utf8');
  if (!text.startsWith(GS2_HEADER)) throw new ScramError('only SCRAM without channel binding ("n,,") is supported');
  const bare = text.slice(GS2_HEADER.length);
  const attrs = attributes(bare);
  if (attrs.has('m')) throw new ScramError('SCRAM extensions are not supported');
  return { bare, user: unescapeName(required(attrs, 'n')), nonce: required(attrs, 'r') };
}

/** The user a client-first message names; undefined when it is malformed. */
export function clientFirstUser(clientFirst: Buffer): string | undefined {
  try {
    return parseClientFirst(clientFirst).user;
  } catch (err) {
    if (err instanceof ScramError) return undefined;
    throw err;
  }
}

/** Looks a user's secret up; undefined when there is no such user (or mechanism). */
export type SecretLookup = (user: string, mechanism: ScramMechanism) => ScramSecret | undefined;

/** A per-process key that makes an unknown user's decoy salt stable (probing sees no difference). */
const DECOY_KEY = randomBytes(32);

/**
 * The proxy verifying one client's SCRAM conversation. Every failure — unknown user, wrong
 * proof, replayed or tampered message — ends the same way (`undefined` from `verify`), so the
 * caller can answer with one message whatever went wrong. An unknown user gets a decoy salt and
 * iteration count and fails only at the proof, as a known one with a wrong password does.
 */
export class ScramServer {
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  private user = '';
  private secret: ScramSecret | undefined;

  constructor(readonly mechanism: ScramMechanism, private readonly lookup: SecretLookup) {}

  /** Whether the user has a secret for this mechanism (false: a decoy conversation that will fail). */
  get hasSecret(): boolean {
    return this.secret !== undefined;
  }

  /** The user name the client gave (for logs), once its first message was read. */
  get attemptedUser(): string | undefined {
    return this.user || undefined;
  }

  /** Reads client-first, answers server-first. Throws ScramError on malformed input. */
  start(clientFirst: Buffer): Buffer {
    const first = parseClientFirst(clientFirst);
    this.clientFirstBare = first.bare;
    this.user = first.user;
    const clientNonce = first.nonce;
    this.secret = this.lookup(this.user, this.mechanism);
    const salt = this.secret?.salt ?? hmac(this.mechanism, DECOY_KEY, `${this.mechanism}:${this.user}`).subarray(0, SALT_LENGTH[this.mechanism]);
    const iterations = this.secret?.iterationCount ?? DEFAULT_ITERATIONS[this.mechanism];
    this.nonce = clientNonce + randomBytes(24).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${salt.toString('base64')},i=${iterations}`;
    return Buffer.from(this.serverFirst);
  }

  /** Checks client-final; on success, the server-final message and the user. */
  verify(clientFinal: Buffer): ScramVerified | undefined {
    const serverFirst = this.serverFirst;
    this.serverFirst = ''; // one proof per conversation
    if (!serverFirst) return undefined;
    let attrs: Map<string, string>;
    try {
      attrs = attributes(clientFinal.toString('utf8'));
    } catch {
      return undefined;
    }
    const secret = this.secret;
    if (!secret || attrs.get('c') !== CHANNEL_BINDING || attrs.get('r') !== this.nonce) return undefined;
    const proofText = attrs.get('p');
    if (!proofText) return undefined;
    const proof = Buffer.from(proofText, 'base64');
    const text = clientFinal.toString('utf8');
    const withoutProof = text.slice(0, text.lastIndexOf(',p='));
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    if (proof.length !== secret.storedKey.length) return undefined;
    const clientKey = xor(proof, hmac(this.mechanism, secret.storedKey, authMessage));
    if (!timingSafeEqual(hash(this.mechanism, clientKey), secret.storedKey)) return undefined;
    const serverSignature = hmac(this.mechanism, secret.serverKey, authMessage);
    return { user: this.user, clientKey, secret, serverFinal: Buffer.from(`v=${serverSignature.toString('base64')}`) };
  }
}
