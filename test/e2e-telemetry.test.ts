import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient, MongoServerError } from 'mongodb';
import { consecutiveFreePorts, waitFor } from '../scripts/ports';
import { MongoplexProcess } from '../scripts/mongoplex-process';
import { startEnvoyFront, type EnvoyFront } from '../scripts/envoy';
import { Jaeger, type StoredSpan } from '../scripts/jaeger';
import { OtlpMetricsReceiver } from './support/otlp-receiver';
import { useFerretDB } from './support/setup';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

describe('OpenTelemetry export over OTLP (standard OTEL_* environment)', () => {
  let jaeger: Jaeger;
  let metrics: OtlpMetricsReceiver;
  let filter: MongoplexProcess;
  let front: EnvoyFront;
  const service = 'mongoplex-under-test';

  before(async () => {
    jaeger = await Jaeger.start();
    metrics = new OtlpMetricsReceiver();
    const metricsEndpoint = await metrics.listen();
    const grpc = await consecutiveFreePorts(2);
    filter = await MongoplexProcess.start({
      MONGOPLEX_LISTEN_PORT: 'null',
      MONGOPLEX_LISTEN_GRPC: `127.0.0.1:${grpc}`,
      MONGOPLEX_UPSTREAM_SERVERS: db.address,
      MONGOPLEX_WORKERS: '2',
      // Traces to a real collector-based backend; metrics to the small receiver (Jaeger keeps none).
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${jaeger.otlpEndpoint}/v1/traces`,
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${metricsEndpoint}/v1/metrics`,
      OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: service,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_METRIC_EXPORT_INTERVAL: '500',
    });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
  });
  after(async () => {
    await front?.envoy.stop();
    await filter?.stop();
    await metrics?.close();
    await jaeger?.stop();
  });

  /** The first span Jaeger has stored for the service that `matches`, polled. */
  const storedSpan = (what: string, matches: (s: StoredSpan) => boolean): Promise<StoredSpan> =>
    waitFor(`${what} in Jaeger`, async () => (await jaeger.spans(service)).find(matches), 20_000);

  it("a driver's find through Envoy is stored in Jaeger as a client span with the database semantic-convention attributes", async () => {
    const client = await new MongoClient(front.uri).connect();
    try {
      await client.db('traced').collection('orders').insertOne({ n: 1 });
      await client.db('traced').collection('orders').findOne({ n: 1 });
    } finally {
      await client.close();
    }
    const span = await storedSpan('the find span', (s) => s.attributes['db.operation.name'] === 'find');
    assert.equal(span.resource['service.name'], service);
    // Two workers export apart: the span's resource says which one made it.
    assert.equal(span.resource['mongoplex.worker'], 0, 'Envoy reaches worker 0 (listen.grpc itself)');
    assert.match(String(span.resource['service.instance.id']), /\/worker-0$/);
    assert.equal(span.kind, 3, 'SPAN_KIND_CLIENT');
    assert.equal(span.name, 'find traced.orders');
    assert.equal(span.attributes['db.system.name'], 'mongodb');
    assert.equal(span.attributes['db.namespace'], 'traced');
    assert.equal(span.attributes['db.collection.name'], 'orders');
    assert.equal(span.attributes['server.address'], db.host);
    assert.equal(span.attributes['server.port'], db.port);
    assert.notEqual(span.status.code, 2, 'not STATUS_CODE_ERROR');
  });

  it('a command the server refuses is stored as an error span with the server\'s error code', async () => {
    const client = await new MongoClient(front.uri).connect();
    try {
      await assert.rejects(client.db('traced').command({ noSuchCommandHere: 1 }), (err: MongoServerError) => err.code === 59);
    } finally {
      await client.close();
    }
    const span = await storedSpan('the refused command\'s span', (s) => s.attributes['db.operation.name'] === 'noSuchCommandHere');
    assert.equal(span.status.code, 2, 'STATUS_CODE_ERROR');
    assert.equal(span.attributes['db.response.status_code'], '59');
  });

  it('exports the proxy metrics too, the command latency histogram among them', async () => {
    await waitFor('mongoplex metrics at the OTLP receiver', async () =>
      (['mongoplex.commands', 'mongoplex.pool.connections', 'mongoplex.command.duration'].every((n) => metrics.metricNames.has(n)) ? true : undefined), 15_000);
  });
});
