import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR, SERVICE_PROTO, PROCESS_METHOD_PATH, REFERENCE_LOAD_OPTIONS } from '../filter/ingress/ext-proc';
import { decodeRequest, encodeResponse, DecodeError, type ProcessingRequest, type ProcessingResponse, type StructValue } from '../filter/ingress/ext-proc-codec';

/**
 * The hand-written ext_proc codec against the reference: protobufjs, loaded by proto-loader
 * from the hand-written proto (the contract), with the options the ingress used before the
 * codec existed. Any response encodes to exactly the reference's bytes; any request the
 * reference encodes decodes to exactly the reference's object.
 */

const reference = protoLoader.loadSync(SERVICE_PROTO, { includeDirs: [PROTO_DIR], ...REFERENCE_LOAD_OPTIONS })['envoy.service.network_ext_proc.v3.NetworkExternalProcessor'] as Record<string, protoLoader.MethodDefinition<ProcessingRequest, ProcessingResponse>>;
const process = reference.Process!;

const arbBytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
const arbData = fc.record({ data: arbBytes, end_of_stream: fc.boolean() }, { requiredKeys: [] });
const arbKey = fc.string({ unit: 'grapheme', maxLength: 12 });

/** A Struct Value of one kind, nested a few levels (the reference keeps every kind set, so one per value). */
const { value: arbValue } = fc.letrec<{ value: StructValue; struct: { fields?: Record<string, StructValue> } }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant({ nullValue: 'NULL_VALUE' as const }),
    fc.double({ noNaN: true }).map((numberValue) => ({ numberValue })),
    fc.string({ unit: 'grapheme', maxLength: 40 }).map((stringValue) => ({ stringValue })),
    fc.boolean().map((boolValue) => ({ boolValue })),
    tie('struct').map((structValue) => ({ structValue })),
    fc.array(tie('value'), { maxLength: 3 }).map((values) => ({ listValue: { values } })),
  ),
  struct: fc.record({ fields: fc.dictionary(arbKey, tie('value'), { maxKeys: 3 }) }, { requiredKeys: [] }),
}));
const arbStruct = fc.record({ fields: fc.dictionary(arbKey, arbValue, { maxKeys: 4 }) }, { requiredKeys: [] });

const arbResponse: fc.Arbitrary<ProcessingResponse> = fc.tuple(
  fc.oneof(fc.constant({}), arbData.map((read_data) => ({ read_data })), arbData.map((write_data) => ({ write_data }))),
  fc.record({
    data_processing_status: fc.constantFrom('UNKNOWN', 'UNMODIFIED', 'MODIFIED'),
    connection_status: fc.constantFrom('CONTINUE', 'CLOSE', 'CLOSE_RST'),
    dynamic_metadata: arbStruct,
    close_stream_to_ext_proc_server: fc.boolean(),
  }, { requiredKeys: [] }),
).map(([oneof, rest]) => ({ ...oneof, ...rest }) as ProcessingResponse);

const arbRequest = fc.tuple(
  fc.oneof(fc.constant({}), arbData.map((read_data) => ({ read_data })), arbData.map((write_data) => ({ write_data }))),
  fc.record({ attributes: fc.dictionary(arbKey, arbStruct, { maxKeys: 3 }) }, { requiredKeys: [] }),
  fc.option(fc.record({ filter_metadata: fc.dictionary(arbKey, arbStruct, { maxKeys: 2 }) }), { nil: undefined }),
).map(([oneof, rest, metadata]) => ({ ...oneof, ...rest, ...(metadata ? { metadata } : {}) }));

/** What the hot path sends: acknowledgements, replies with and without dynamic metadata, closes. */
const SENT: ProcessingResponse[] = [
  { read_data: { data: Buffer.alloc(0), end_of_stream: false }, data_processing_status: 'MODIFIED' },
  { write_data: { data: Buffer.from('reply bytes'), end_of_stream: false }, data_processing_status: 'MODIFIED' },
  { write_data: { data: Buffer.alloc(70_000, 7), end_of_stream: false }, data_processing_status: 'MODIFIED', dynamic_metadata: { fields: { mongoplex: { structValue: { fields: { command: { stringValue: 'find' }, db: { stringValue: 'shop' }, collection: { stringValue: 'orders' } } } } } } },
  { connection_status: 'CLOSE', data_processing_status: 'UNMODIFIED' },
];

describe('the ext_proc codec agrees byte for byte with the proto contract', () => {
  it('encodes the responses the ingress sends exactly as protobufjs does', () => {
    for (const r of SENT) assert.deepEqual(encodeResponse(r), process.responseSerialize(r));
  });

  it('encodes any response exactly as protobufjs does', () => {
    fc.assert(fc.property(arbResponse, (r) => {
      assert.deepEqual(encodeResponse(r), process.responseSerialize(r));
    }), { numRuns: 2000 });
  });

  it('decodes any request exactly as protobufjs does (metadata, which mongoplex does not read, skipped)', () => {
    fc.assert(fc.property(arbRequest, (r) => {
      const bytes = process.requestSerialize(r as ProcessingRequest);
      const expected = { ...(process.requestDeserialize(bytes) as unknown as Record<string, unknown>) };
      delete expected.metadata;
      assert.deepEqual(decodeRequest(bytes), expected);
    }), { numRuns: 2000 });
  });

  it("decodes Envoy's first read with the client's address", () => {
    const first = { read_data: { data: Buffer.from([1, 2, 3]) }, attributes: { 'envoy.filters.network.ext_proc': { fields: { 'source.address': { stringValue: '10.1.2.3:5555' } } } } };
    const decoded = decodeRequest(process.requestSerialize(first as ProcessingRequest));
    assert.equal(decoded.attributes?.['envoy.filters.network.ext_proc']?.fields?.['source.address']?.stringValue, '10.1.2.3:5555');
    assert.deepEqual(decoded.read_data?.data, Buffer.from([1, 2, 3]));
  });

  it('refuses truncated and malformed requests with a DecodeError, never a wrong object', () => {
    fc.assert(fc.property(arbRequest, fc.nat(), (r, cut) => {
      const bytes = process.requestSerialize(r as ProcessingRequest);
      if (bytes.length === 0) return;
      const truncated = bytes.subarray(0, cut % bytes.length);
      let refErr: unknown;
      try {
        process.requestDeserialize(truncated);
      } catch (err) {
        refErr = err;
      }
      try {
        decodeRequest(truncated);
        // The reference accepted it too (cut at a field boundary).
        assert.equal(refErr, undefined);
      } catch (err) {
        assert.ok(err instanceof DecodeError, String(err));
      }
    }), { numRuns: 1000 });
    assert.throws(() => decodeRequest(Buffer.from([0x0a, 0x05, 0x0a])), DecodeError);
    assert.throws(() => decodeRequest(Buffer.from([0x0f])), DecodeError);
  });

  it('serves the method at the path the proto names', () => {
    assert.equal(process.path, PROCESS_METHOD_PATH);
    assert.equal(process.requestStream && process.responseStream, true);
  });
});
