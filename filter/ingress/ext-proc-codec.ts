/**
 * The protobuf codec of the two messages on the ext_proc hot path, written out by hand:
 * `ProcessingRequest` (decoded once per client read) and `ProcessingResponse` (encoded once
 * per acknowledgement and once per reply). proto/…/network_external_processor.proto stays the
 * contract: test/ext-proc-codec.property.test.ts checks that this codec produces exactly the
 * bytes, and decodes exactly the objects, that the protobufjs codec loaded from that file does
 * (with the options the ingress used before: keepCase, enums as strings, oneof virtual fields,
 * no defaults). Fields of the messages (numbers as in the proto):
 *
 *   ProcessingRequest  { Data read_data = 1; Data write_data = 2; (oneof request)
 *                        config.core.v3.Metadata metadata = 3; map<string, Struct> attributes = 4; }
 *   ProcessingResponse { Data read_data = 1; Data write_data = 2; (oneof response)
 *                        DataProcessedStatus data_processing_status = 3; ConnectionStatus connection_status = 4;
 *                        google.protobuf.Struct dynamic_metadata = 5; bool close_stream_to_ext_proc_server = 6; }
 *   Data               { bytes data = 1; bool end_of_stream = 2; }
 *   Struct             { map<string, Value> fields = 1; }
 *   Value              { oneof kind { NullValue null_value = 1; double number_value = 2; string string_value = 3;
 *                        bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6; } }
 *   ListValue          { repeated Value values = 1; }
 *
 * `metadata` (3) is skipped when decoding: Envoy sends it only with
 * `metadata_options.forwarding_namespaces`, which mongoplex does not read.
 * As with protobufjs, a field is written when it is present (not undefined or null), even
 * when it holds its default value.
 */

export interface Data {
  data?: Buffer;
  end_of_stream?: boolean;
}

export interface StructValue {
  kind?: string;
  nullValue?: 'NULL_VALUE' | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: Struct;
  listValue?: { values?: StructValue[] };
}

export interface Struct {
  fields?: Record<string, StructValue>;
}

export interface ProcessingRequest {
  read_data?: Data;
  write_data?: Data;
  request?: 'read_data' | 'write_data';
  attributes?: Record<string, Struct>;
}

const DATA_PROCESSED = { UNKNOWN: 0, UNMODIFIED: 1, MODIFIED: 2 } as const;
const CONNECTION_STATUS = { CONTINUE: 0, CLOSE: 1, CLOSE_RST: 2 } as const;

export interface ProcessingResponse {
  read_data?: Data;
  write_data?: Data;
  data_processing_status?: keyof typeof DATA_PROCESSED;
  connection_status?: keyof typeof CONNECTION_STATUS;
  dynamic_metadata?: Struct;
  close_stream_to_ext_proc_server?: boolean;
}

// ---- encoding: sizes first, then one buffer written front to back ----

function varintSize(v: number): number {
  if (v < 0) return 10; // a negative int32 is sign-extended to 64 bits
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

const present = <T>(v: T | undefined | null): v is T => v !== undefined && v !== null;

/** Bytes of a length-delimited field: tag, length, body. */
const delimited = (bodySize: number): number => 1 + varintSize(bodySize) + bodySize;

function dataSize(d: Data): number {
  let n = 0;
  if (present(d.data)) n += delimited(d.data.length);
  if (present(d.end_of_stream)) n += 2;
  return n;
}

function valueSize(v: StructValue): number {
  let n = 0;
  if (present(v.nullValue)) n += 1 + varintSize(v.nullValue === 'NULL_VALUE' ? 0 : v.nullValue);
  if (present(v.numberValue)) n += 9;
  if (present(v.stringValue)) n += delimited(Buffer.byteLength(v.stringValue));
  if (present(v.boolValue)) n += 2;
  if (present(v.structValue)) n += delimited(structSize(v.structValue));
  if (present(v.listValue)) n += delimited(listSize(v.listValue));
  return n;
}

function listSize(l: { values?: StructValue[] }): number {
  let n = 0;
  for (const v of l.values ?? []) n += delimited(valueSize(v));
  return n;
}

function entrySize(key: string, value: StructValue): number {
  return delimited(Buffer.byteLength(key)) + delimited(valueSize(value));
}

function structSize(s: Struct): number {
  let n = 0;
  if (s.fields) for (const k of Object.keys(s.fields)) n += delimited(entrySize(k, s.fields[k]!));
  return n;
}

class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(v: number): void {
    if (v < 0) {
      // Two's complement over 64 bits, as protobuf writes a negative enum or int32.
      let big = BigInt.asUintN(64, BigInt(v));
      while (big >= 0x80n) {
        this.buf[this.pos++] = Number(big & 0x7fn) | 0x80;
        big >>= 7n;
      }
      this.buf[this.pos++] = Number(big);
      return;
    }
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  tag(field: number, wire: number): void {
    this.buf[this.pos++] = (field << 3) | wire;
  }

  bytes(field: number, b: Uint8Array): void {
    this.tag(field, 2);
    this.varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  string(field: number, s: string): void {
    this.tag(field, 2);
    this.varint(Buffer.byteLength(s));
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  bool(field: number, b: boolean): void {
    this.tag(field, 0);
    this.buf[this.pos++] = b ? 1 : 0;
  }

  data(field: number, d: Data): void {
    this.tag(field, 2);
    this.varint(dataSize(d));
    if (present(d.data)) this.bytes(1, d.data);
    if (present(d.end_of_stream)) this.bool(2, d.end_of_stream);
  }

  value(v: StructValue): void {
    if (present(v.nullValue)) {
      this.tag(1, 0);
      this.varint(v.nullValue === 'NULL_VALUE' ? 0 : v.nullValue);
    }
    if (present(v.numberValue)) {
      this.tag(2, 1);
      this.buf.writeDoubleLE(v.numberValue, this.pos);
      this.pos += 8;
    }
    if (present(v.stringValue)) this.string(3, v.stringValue);
    if (present(v.boolValue)) this.bool(4, v.boolValue);
    if (present(v.structValue)) {
      this.tag(5, 2);
      this.varint(structSize(v.structValue));
      this.struct(v.structValue);
    }
    if (present(v.listValue)) {
      this.tag(6, 2);
      this.varint(listSize(v.listValue));
      for (const item of v.listValue.values ?? []) {
        this.tag(1, 2);
        this.varint(valueSize(item));
        this.value(item);
      }
    }
  }

  struct(s: Struct): void {
    if (!s.fields) return;
    for (const k of Object.keys(s.fields)) {
      const v = s.fields[k]!;
      this.tag(1, 2);
      this.varint(entrySize(k, v));
      this.string(1, k);
      this.tag(2, 2);
      this.varint(valueSize(v));
      this.value(v);
    }
  }
}

function enumValue<T extends Record<string, number>>(names: T, v: keyof T | number): number {
  return typeof v === 'number' ? v : names[v]!;
}

export function encodeResponse(r: ProcessingResponse): Buffer {
  let size = 0;
  if (present(r.read_data)) size += delimited(dataSize(r.read_data));
  if (present(r.write_data)) size += delimited(dataSize(r.write_data));
  const status = present(r.data_processing_status) ? enumValue(DATA_PROCESSED, r.data_processing_status) : undefined;
  const connection = present(r.connection_status) ? enumValue(CONNECTION_STATUS, r.connection_status) : undefined;
  if (status !== undefined) size += 1 + varintSize(status);
  if (connection !== undefined) size += 1 + varintSize(connection);
  if (present(r.dynamic_metadata)) size += delimited(structSize(r.dynamic_metadata));
  if (present(r.close_stream_to_ext_proc_server)) size += 2;
  const w = new Writer(Buffer.allocUnsafe(size));
  if (present(r.read_data)) w.data(1, r.read_data);
  if (present(r.write_data)) w.data(2, r.write_data);
  if (status !== undefined) {
    w.tag(3, 0);
    w.varint(status);
  }
  if (connection !== undefined) {
    w.tag(4, 0);
    w.varint(connection);
  }
  if (present(r.dynamic_metadata)) {
    w.tag(5, 2);
    w.varint(structSize(r.dynamic_metadata));
    w.struct(r.dynamic_metadata);
  }
  if (present(r.close_stream_to_ext_proc_server)) w.bool(6, r.close_stream_to_ext_proc_server);
  if (w.pos !== size) throw new Error(`ext_proc codec: wrote ${w.pos} bytes of ${size}`);
  return w.buf;
}

// ---- decoding ----

export class DecodeError extends Error {}

class Reader {
  pos: number;
  constructor(readonly buf: Buffer, start: number, readonly end: number) {
    this.pos = start;
  }

  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new DecodeError('truncated varint');
      const b = this.buf[this.pos++]!;
      if (i < 7) v += (b & 0x7f) * mul; // beyond 49 bits only a sign extension can follow
      mul *= 128;
      if (b < 0x80) return v;
    }
    throw new DecodeError('varint longer than 10 bytes');
  }

  /** A varint read as protobuf's int32 (an enum): the low 32 bits, signed. */
  int32(): number {
    const start = this.pos;
    const v = this.varint();
    return this.pos - start >= 10 || v >= 2 ** 32 ? Number(BigInt.asIntN(32, BigInt.asUintN(64, this.rawVarint(start)))) : v | 0;
  }

  private rawVarint(start: number): bigint {
    let v = 0n;
    let shift = 0n;
    for (let p = start; p < this.pos; p++) {
      v |= BigInt(this.buf[p]! & 0x7f) << shift;
      shift += 7n;
    }
    return v;
  }

  /** The bounds of a length-delimited field's body; the reader moves past it. */
  sub(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start) throw new DecodeError('length beyond the message');
    this.pos = start + len;
    return [start, start + len];
  }

  skip(wire: number): void {
    switch (wire) {
      case 0:
        this.varint();
        return;
      case 1:
        this.advance(8);
        return;
      case 2:
        this.sub();
        return;
      case 5:
        this.advance(4);
        return;
      default:
        throw new DecodeError(`unsupported wire type ${wire}`);
    }
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) throw new DecodeError('truncated field');
    this.pos += n;
  }

  double(): number {
    this.advance(8);
    return this.buf.readDoubleLE(this.pos - 8);
  }
}

/** Calls `field` for each field of the message in buf[start, end), with a reader positioned at its value. */
function each(buf: Buffer, start: number, end: number, field: (inner: Reader, number: number, wire: number) => void): void {
  const inner = new Reader(buf, start, end);
  while (inner.pos < end) {
    const key = inner.varint();
    const number = Math.floor(key / 8);
    const wire = key & 7;
    if (number === 0) throw new DecodeError('field number 0');
    field(inner, number, wire);
  }
}

function decodeData(buf: Buffer, start: number, end: number): Data {
  const d: Data = {};
  each(buf, start, end, (f, n, wire) => {
    if (n === 1 && wire === 2) {
      const [s, e] = f.sub();
      d.data = f.buf.subarray(s, e);
    } else if (n === 2 && wire === 0) {
      d.end_of_stream = f.varint() !== 0;
    } else f.skip(wire);
  });
  return d;
}

const VALUE_KINDS = ['', 'nullValue', 'numberValue', 'stringValue', 'boolValue', 'structValue', 'listValue'] as const;

function decodeValue(buf: Buffer, start: number, end: number): StructValue {
  const v: StructValue = {};
  each(buf, start, end, (f, n, wire) => {
    if (n === 1 && wire === 0) {
      const e = f.int32();
      v.nullValue = e === 0 ? 'NULL_VALUE' : e; // an unknown enum value stays a number
    } else if (n === 2 && wire === 1) v.numberValue = f.double();
    else if (n === 3 && wire === 2) v.stringValue = utf8(f);
    else if (n === 4 && wire === 0) v.boolValue = f.varint() !== 0;
    else if (n === 5 && wire === 2) v.structValue = decodeStruct(f.buf, ...f.sub());
    else if (n === 6 && wire === 2) {
      const values: StructValue[] = [];
      each(f.buf, ...f.sub(), (l, ln, lwire) => {
        if (ln === 1 && lwire === 2) values.push(decodeValue(l.buf, ...l.sub()));
        else l.skip(lwire);
      });
      v.listValue = values.length > 0 ? { values } : {};
    } else {
      f.skip(wire);
      return;
    }
    if (n <= 6) v.kind = VALUE_KINDS[n];
  });
  return v;
}

function utf8(f: Reader): string {
  const [s, e] = f.sub();
  return f.buf.toString('utf8', s, e);
}

/** Sets a map entry as an own property, whatever its key (`__proto__` included). */
function setEntry<V>(map: Record<string, V>, key: string, value: V): void {
  Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A map entry `{key = 1; value = 2}`. */
function mapEntry<V>(f: Reader, value: (buf: Buffer, start: number, end: number) => V, empty: () => V): [string, V] {
  let key = '';
  let v: V | undefined;
  each(f.buf, ...f.sub(), (e, n, wire) => {
    if (n === 1 && wire === 2) key = utf8(e);
    else if (n === 2 && wire === 2) v = value(e.buf, ...e.sub());
    else e.skip(wire);
  });
  return [key, v ?? empty()];
}

function decodeStruct(buf: Buffer, start: number, end: number): Struct {
  const s: Struct = {};
  each(buf, start, end, (f, n, wire) => {
    if (n === 1 && wire === 2) {
      const [k, v] = mapEntry(f, decodeValue, () => ({}));
      setEntry((s.fields ??= {}), k, v);
    } else f.skip(wire);
  });
  return s;
}

/** Decodes a ProcessingRequest; throws DecodeError on a malformed one. */
export function decodeRequest(buf: Buffer): ProcessingRequest {
  const req: ProcessingRequest = {};
  each(buf, 0, buf.length, (f, n, wire) => {
    if ((n === 1 || n === 2) && wire === 2) {
      const d = decodeData(f.buf, ...f.sub());
      // A oneof: the last member on the wire wins.
      delete req.read_data;
      delete req.write_data;
      if (n === 1) req.read_data = d;
      else req.write_data = d;
      req.request = n === 1 ? 'read_data' : 'write_data';
    } else if (n === 4 && wire === 2) {
      const [k, v] = mapEntry(f, decodeStruct, () => ({}));
      setEntry((req.attributes ??= {}), k, v);
    } else f.skip(wire);
  });
  return req;
}
