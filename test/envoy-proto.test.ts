import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { envoyBinary } from '../scripts/envoy';
import { PROTO_DIR } from '../filter/ingress/ext-proc';
import { embeddedDescriptor, type DescribedMessage } from './support/envoy-descriptor';


function loadOurs(file: string): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('google/') || path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
  root.loadSync(path.join(PROTO_DIR, file), { keepCase: true });
  root.resolveAll();
  return root;
}

/** Every field of our message exists in Envoy's with the same number, and the reverse. */
function assertSameMessage(ours: protobuf.Type, theirs: DescribedMessage, where: string): void {
  const their = new Map(theirs.fields.map((f) => [f.name, f.number]));
  const our = new Map(Object.values(ours.fields).map((f) => [f.name, f.id]));
  assert.deepEqual(Object.fromEntries(our), Object.fromEntries(their), `${where}: field names and numbers`);
  for (const e of theirs.enums) {
    const mine = ours.lookupEnum(e.name);
    assert.deepEqual(Object.entries(mine.values).sort(), [...e.values].sort(), `${where}.${e.name} values`);
  }
}

describe('hand-written protos match the pinned Envoy release', () => {
  const binary = envoyBinary();

  it('network_ext_proc: same package, service, method, messages and field numbers as Envoy 1.40', () => {
    const file = 'envoy/service/network_ext_proc/v3/network_external_processor.proto';
    const theirs = embeddedDescriptor(binary, file);
    const ours = loadOurs(file);
    assert.equal(theirs.package, 'envoy.service.network_ext_proc.v3');
    assert.deepEqual(theirs.services, [{ name: 'NetworkExternalProcessor', methods: ['Process'] }]);
    const svc = ours.lookupService('envoy.service.network_ext_proc.v3.NetworkExternalProcessor');
    assert.ok(svc.methods.Process?.requestStream && svc.methods.Process.responseStream);
    for (const m of theirs.messages) {
      assertSameMessage(ours.lookupType(`envoy.service.network_ext_proc.v3.${m.name}`), m, m.name);
    }
  });

  it('config.core.v3.Metadata: same field numbers', () => {
    const theirs = embeddedDescriptor(binary, 'envoy/config/core/v3/base.proto').messages.find((m) => m.name === 'Metadata')!;
    assertSameMessage(loadOurs('envoy/config/core/v3/base.proto').lookupType('envoy.config.core.v3.Metadata'), theirs, 'Metadata');
  });
});
