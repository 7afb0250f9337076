import { onDemand } from 'bson';
import { ErrorCode, protocolError, type KnownError } from './errors';

/**
 * Lazy reads of the few fields the proxy routes on, straight from BSON bytes, using the
 * `bson` package's on-demand element scanner (no full deserialization on the hot path).
 */

const T_DOUBLE = 1, T_STRING = 2, T_BOOL = 8, T_INT32 = 16, T_INT64 = 18;
/** BSON element types of embedded documents and arrays. */
export const T_DOCUMENT = 3, T_ARRAY = 4;

/** One element of a BSON document: its type, where its name is, where its value is (offset, length). */
export type Element = readonly [type: number, nameOffset: number, nameLength: number, offset: number, length: number];

/** The top-level elements of the document at `offset` (InvalidBSON when it is malformed). */
export function elements(doc: Buffer, offset = 0): Element[] {
  try {
    return [...onDemand.parseToElements(doc, offset)] as Element[];
  } catch (err) {
    throw protocolError(`invalid BSON: ${(err as Error).message}`, ErrorCode.InvalidBSON);
  }
}

export function nameOf(doc: Buffer, e: Element): string {
  return doc.toString('utf8', e[1], e[1] + e[2]);
}

function stringOf(doc: Buffer, e: Element): string | undefined {
  return e[0] === T_STRING ? doc.toString('utf8', e[3] + 4, e[3] + e[4] - 1) : undefined;
}

export function numberOf(doc: Buffer, e: Element): number | bigint | undefined {
  switch (e[0]) {
    case T_INT32: return doc.readInt32LE(e[3]);
    case T_INT64: return doc.readBigInt64LE(e[3]);
    case T_DOUBLE: return doc.readDoubleLE(e[3]);
    case T_BOOL: return doc[e[3]] ? 1 : 0;
    default: return undefined;
  }
}

function toBigInt(v: number | bigint | undefined): bigint | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'bigint') return v;
  return Number.isInteger(v) ? BigInt(v) : undefined;
}

/** The client's `$readPreference`, as sent. */
export interface ReadPreference {
  readonly mode: string;
  /** Tag sets in order of preference (an empty set matches any server). */
  readonly tags: ReadonlyArray<Record<string, string>>;
  readonly maxStalenessSeconds: number | undefined;
  /** Why a mongos would refuse it as sent (its parse rules), whatever the deployment; undefined: valid. */
  readonly problem: ReadPreferenceProblem | undefined;
}

export interface ReadPreferenceProblem {
  readonly error: KnownError;
  readonly message: string;
}

/** What the proxy needs to know about a command request. */
export interface CommandInfo {
  /** The command name as sent (first key of the body). */
  readonly name: string;
  readonly db: string | undefined;
  /** String value of the first key: the collection, for collection-level commands. */
  readonly collection: string | undefined;
  readonly hasTxnNumber: boolean;
  /** `autocommit: false` is present: the command runs inside a multi-statement transaction. */
  readonly inTransaction: boolean;
  readonly startTransaction: boolean;
  /** Raw bytes of `lsid.id`, hex, when present. */
  readonly lsid: string | undefined;
  /** The whole `lsid` document's BSON, to speak for the session later (e.g. abortTransaction). */
  readonly lsidDocument: Buffer | undefined;
  readonly txnNumber: bigint | undefined;
  /** getMore's cursor id. */
  readonly cursorId: bigint | undefined;
  /** getMore's `collection` / killCursors's collection. */
  readonly cursorCollection: string | undefined;
  /** `$db.cursorCollection`: the namespace a cursor route is keyed by. */
  readonly cursorNs: string | undefined;
  /** killCursors's `cursors` array. */
  readonly killCursorIds: bigint[] | undefined;
  /** endSessions / killSessions: each listed session's `id`, hex (as `lsid`). */
  readonly sessionIds: string[] | undefined;
  /** The write concern asks for no acknowledgement (`w: 0`). */
  readonly unacknowledged: boolean;
  /** The command's own time limit (`maxTimeMS`), when positive. */
  readonly maxTimeMS: number | undefined;
  readonly readPreference: ReadPreference | undefined;
  /** The calling code the `comment` names (see `callsiteOf`). */
  readonly callsite: string | undefined;
}

/** Longest callsite kept; longer ones are cut. */
const MAX_CALLSITE_LENGTH = 128;

/**
 * The callsite a command's `comment` carries: `{callsite: "…"}` as a document, or a JSON string
 * with `callsite` or `callingFunction` (the convention Envoy's mongo_proxy reads from
 * `$comment`). Any other comment names no callsite.
 */
function callsiteOf(body: Buffer, e: Element): string | undefined {
  let found: unknown;
  if (e[0] === T_DOCUMENT) {
    for (const s of elements(body, e[3])) {
      const k = nameOf(body, s);
      if (k === 'callsite' || k === 'callingFunction') found = stringOf(body, s);
    }
  } else if (e[0] === T_STRING) {
    const text = stringOf(body, e)!;
    if (!text.startsWith('{')) return undefined;
    try {
      const parsed = JSON.parse(text) as Record<string, unknown>;
      found = parsed.callsite ?? parsed.callingFunction;
    } catch {
      return undefined;
    }
  }
  return typeof found === 'string' && found.length > 0 ? found.slice(0, MAX_CALLSITE_LENGTH) : undefined;
}

/** How many documents a cursor reply (`cursor.firstBatch` / `cursor.nextBatch`) carries; undefined for other replies. */
export function batchSize(body: Buffer): number | undefined {
  for (const e of elements(body)) {
    if (e[0] !== T_DOCUMENT || nameOf(body, e) !== 'cursor') continue;
    for (const s of elements(body, e[3])) {
      const k = nameOf(body, s);
      if (s[0] === T_ARRAY && (k === 'firstBatch' || k === 'nextBatch')) return elements(body, s[3]).length;
    }
  }
  return undefined;
}

/** BSON type names as the server spells them in "had the wrong type" errors. */
const TYPE_NAMES: Record<number, string> = { 1: 'double', 2: 'string', 3: 'object', 4: 'array', 5: 'binData', 7: 'objectId', 8: 'bool', 9: 'date', 10: 'null', 16: 'int', 17: 'timestamp', 18: 'long', 19: 'decimal' };

function typeName(e: Element): string {
  return TYPE_NAMES[e[0]] ?? `type ${e[0]}`;
}

function wrongType(field: string, expected: string, e: Element): ReadPreferenceProblem {
  return { error: ErrorCode.TypeMismatch, message: `"${field}" had the wrong type. Expected ${expected}, found ${typeName(e)}` };
}

const READ_PREFERENCE_MODES: ReadonlySet<string> = new Set(['primary', 'primaryPreferred', 'secondary', 'secondaryPreferred', 'nearest']);
/** The smallest maxStalenessSeconds a mongos accepts (ReadPreferenceSetting::kMinimalMaxStalenessValue). */
const MIN_MAX_STALENESS_SECONDS = 90;

/**
 * `$readPreference` as a mongos parses it (ReadPreferenceSetting::fromInnerBSON), in the same
 * order of checks and with the same codes: the mode, then the tags, then maxStalenessSeconds.
 */
function readPreferenceOf(body: Buffer, e: Element): ReadPreference {
  if (e[0] !== T_DOCUMENT) return { mode: 'primary', tags: [], maxStalenessSeconds: undefined, problem: { error: ErrorCode.TypeMismatch, message: `$readPreference has incorrect type: expected object but got ${typeName(e)}` } };
  let modeElement: Element | undefined;
  let tagsElement: Element | undefined;
  let stalenessElement: Element | undefined;
  for (const s of elements(body, e[3])) {
    const k = nameOf(body, s);
    if (k === 'mode') modeElement ??= s;
    else if (k === 'tags') tagsElement ??= s;
    else if (k === 'maxStalenessSeconds') stalenessElement ??= s;
  }
  const mode = modeElement && stringOf(body, modeElement);
  const tags = tagsElement?.[0] === T_ARRAY ? tagSetsOf(body, tagsElement) : [];
  const staleness = stalenessElement && numberOf(body, stalenessElement);
  const maxStalenessSeconds = staleness === undefined ? undefined : Number(staleness);
  const problem = readPreferenceProblem(modeElement, mode, tagsElement, tags, stalenessElement, maxStalenessSeconds);
  return { mode: mode ?? 'primary', tags, maxStalenessSeconds, problem };
}

/** Why a mongos would refuse this read preference, checked in its order; undefined: it would not. */
function readPreferenceProblem(
  modeElement: Element | undefined, mode: string | undefined,
  tagsElement: Element | undefined, tags: ReadonlyArray<Record<string, string>>,
  stalenessElement: Element | undefined, maxStalenessSeconds: number | undefined,
): ReadPreferenceProblem | undefined {
  if (!modeElement) return { error: ErrorCode.NoSuchKey, message: 'Missing expected field "mode"' };
  if (mode === undefined) return wrongType('mode', 'string', modeElement);
  if (!READ_PREFERENCE_MODES.has(mode)) {
    return { error: ErrorCode.BadValue, message: `Could not parse $readPreference mode '${mode}'. Only the modes 'primary', 'primaryPreferred', 'secondary', 'secondaryPreferred', and 'nearest' are supported. :: caused by :: Enumeration value '${mode}' for field 'mode' is not a valid value.` };
  }
  if (tagsElement && tagsElement[0] !== T_ARRAY) return wrongType('tags', 'array', tagsElement);
  const anyTag = tags.length === 0 || (tags.length === 1 && Object.keys(tags[0]!).length === 0);
  if (mode === 'primary' && !anyTag) return { error: ErrorCode.BadValue, message: 'Only empty tags are allowed with primary read preference' };
  if (stalenessElement && (maxStalenessSeconds === undefined || stalenessElement[0] === T_BOOL)) {
    return { error: ErrorCode.TypeMismatch, message: `Expected field "maxStalenessSeconds" to have numeric type, but found ${typeName(stalenessElement)}` };
  }
  if (maxStalenessSeconds === undefined || maxStalenessSeconds === 0) return undefined;
  if (!Number.isInteger(maxStalenessSeconds)) {
    return { error: ErrorCode.BadValue, message: `Expected field "maxStalenessSeconds" to have a value exactly representable as a 64-bit integer, but found ${maxStalenessSeconds}` };
  }
  if (maxStalenessSeconds < 0) return { error: ErrorCode.BadValue, message: 'maxStalenessSeconds must be a non-negative integer' };
  if (maxStalenessSeconds < MIN_MAX_STALENESS_SECONDS) return { error: ErrorCode.MaxStalenessOutOfRange, message: `maxStalenessSeconds value can not be less than ${MIN_MAX_STALENESS_SECONDS}` };
  if (mode === 'primary') return { error: ErrorCode.BadValue, message: 'maxStalenessSeconds can not be set for the primary mode' };
  return undefined;
}

function tagSetsOf(body: Buffer, e: Element): Array<Record<string, string>> {
  return elements(body, e[3]).filter((t) => t[0] === T_DOCUMENT).map((t) => {
    const set: Record<string, string> = {};
    for (const kv of elements(body, t[3])) {
      const v = stringOf(body, kv);
      if (v !== undefined) set[nameOf(body, kv)] = v;
    }
    return set;
  });
}

export function readCommand(body: Buffer): CommandInfo {
  const els = elements(body);
  const first = els[0];
  if (!first) throw protocolError('command document is empty', ErrorCode.FailedToParse);
  const name = nameOf(body, first);
  let db: string | undefined;
  let hasTxnNumber = false;
  let txnNumber: bigint | undefined;
  let lsidDocument: Buffer | undefined;
  let inTransaction = false;
  let startTransaction = false;
  let lsid: string | undefined;
  let cursorCollection: string | undefined;
  let killCursorIds: bigint[] | undefined;
  let unacknowledged = false;
  let readPreference: ReadPreference | undefined;
  let maxTimeMS: number | undefined;
  let callsite: string | undefined;
  const lname = name.toLowerCase();
  for (let i = 1; i < els.length; i++) {
    const e = els[i]!;
    const key = nameOf(body, e);
    switch (key) {
      case '$db': db = stringOf(body, e); break;
      case 'txnNumber':
        hasTxnNumber = true;
        txnNumber = toBigInt(numberOf(body, e));
        break;
      case 'autocommit': inTransaction = e[0] === T_BOOL && body[e[3]] === 0; break;
      case 'startTransaction': startTransaction = e[0] === T_BOOL && body[e[3]] === 1; break;
      case 'lsid':
        if (e[0] === T_DOCUMENT) {
          lsidDocument = body.subarray(e[3], e[3] + e[4]);
          for (const s of elements(body, e[3])) {
            if (nameOf(body, s) === 'id') lsid = body.toString('hex', s[3], s[3] + s[4]);
          }
        }
        break;
      case 'collection': if (lname === 'getmore') cursorCollection = stringOf(body, e); break;
      case 'cursors':
        if (lname === 'killcursors' && e[0] === T_ARRAY) {
          killCursorIds = [];
          for (const s of elements(body, e[3])) {
            const id = toBigInt(numberOf(body, s));
            if (id !== undefined) killCursorIds.push(id);
          }
        }
        break;
      case '$readPreference': readPreference = readPreferenceOf(body, e); break;
      case 'comment': callsite = callsiteOf(body, e); break;
      case 'maxTimeMS': {
        const v = Number(numberOf(body, e) ?? 0);
        maxTimeMS = v > 0 ? v : undefined;
        break;
      }
      case 'writeConcern':
        if (e[0] === T_DOCUMENT) {
          for (const s of elements(body, e[3])) {
            if (nameOf(body, s) === 'w' && numberOf(body, s) === 0) unacknowledged = true;
          }
        }
        break;
    }
  }
  const collection = stringOf(body, first);
  if (lname === 'killcursors') cursorCollection = collection;
  const cursorId = lname === 'getmore' ? toBigInt(numberOf(body, first)) : undefined;
  const sessionIds = (lname === 'endsessions' || lname === 'killsessions') && first[0] === T_ARRAY ? sessionIdsOf(body, first) : undefined;
  return {
    name, db, collection, hasTxnNumber, txnNumber, inTransaction, startTransaction, lsid, lsidDocument,
    cursorId, cursorCollection, cursorNs: cursorCollection === undefined ? undefined : `${db}.${cursorCollection}`,
    killCursorIds, sessionIds, unacknowledged, readPreference, maxTimeMS, callsite,
  };
}

/** The `id` of each session document in an array (`[{id: UUID}, …]`), hex. */
function sessionIdsOf(body: Buffer, array: Element): string[] {
  const ids: string[] = [];
  for (const d of elements(body, array[3])) {
    if (d[0] !== T_DOCUMENT) continue;
    for (const s of elements(body, d[3])) if (nameOf(body, s) === 'id') ids.push(body.toString('hex', s[3], s[3] + s[4]));
  }
  return ids;
}

/** The cursor a command reply opened or continued: `{cursor: {id, ns}}`. */
export interface ReplyCursor {
  readonly id: bigint;
  readonly ns: string | undefined;
}

/** What the proxy reads from a command reply. */
export interface ReplyInfo {
  readonly ok: boolean;
  readonly code: number | undefined;
  readonly cursor: ReplyCursor | undefined;
  /** killCursors reply: ids the server reports as killed or not found. */
  readonly cursorsGone: bigint[];
}

export function readReply(body: Buffer): ReplyInfo {
  let ok = false;
  let code: number | undefined;
  let cursor: ReplyCursor | undefined;
  const cursorsGone: bigint[] = [];
  for (const e of elements(body)) {
    const key = nameOf(body, e);
    if (key === 'ok') ok = numberOf(body, e) === 1;
    else if (key === 'code') {
      const c = numberOf(body, e);
      code = c === undefined ? undefined : Number(c);
    } else if (key === 'cursor' && e[0] === T_DOCUMENT) {
      let id: bigint | undefined;
      let ns: string | undefined;
      for (const s of elements(body, e[3])) {
        const k = nameOf(body, s);
        if (k === 'id') id = toBigInt(numberOf(body, s));
        else if (k === 'ns') ns = stringOf(body, s);
      }
      if (id !== undefined) cursor = { id, ns };
    } else if ((key === 'cursorsKilled' || key === 'cursorsNotFound' || key === 'cursorsUnknown') && e[0] === T_ARRAY) {
      for (const s of elements(body, e[3])) {
        const id = toBigInt(numberOf(body, s));
        if (id !== undefined) cursorsGone.push(id);
      }
    }
  }
  return { ok, code, cursor, cursorsGone };
}
