import { createHash, randomBytes } from 'node:crypto';
import {
  Binary, BSON, BSONRegExp, Code, Decimal128, Double, Int32, Long, ObjectId, Timestamp, type Document,
} from 'bson';

/**
 * Redaction for captures: every value in what a command reads or writes — filters (also a
 * pipeline's `$match`), update documents, inserted documents — is replaced by a placeholder of
 * the same BSON type (and, for strings and binaries, the same length). Field names, operators,
 * collection names, sorts, projections and limits are kept: they are the workload's shape.
 *
 * Placeholders are pseudonyms: derived with SHAKE-256 from a key made at random for each
 * capture (never written anywhere), so one value gets the same placeholder throughout the
 * capture — an `_id` inserted and later looked up still matches in a replay — while nothing
 * of the original value is in the file.
 */

/** Command fields whose values are data, by command (lower-case) — `*`: any command. */
const DATA_FIELDS: Record<string, readonly string[]> = {
  '*': ['filter', 'query', 'q', 'let'],
  insert: ['documents'],
  update: ['updates'],
  delete: ['deletes'],
  findandmodify: ['update'],
  aggregate: ['pipeline'],
  count: ['query'],
  distinct: ['query'],
  bulkwrite: ['ops'],
};
/** Inside a write's statement documents (update/delete/bulkWrite items). */
const STATEMENT_DATA_FIELDS = new Set(['q', 'u', 'filter', 'document', 'updateMods', 'update']);

/** Pipeline stages whose expressions may hold literals (an update pipeline's `$set`, `$addFields` in an aggregation). */
const EXPRESSION_STAGES = ['$set', '$addFields', '$replaceWith', '$replaceRoot'];

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

export class Redactor {
  private readonly key = randomBytes(32);

  /** Redacts a command body; `sequences` (e.g. `documents`, `updates`) are redacted in the same way. */
  redactCommand(body: Buffer, sequences: ReadonlyArray<{ identifier: string; documents: readonly Buffer[] }>): { body: Buffer; sequences: Array<{ identifier: string; documents: Buffer[] }> } {
    const doc = BSON.deserialize(body, { promoteValues: false, bsonRegExp: true });
    const name = (Object.keys(doc)[0] ?? '').toLowerCase();
    const fields = new Set([...DATA_FIELDS['*']!, ...(DATA_FIELDS[name] ?? [])]);
    for (const f of fields) if (f in doc) doc[f] = this.redactField(f, doc[f], name);
    return {
      body: Buffer.from(BSON.serialize(doc)),
      sequences: sequences.map((s) => ({
        identifier: s.identifier,
        documents: s.documents.map((d) => {
          const item = BSON.deserialize(d, { promoteValues: false, bsonRegExp: true });
          return Buffer.from(BSON.serialize(this.redactField(s.identifier, item, name) as Document));
        }),
      })),
    };
  }

  private redactField(field: string, value: unknown, command: string): unknown {
    if (field === 'pipeline' && Array.isArray(value)) return value.map((stage) => this.redactStage(stage));
    if (field === 'documents' || field === 'query' || field === 'filter' || field === 'q' || field === 'let') return this.value(value);
    if (field === 'update' && command === 'findandmodify') return this.value(value);
    // updates / deletes / ops: statement documents whose data sits in known fields.
    const statement = (s: unknown): unknown => {
      if (!isDocument(s)) return this.value(s);
      const out: Document = {};
      for (const [k, v] of Object.entries(s)) out[k] = STATEMENT_DATA_FIELDS.has(k) ? (k === 'u' && Array.isArray(v) ? v.map((st) => this.redactStage(st)) : this.value(v)) : v;
      return out;
    };
    return Array.isArray(value) ? value.map(statement) : statement(value);
  }

  /** A pipeline stage: `$match` (and `$geoNear.query`) hold data; other stages are shape. */
  private redactStage(stage: unknown): unknown {
    if (!isDocument(stage)) return stage;
    const out: Document = { ...stage };
    if ('$match' in out) out.$match = this.value(out.$match);
    for (const k of EXPRESSION_STAGES) if (k in out) out[k] = this.expression(out[k]);
    if (isDocument(out.$geoNear) && 'query' in out.$geoNear) out.$geoNear = { ...out.$geoNear, query: this.value(out.$geoNear.query) };
    if (isDocument(out.$facet)) {
      out.$facet = Object.fromEntries(Object.entries(out.$facet).map(([n, p]) => [n, Array.isArray(p) ? p.map((st) => this.redactStage(st)) : p]));
    }
    for (const k of ['$lookup', '$unionWith']) {
      const sub = out[k];
      if (isDocument(sub) && Array.isArray(sub.pipeline)) out[k] = { ...sub, pipeline: sub.pipeline.map((st) => this.redactStage(st)) };
    }
    return out;
  }

  /** Every value inside `v` replaced; keys (field names, operators) kept. */
  value(v: unknown): unknown {
    if (Array.isArray(v)) return v.map((x) => this.value(x));
    if (v === null || v === undefined || typeof v !== 'object') return this.scalar(v);
    if (isDocument(v)) {
      const out: Document = {};
      for (const [k, x] of Object.entries(v)) out[k] = k === '$expr' ? this.expression(x) : this.value(x);
      return out;
    }
    return this.scalar(v);
  }

  /**
   * An aggregation expression: literals are replaced, but `$field` paths and `$$variables` are
   * names, not data, and are kept so the expression still means the same thing.
   */
  private expression(v: unknown): unknown {
    if (typeof v === 'string' && v.startsWith('$')) return v;
    if (Array.isArray(v)) return v.map((x) => this.expression(x));
    if (isDocument(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.expression(x)]));
    return this.scalar(v);
  }

  private bytes(tag: string, value: Uint8Array | string, length: number): Buffer {
    return createHash('shake256', { outputLength: Math.max(1, length) }).update(this.key).update(tag).update(value).digest();
  }

  private scalar(v: unknown): unknown {
    if (v === null || v === undefined) return v;
    if (typeof v === 'boolean') return (this.bytes('b', String(v), 1)[0]! & 1) === 1;
    if (typeof v === 'string') return this.string(v);
    if (typeof v === 'number') return this.bytes('n', String(v), 4).readInt32LE(0);
    if (v instanceof Int32) return new Int32(this.bytes('i', String(v.value), 4).readInt32LE(0));
    if (v instanceof Double) return new Double(this.bytes('d', String(v.value), 4).readUInt32LE(0) / 1024);
    if (v instanceof Long) return Long.fromBigInt(this.bytes('l', v.toString(), 8).readBigInt64LE(0));
    if (v instanceof Decimal128) return Decimal128.fromString(String(this.bytes('m', v.toString(), 4).readUInt32LE(0)));
    if (v instanceof ObjectId) return new ObjectId(this.bytes('o', v.id, 12));
    if (v instanceof Binary) return new Binary(this.bytes('x', v.buffer, v.buffer.length), v.sub_type);
    if (v instanceof Date) return new Date(this.bytes('t', String(v.getTime()), 4).readUInt32LE(0) * 1000);
    if (v instanceof Timestamp) return new Timestamp({ t: this.bytes('s', v.toString(), 4).readUInt32LE(0), i: 1 });
    if (v instanceof BSONRegExp) return new BSONRegExp(this.string(v.pattern), v.options);
    if (v instanceof Code) return new Code(this.string(v.code));
    return v; // MinKey, MaxKey, and other value-less types
  }

  private string(s: string): string {
    const length = [...s].length;
    const b = this.bytes('s', s, length);
    let out = '';
    for (let i = 0; i < length; i++) out += ALPHABET[b[i]! & 31];
    return out;
  }
}

function isDocument(v: unknown): v is Document {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && (v.constructor === Object || Object.getPrototypeOf(v) === null);
}
