import { readFileSync } from 'node:fs';
import * as protobuf from 'protobufjs';
import descriptorJson from 'protobufjs/google/protobuf/descriptor.json';

/**
 * Envoy embeds the FileDescriptorProto of every API file it was built with. Reading it out of
 * the pinned binary gives the real field numbers of that exact release, to check the
 * hand-written protos in proto/ against.
 */

const FileDescriptorProto = protobuf.Root.fromJSON(descriptorJson as protobuf.INamespace).lookupType('google.protobuf.FileDescriptorProto');

function varint(b: Buffer, i: number): [number, number] {
  let r = 0;
  let shift = 0;
  for (;;) {
    const c = b[i++]!;
    r += (c & 0x7f) * 2 ** shift;
    shift += 7;
    if (c < 0x80) return [r, i];
  }
}

export interface DescribedField {
  name: string;
  number: number;
  type: string;
  typeName?: string;
  label: string;
}
export interface DescribedMessage {
  name: string;
  fields: DescribedField[];
  nested: DescribedMessage[];
  enums: Array<{ name: string; values: Array<[string, number]> }>;
}

interface RawMessage {
  name: string;
  field?: Array<{ name: string; number: number; type: string; typeName?: string; label: string }>;
  nestedType?: RawMessage[];
  enumType?: Array<{ name: string; value: Array<{ name: string; number: number }> }>;
}

function describe(m: RawMessage): DescribedMessage {
  return {
    name: m.name,
    fields: (m.field ?? []).map((f) => ({ name: f.name, number: f.number, type: f.type, typeName: f.typeName, label: f.label })),
    nested: (m.nestedType ?? []).map(describe),
    enums: (m.enumType ?? []).map((e) => ({ name: e.name, values: e.value.map((v) => [v.name, v.number] as [string, number]) })),
  };
}

/** The messages and services of one API file as compiled into the binary. */
export function embeddedDescriptor(binary: string, protoPath: string): { package: string; messages: DescribedMessage[]; services: Array<{ name: string; methods: string[] }> } {
  const data = readFileSync(binary);
  const name = Buffer.from(protoPath);
  for (let at = data.indexOf(name); at >= 0; at = data.indexOf(name, at + 1)) {
    // A serialized FileDescriptorProto starts with field 1 (name): tag 0x0a, then the length.
    const start = at - 2;
    if (data[start] !== 0x0a || data[start + 1] !== name.length) continue;
    let i = start;
    for (;;) {
      const [tag, j] = varint(data, i);
      const field = Math.floor(tag / 8);
      const wire = tag & 7;
      if (field < 1 || field > 14 || (wire !== 0 && wire !== 2)) break;
      if (wire === 0) i = varint(data, j)[1];
      else {
        const [len, l] = varint(data, j);
        i = l + len;
      }
    }
    const fd = FileDescriptorProto.toObject(FileDescriptorProto.decode(data.subarray(start, i)), { enums: String }) as {
      package: string;
      messageType?: RawMessage[];
      service?: Array<{ name: string; method: Array<{ name: string }> }>;
    };
    return {
      package: fd.package,
      messages: (fd.messageType ?? []).map(describe),
      services: (fd.service ?? []).map((s) => ({ name: s.name, methods: s.method.map((m) => m.name) })),
    };
  }
  throw new Error(`${protoPath} is not embedded in ${binary}`);
}
