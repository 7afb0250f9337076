import type { Document } from 'bson';
import type { WireMessage } from '../wire/header';
import type { CommandInfo, ReplyInfo } from '../wire/peek';

/** Who sent a forwarded command, as the taps record it (the session's ClientInfo is one). */
export interface TappedClient {
  readonly id: number;
  readonly remote: string;
  readonly appName: string | undefined;
}

/** One forwarded OP_MSG command and its outcome, as the traffic taps (capture, mirror) see it. */
export interface ForwardedCommand {
  readonly client: TappedClient;
  /** When forwarding began (`performance.now()`). */
  readonly startedAt: number;
  /** The request as the client sent it (after OP_COMPRESSED was unwrapped). */
  readonly request: WireMessage;
  /** The bytes forwarded (exhaustAllowed cleared); a tap copies what it keeps. */
  readonly forwarded: Buffer;
  readonly cmd: CommandInfo;
  readonly server: string;
  /** The reply's size and body (undefined: no reply — fire-and-forget, or the proxy's own error). */
  readonly replyBytes: number;
  readonly replyBody: Buffer | undefined;
  readonly replyInfo: ReplyInfo | undefined;
  /** The proxy's error reply when the request failed on the way. */
  readonly error: Document | undefined;
  /** From `startedAt` to the outcome, ms. */
  readonly durationMs: number;
  /** The command failed: the server answered `ok: 0`, or the proxy answered with its own error. */
  readonly failed: boolean;
  /** A failed command's code (the server's, or the proxy's error's); undefined otherwise or when none was given. */
  readonly errorCode: number | undefined;
}

/** Something that watches forwarded commands; `wants` is checked first, cheaply, on every command. */
export interface TrafficTap {
  readonly active: boolean;
  forwarded(event: ForwardedCommand): void;
}

/** Commands never copied anywhere: the handshake and whatever carries credentials. */
const NEVER_TAPPED = new Set([
  'hello', 'ismaster', 'saslstart', 'saslcontinue', 'authenticate', 'getnonce', 'logout',
  'createuser', 'updateuser', 'copydbsaslstart', 'copydbgetnonce', 'copydb',
]);

export function isTappable(name: string): boolean {
  return !NEVER_TAPPED.has(name.toLowerCase());
}

/**
 * A namespace filter from `db`, `db.collection` or `db.*` entries (empty: everything). A
 * command that names no collection (commitTransaction, listCollections) matches on its db.
 */
export class NamespaceFilter {
  private readonly dbs = new Set<string>();
  private readonly namespaces = new Set<string>();

  constructor(entries: readonly string[]) {
    for (const e of entries) {
      const dot = e.indexOf('.');
      if (dot < 0 || e.slice(dot + 1) === '*') this.dbs.add(dot < 0 ? e : e.slice(0, dot));
      else this.namespaces.add(e);
    }
  }

  get all(): boolean {
    return this.dbs.size === 0 && this.namespaces.size === 0;
  }

  matches(db: string | undefined, collection: string | undefined): boolean {
    if (this.all) return true;
    if (db === undefined) return false;
    if (this.dbs.has(db)) return true;
    if (collection === undefined) return [...this.namespaces].some((ns) => ns.startsWith(`${db}.`));
    return this.namespaces.has(`${db}.${collection}`);
  }
}

const WRITING_STAGES = [Buffer.from('$out\0'), Buffer.from('$merge\0')];

/**
 * Whether a command's bytes name a `$out` or `$merge` stage (an aggregate that writes). A byte
 * search: a string value containing one of those names followed by NUL also counts, which only
 * errs on the side of treating a read as a write.
 */
export function writesThroughPipeline(bytes: Buffer): boolean {
  return WRITING_STAGES.some((s) => bytes.includes(s));
}

/** Which collection a command reads or writes (getMore and killCursors name it in `collection`). */
export function collectionOf(cmd: CommandInfo): string | undefined {
  return cmd.cursorCollection ?? cmd.collection;
}
