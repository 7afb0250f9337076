import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, waitFor } from '../scripts/ports';
import { MongoClient } from 'mongodb';
import { startMongoplex } from './support/mongoplex';
import { MongoplexProcess } from '../scripts/mongoplex-process';
import { startEnvoyFront, type EnvoyFront } from '../scripts/envoy';
import { concurrentCursors, crudRoundTrip, manyClientConnections } from './support/driver-scenarios';
import { MONITOR_CONNECTIONS, useFerretDB } from './support/setup';
import { RawClient } from './support/raw-client';
import { FerretDB } from '../scripts/ferretdb';
import { proxyStats } from '../filter/admin/views';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

type Running = Awaited<ReturnType<typeof startMongoplex>>;

describe('client → Envoy (network ext_proc) → mongoplex → FerretDB', () => {
  let proxy: Running;
  let front: EnvoyFront;

  before(async () => {
    const grpc = await freePort();
    proxy = await startMongoplex(db.address, { listen: { grpc: `127.0.0.1:${grpc}` }, upstream: { maxPoolSize: 6 } });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
  });
  after(async () => {
    await front?.envoy.stop();
    await proxy?.stop();
  });

  it('runs CRUD, aggregation, server errors and a 15 MB document through Envoy', async () => {
    await crudRoundTrip(front.uri, 'extproc_crud');
    assert.equal(await front.envoy.stat('network_ext_proc.mongoplex_main.message_timeouts'), 0);
  });

  it('whatsmyuri through Envoy is the client\'s own host:port, not Envoy\'s', async () => {
    const c = await RawClient.connect(front.port);
    const r = await c.command({ whatsmyuri: 1, $db: 'admin' });
    assert.equal(r.you, `127.0.0.1:${c.socket.localPort}`);
    c.destroy();
  });

  it('drains cursors in small batches from many concurrent clients', async () => {
    await concurrentCursors(front.uri, 'extproc_cursors', 15);
  });

  it('pools hundreds of client connections to Envoy over a few FerretDB connections', async () => {
    const before = await db.connections();
    const ops = await manyClientConnections(front.uri, 'extproc_many', 150);
    assert.equal(ops, 600);
    const after = await db.connections();
    assert.ok(after.accepted - before.accepted + before.open <= 6 + MONITOR_CONNECTIONS, `FerretDB saw at most 6 pooled connections + the heartbeat (accepted ${after.accepted - before.accepted} more, had ${before.open})`);
    assert.ok((await front.envoy.stat('listener.127.0.0.1_' + front.port + '.downstream_cx_total')) >= 300, 'Envoy accepted 300+ client connections');
  });
});

describe('Envoy sees the last command of each connection as dynamic metadata (listen.grpcDynamicMetadata)', () => {
  let proxy: Running;
  let front: EnvoyFront;

  before(async () => {
    const grpc = await freePort();
    proxy = await startMongoplex(db.address, { listen: { grpc: `127.0.0.1:${grpc}`, grpcDynamicMetadata: true } });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } }, accessLog: true });
  });
  after(async () => {
    await front?.envoy.stop();
    await proxy?.stop();
  });

  it("Envoy's access log names the db, collection and command of each connection's last request", async () => {
    const a = await RawClient.connect(front.port);
    const b = await RawClient.connect(front.port);
    assert.equal((await a.command({ insert: 'things', documents: [{ n: 1 }], $db: 'metaA' })).ok, 1);
    assert.equal((await b.command({ find: 'others', filter: {}, $db: 'metaB' })).ok, 1);
    assert.equal((await b.command({ count: 'others', $db: 'metaB' })).ok, 1);
    const ports = [a.socket.localPort, b.socket.localPort];
    a.destroy();
    b.destroy();
    const line = (port: number | undefined): string | undefined => front.envoy.log().split('\n').find((l) => l.includes('mongodb_main') && l.includes(`127.0.0.1:${port} `));
    await waitFor("Envoy's access log lines", async () => (line(ports[0]) && line(ports[1]) ? true : undefined), 10_000);
    assert.match(line(ports[0])!, / db=metaA collection=things command=insert$/);
    assert.match(line(ports[1])!, / db=metaB collection=others command=count$/);
  });
});

describe('mongoplex upstream through an Envoy egress listener (PROXY protocol v2 → ORIGINAL_DST)', () => {
  let proxy: Running;
  let egress: EnvoyFront;

  before(async () => {
    // Envoy's per-member cap covers the pool and mongoplex's heartbeat connection.
    egress = await startEnvoyFront({ egress: { maxConnectionsPerMember: 4 + MONITOR_CONNECTIONS } });
    proxy = await startMongoplex(db.address, { upstream: { maxPoolSize: 4, via: egress.egress } });
  });
  after(async () => {
    await proxy?.stop();
    await egress?.envoy.stop();
  });

  it('runs the same CRUD and cursor scenarios, every upstream connection made by Envoy', async () => {
    await crudRoundTrip(proxy.uri, 'egress_crud');
    await concurrentCursors(proxy.uri, 'egress_cursors', 10);
    const envoyMade = await egress.envoy.stat('cluster.mongodb_members.upstream_cx_total');
    const pool = proxyStats(proxy.proxy).pools[0]!;
    assert.ok(envoyMade >= 1 && envoyMade <= 4 + MONITOR_CONNECTIONS, `Envoy opened ${envoyMade} member connections`);
    assert.equal((await db.connections()).open, pool.total + MONITOR_CONNECTIONS, 'FerretDB holds exactly the pooled connections and the heartbeat, all via Envoy');
    assert.equal(await egress.envoy.stat('cluster.mongodb_members.upstream_cx_active'), pool.total + MONITOR_CONNECTIONS);
  });

  it('pools hundreds of client connections over the few member connections Envoy makes', async () => {
    const before = await db.connections();
    assert.equal(await manyClientConnections(proxy.uri, 'egress_many', 150), 600);
    const after = await db.connections();
    assert.ok(after.accepted - before.accepted + before.open <= 4 + MONITOR_CONNECTIONS, `FerretDB saw at most 4 pooled connections + the heartbeat (accepted ${after.accepted - before.accepted} more, had ${before.open})`);
    assert.ok((await egress.envoy.stat('cluster.mongodb_members.upstream_cx_total')) <= 4 + MONITOR_CONNECTIONS);
  });

  it('Envoy keeps per-member stats for the member mongoplex named', async () => {
    const r = await fetch(`http://127.0.0.1:${egress.envoy.adminPort}/clusters?format=json`);
    const clusters = await r.json() as { cluster_statuses: Array<{ name: string; host_statuses?: Array<{ address: { socket_address: { address: string; port_value: number } } }> }> };
    const members = clusters.cluster_statuses.find((c) => c.name === 'mongodb_members')!;
    const addrs = (members.host_statuses ?? []).map((h) => `${h.address.socket_address.address}:${h.address.socket_address.port_value}`);
    // ORIGINAL_DST may hold two host entries for one address when two connections to it (the
    // heartbeat and a pooled one) start at the same moment: the set of addresses is what counts.
    assert.deepEqual([...new Set(addrs)], [db.address]);
  });
});

describe('client → Envoy tcp_proxy → mongoplex TCP listener (sidecar)', () => {
  let proxy: Running;
  let front: EnvoyFront;

  before(async () => {
    proxy = await startMongoplex(db.address, { upstream: { maxPoolSize: 4 } });
    front = await startEnvoyFront({ ingress: { kind: 'sidecar', filterTcp: { host: '127.0.0.1', port: proxy.port } } });
  });
  after(async () => {
    await front?.envoy.stop();
    await proxy?.stop();
  });

  it('runs the same CRUD and cursor scenarios', async () => {
    await crudRoundTrip(front.uri, 'sidecar_crud');
    await concurrentCursors(front.uri, 'sidecar_cursors', 10);
  });
});

describe('the filter process dies while clients are connected through Envoy', () => {
  let filter: MongoplexProcess;
  let front: EnvoyFront;
  let grpc: number;

  // One process: the test kills it and starts another on the same port.
  const startFilter = (): Promise<MongoplexProcess> => MongoplexProcess.start({
    MONGOPLEX_WORKERS: '1',
    MONGOPLEX_LISTEN_PORT: 'null',
    MONGOPLEX_LISTEN_GRPC: `127.0.0.1:${grpc}`,
    MONGOPLEX_UPSTREAM_SERVERS: db.address,
  });

  before(async () => {
    grpc = await freePort();
    filter = await startFilter();
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
  });
  after(async () => {
    await filter?.stop();
    await front?.envoy.stop();
  });

  it('clients get errors promptly, Envoy keeps running, and clients reconnect once the filter is back', async () => {
    const client = await new MongoClient(front.uri, { serverSelectionTimeoutMS: 3000, retryReads: false, retryWrites: false }).connect();
    try {
      const col = client.db('kill').collection('c');
      await col.insertOne({ before: true });
      await filter.kill();
      // "Promptly": the operation fails on its own, long before this guard would fire.
      const guard = new Promise((_, reject) => setTimeout(() => reject(new Error('operation hung after the filter died')), 20_000).unref());
      await assert.rejects(Promise.race([col.findOne({}), guard]), (e: Error) => e.message !== 'operation hung after the filter died');
      assert.ok(front.envoy.running, 'Envoy is still running');
      filter = await startFilter();
      const back = await waitFor('the driver to reconnect through Envoy', async () => (await col.findOne({ before: true })) ?? undefined, 20_000);
      assert.equal(back.before, true);
      assert.ok(front.envoy.running);
    } finally {
      await client.close();
    }
  });
});

describe('Envoy health-checks mongoplex at /readyz', () => {
  let upstream: FerretDB;
  let proxy: Running;
  let front: EnvoyFront;
  const healthy = (): Promise<number> => front.envoy.stat('cluster.mongoplex_ext_proc.membership_healthy');

  before(async () => {
    upstream = await FerretDB.start();
    const grpc = await freePort();
    proxy = await startMongoplex(upstream.address, { listen: { grpc: `127.0.0.1:${grpc}` }, admin: { port: 0 }, topology: { heartbeatMs: 200 }, upstream: { connectTimeoutMs: 1000 } });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc }, filterAdmin: { host: '127.0.0.1', port: proxy.admin!.port } } });
  });
  after(async () => {
    await front?.envoy.stop();
    await proxy?.stop();
    await upstream?.stop();
  });

  it('marks mongoplex unhealthy when its upstream dies and healthy again when it is back', async () => {
    await waitFor('Envoy to see mongoplex healthy', async () => ((await healthy()) === 1 ? true : undefined), 10_000);
    const port = upstream.port;
    await upstream.stop();
    await waitFor('Envoy to see mongoplex unhealthy', async () => ((await healthy()) === 0 ? true : undefined), 10_000);
    assert.ok((await front.envoy.stat('cluster.mongoplex_ext_proc.health_check.failure')) >= 1);
    upstream = await FerretDB.start({ port });
    await waitFor('Envoy to see mongoplex healthy again', async () => ((await healthy()) === 1 ? true : undefined), 10_000);
  });
});
