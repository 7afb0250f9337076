import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { consecutiveFreePorts, waitFor } from '../scripts/ports';
import { MongoplexProcess } from '../scripts/mongoplex-process';
import { startEnvoyFront, type EnvoyFront } from '../scripts/envoy';
import { OtlpReceiver } from './support/otlp-receiver';
import { useFerretDB } from './support/setup';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

describe('OpenTelemetry export over OTLP (standard OTEL_* environment)', () => {
  let receiver: OtlpReceiver;
  let filter: MongoplexProcess;
  let front: EnvoyFront;

  before(async () => {
    receiver = new OtlpReceiver();
    const endpoint = await receiver.listen();
    const grpc = await consecutiveFreePorts(2);
    filter = await MongoplexProcess.start({
      MONGOPLEX_LISTEN_PORT: 'null',
      MONGOPLEX_LISTEN_GRPC: `127.0.0.1:${grpc}`,
      MONGOPLEX_UPSTREAM_SERVERS: db.address,
      MONGOPLEX_WORKERS: '2',
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'mongoplex-under-test',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_METRIC_EXPORT_INTERVAL: '500',
    });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
  });
  after(async () => {
    await front?.envoy.stop();
    await filter?.stop();
    await receiver?.close();
  });

  it("a driver's find through Envoy produces a span with database, collection, command and upstream server", async () => {
    const client = await new MongoClient(front.uri).connect();
    try {
      await client.db('traced').collection('orders').insertOne({ n: 1 });
      await client.db('traced').collection('orders').findOne({ n: 1 });
    } finally {
      await client.close();
    }
    const span = await waitFor('the find span at the OTLP receiver', async () =>
      receiver.spans.find((s) => s.attributes['db.operation.name'] === 'find'), 15_000);
    assert.equal(span.serviceName, 'mongoplex-under-test');
    // Two workers export apart: the span's resource says which one made it.
    assert.equal(span.resource['mongoplex.worker'], 0, 'Envoy reaches worker 0 (listen.grpc itself)');
    assert.match(String(span.resource['service.instance.id']), /\/worker-0$/);
    assert.equal(span.kind, 3, 'SPAN_KIND_CLIENT');
    assert.equal(span.attributes['db.system'], 'mongodb');
    assert.equal(span.attributes['db.namespace'], 'traced');
    assert.equal(span.attributes['db.collection.name'], 'orders');
    assert.equal(span.attributes['server.address'], db.host);
    assert.equal(span.attributes['server.port'], db.port);
    assert.equal(span.name, 'find traced.orders');
  });

  it('exports the proxy metrics too, the command latency histogram among them', async () => {
    await waitFor('mongoplex metrics at the OTLP receiver', async () =>
      (['mongoplex.commands', 'mongoplex.pool.connections', 'mongoplex.command.duration'].every((n) => receiver.metricNames.has(n)) ? true : undefined), 15_000);
  });
});
