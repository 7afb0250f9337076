import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Binary, Long, MongoClient } from 'mongodb';
import { loadConfig } from '../filter/config';
import { createLogger } from '../filter/log';
import { startServer, type RunningServer } from '../filter/server';
import { Metrics } from '../filter/telemetry/metrics';
import { FerretDB } from '../scripts/ferretdb';
import { MongoplexProcess } from '../scripts/mongoplex-process';
import { waitFor } from '../scripts/ports';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { parsePrometheus, sampleValue } from './support/prometheus';
import { RawClient } from './support/raw-client';
import { MONITOR_CONNECTIONS, useFerretDB } from './support/setup';
import { proxyStats } from '../filter/admin/views';

const db = useFerretDB();

/** The admin endpoint of an in-process mongoplex. */
function admin(server: RunningServer): { get<T>(p: string): Promise<T>; post(p: string, body?: unknown, token?: string): Promise<{ status: number; body: Record<string, unknown> }> } {
  const base = `http://127.0.0.1:${server.admin!.port}`;
  return {
    async get<T>(p: string): Promise<T> {
      const res = await fetch(base + p);
      assert.equal(res.status, 200, `GET ${p}`);
      return (res.headers.get('content-type')?.startsWith('application/json') ? res.json() : res.text()) as Promise<T>;
    },
    async post(p: string, body?: unknown, token?: string) {
      const res = await fetch(base + p, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body), headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) } });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
  };
}

describe('Prometheus /metrics and per-collection statistics', () => {
  let proxy: TestMongoplex;
  let client: MongoClient;
  before(async () => {
    proxy = await startMongoplex(db.address, { admin: { port: 0 }, stats: { maxEntries: 4 } });
    client = await new MongoClient(proxy.uri, { appName: 'stats-test' }).connect();
  });
  after(async () => {
    await client?.close();
    await proxy?.stop();
  });

  it('counts a known workload exactly by db, collection and command, with documents returned and callsites', async () => {
    const items = client.db('ops').collection('items');
    for (let i = 0; i < 3; i++) await items.insertOne({ _id: i as never, v: i });
    for (let i = 0; i < 2; i++) assert.equal((await items.find({}, { comment: '{"callsite": "report.js:12"}' }).toArray()).length, 3);
    await assert.rejects(client.db('ops').command({ find: 'items', filter: { $nope: 1 } }));

    const families = parsePrometheus(await admin(proxy).get<string>('/metrics'));
    const counter = (name: string, labels: Record<string, string>): number | undefined => sampleValue(families, name, `${name}_total`, labels);
    const ops = { db: 'ops', collection: 'items' };
    assert.equal(counter('mongoplex_collection_commands', { ...ops, command: 'insert', result: 'ok' }), 3);
    assert.equal(counter('mongoplex_collection_commands', { ...ops, command: 'insert', result: 'error' }), 0);
    assert.equal(counter('mongoplex_collection_commands', { ...ops, command: 'find', result: 'ok' }), 2);
    assert.equal(counter('mongoplex_collection_commands', { ...ops, command: 'find', result: 'error' }), 1);
    assert.equal(counter('mongoplex_collection_documents_returned', { ...ops, command: 'find' }), 6);
    assert.ok(counter('mongoplex_collection_bytes_received', { ...ops, command: 'insert' })! > 0);
    assert.ok(counter('mongoplex_collection_bytes_sent', { ...ops, command: 'find' })! > 0);
    assert.equal(counter('mongoplex_callsite_commands', { callsite: 'report.js:12', command: 'find', result: 'ok' }), 2);

    // The same instruments as before, now as Prometheus series: gauges, counters, latency histograms.
    assert.equal(families.get('mongoplex_client_connections')?.type, 'gauge');
    assert.ok(sampleValue(families, 'mongoplex_client_connections', 'mongoplex_client_connections', {})! >= 1);
    assert.equal(families.get('mongoplex_commands')?.type, 'counter');
    for (const h of ['mongoplex_command_duration', 'mongoplex_pool_checkout_duration']) {
      assert.equal(families.get(h)?.type, 'histogram', h);
      const buckets = families.get(h)!.samples.filter((x) => x.name === `${h}_bucket`);
      assert.ok(buckets.length > 10 && buckets.some((b) => b.labels.le === '+Inf' && b.value > 0), `${h} has buckets with samples`);
    }
    assert.equal(sampleValue(families, 'mongoplex_command_duration', 'mongoplex_command_duration_count', { command: 'insert' }), 3);
    assert.equal(sampleValue(families, 'mongoplex_command_duration', 'mongoplex_command_duration_bucket', { command: 'insert', le: '+Inf' }), 3);
  });

  it('/commands and /stats show the busiest rows; past stats.maxEntries new combinations share one _other row', async () => {
    for (const c of ['a', 'b', 'c', 'd', 'e']) await client.db('ops2').collection(c).insertOne({ x: 1 });
    const table = await admin(proxy).get<{ rows: number; collections: Array<{ db: string; collection: string; command: string; count: number }> }>('/commands?limit=100&sort=count');
    assert.equal(table.rows, 4, 'the table holds stats.maxEntries rows');
    const other = table.collections.find((r) => r.db === '_other');
    assert.ok(other && other.collection === '_other' && other.command === '_other' && other.count >= 3, JSON.stringify(table.collections));
    const stats = await admin(proxy).get<{ commandStats: { collections: unknown[] } }>('/stats');
    assert.ok(stats.commandStats.collections.length > 0);
    const bad = await fetch(`http://127.0.0.1:${proxy.admin!.port}/commands?sort=nonsense`);
    assert.equal(bad.status, 400);
  });
});

describe('inspection endpoints', () => {
  let proxy: TestMongoplex;
  let client: MongoClient;
  before(async () => {
    proxy = await startMongoplex(db.address, { admin: { port: 0 } });
    client = await new MongoClient(proxy.uri, { appName: 'inspector', maxPoolSize: 1 }).connect();
  });
  after(async () => {
    await client?.close();
    await proxy?.stop();
  });

  it('/clients, /pools, /servers and /cursors show who is connected, what the pools hold, the server and open cursors', async () => {
    const coll = client.db('insp').collection('c');
    await coll.insertMany(Array.from({ length: 5 }, (_, i) => ({ i })));
    const cursor = coll.find({}, { batchSize: 2 });
    await cursor.next(); // the cursor stays open on the server
    const a = admin(proxy);
    const clients = await a.get<{ total: number; clients: Array<{ appName?: string; driver?: string; state: string; remote: string; forwarded: number }> }>('/clients');
    // The driver's monitoring connection (handshakes only) and its pooled one (the commands).
    const mine = clients.clients.filter((c) => c.appName === 'inspector');
    assert.equal(mine.length, 2, JSON.stringify(clients));
    for (const c of mine) {
      assert.match(c.driver ?? '', /nodejs/);
      assert.match(c.remote, /^127\.0\.0\.1:\d+$/);
    }
    assert.ok(mine.some((c) => c.forwarded >= 2 && c.state === 'idle'), JSON.stringify(mine));
    const pools = await a.get<{ pools: Array<{ address: string; total: number; maxPoolSize: number; oldestWaitMs: number }> }>('/pools');
    assert.equal(pools.pools[0]!.address, db.address);
    assert.equal(pools.pools[0]!.maxPoolSize, 16);
    const servers = await a.get<{ servers: Array<{ member: string; type: string }> }>('/servers');
    assert.equal(servers.servers[0]!.member, db.address);
    assert.notEqual(servers.servers[0]!.type, 'Unknown');
    const cursors = await a.get<{ total: number; cursors: Array<{ ns: string; server: string }> }>('/cursors');
    assert.ok(cursors.cursors.some((c) => c.ns === 'insp.c' && c.server === db.address), JSON.stringify(cursors));
    await cursor.close();
    const tx = await a.get<{ total: number; transactions: unknown[] }>('/transactions');
    assert.equal(tx.total, 0);
    const page = await fetch(`http://127.0.0.1:${proxy.admin!.port}/`);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
  });
});

describe('pause and resume', () => {
  let proxy: TestMongoplex;
  before(async () => {
    proxy = await startMongoplex(db.address, { admin: { port: 0 } });
  });
  after(() => proxy?.stop());

  it('pause holds commands before they are forwarded (the handshake still answers); resume releases every one with no error', async () => {
    const a = admin(proxy);
    const clients = await Promise.all(Array.from({ length: 5 }, () => RawClient.connect(proxy.port)));
    assert.equal((await a.post('/pause')).status, 200);
    const answered: number[] = [];
    const pending = clients.map((c, i) => c.command({ find: 'p', filter: {}, $db: 'pause' }).then((r) => {
      answered.push(i);
      return r;
    }));
    await waitFor('five held commands', async () => ((await a.get<{ pause: { waiting: number } }>('/stats')).pause.waiting === 5 ? true : undefined));
    // The proxy answers the handshake itself: a new client can still connect while paused.
    const late = await RawClient.connect(proxy.port);
    assert.equal((await late.command({ hello: 1, $db: 'admin' })).ok, 1);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(answered, [], 'nothing was forwarded while paused');
    const resumed = await a.post('/resume');
    assert.equal(resumed.body.resumed, true);
    for (const r of await Promise.all(pending)) assert.equal(r.ok, 1);
    for (const c of [...clients, late]) c.destroy();
  });

  it('a pause ends by itself at its deadline', async () => {
    const a = admin(proxy);
    await a.post('/pause', { timeoutMs: 300 });
    const c = await RawClient.connect(proxy.port);
    const started = Date.now();
    assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    assert.ok(Date.now() - started >= 250, 'held until the deadline');
    assert.equal((await a.get<{ pause: { paused: boolean } }>('/stats')).pause.paused, false);
    c.destroy();
  });
});

describe('control endpoints need the token', () => {
  let proxy: TestMongoplex;
  const token = 'a-long-enough-admin-token';
  before(async () => {
    proxy = await startMongoplex(db.address, { admin: { port: 0, token } });
  });
  after(() => proxy?.stop());

  it('POST /pause, /resume, /drain and /reload without the bearer token are refused and change nothing', async () => {
    const a = admin(proxy);
    for (const p of ['/pause', '/resume', '/drain', '/reload']) assert.equal((await a.post(p)).status, 401, p);
    assert.equal(proxy.proxy.gate.paused, false);
    assert.equal(proxy.proxy.draining, false);
    assert.equal((await a.post('/pause', undefined, token)).status, 200);
    assert.equal((await a.post('/resume', undefined, token)).status, 200);
  });
});

describe('drain under load', () => {
  let proxy: TestMongoplex;
  before(async () => {
    proxy = await startMongoplex(db.address, { admin: { port: 0 }, upstream: { maxPoolSize: 4 }, listen: { drainNoticeMs: 0 } });
  });
  after(() => proxy?.stop());

  it('POST /drain: every command the proxy read is answered, then each client is closed between commands', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => RawClient.connect(proxy.port)));
    let answered = 0;
    let errorReplies = 0;
    const loops = clients.map(async (c, i) => {
      for (let n = 0; ; n++) {
        let reply;
        try {
          reply = await c.command({ insert: `drain${i % 4}`, documents: [{ n }], $db: 'drain' });
        } catch {
          return; // closed between commands: this command was never read
        }
        if (reply.ok === 1) answered++;
        else errorReplies++;
      }
    });
    await waitFor('load', async () => (answered > 200 ? true : undefined));
    const res = await admin(proxy).post('/drain', { timeoutMs: 10_000 });
    assert.equal(res.status, 202);
    await Promise.all(loops);
    await waitFor('every client closed', async () => (proxy.proxy.clientCount === 0 ? true : undefined));
    assert.equal(errorReplies, 0);
    // Every insert the proxy forwarded reached its client: the server-side count equals the replies.
    const forwarded = proxy.proxy.commandStats.top(100).collections.filter((r) => r.db === 'drain').reduce((n, r) => n + r.count, 0);
    assert.equal(forwarded, answered);
    const inserted = await new MongoClient(`mongodb://${db.address}/`).connect();
    try {
      let docs = 0;
      for (let i = 0; i < 4; i++) docs += await inserted.db('drain').collection(`drain${i}`).countDocuments();
      assert.equal(docs, answered);
    } finally {
      await inserted.close();
    }
    // New clients are refused while drained.
    const refused = await RawClient.connect(proxy.port).then((c) => c.command({ ping: 1, $db: 'admin' }).then(() => false, () => true), () => true);
    assert.ok(refused);
  });
});

describe('drain notice: drivers are asked to leave before anything is closed', () => {
  let proxy: TestMongoplex;
  before(async () => {
    proxy = await startMongoplex(db.address, { admin: { port: 0 }, listen: { drainNoticeMs: 60_000 } });
  });
  after(() => proxy?.stop());

  const handshake = async (c: RawClient, extra: Record<string, unknown> = {}) => {
    assert.equal((await c.command({ hello: 1, client: { driver: { name: 'raw', version: '1' } }, $db: 'admin', ...extra })).ok, 1);
  };

  it("a monitor's heartbeat gets ShutdownInProgress and its connection closes; other requests are still served; load-balanced clients get it on retryable commands only", async () => {
    const monitor = await RawClient.connect(proxy.port);
    const worker = await RawClient.connect(proxy.port);
    const lbRead = await RawClient.connect(proxy.port);
    const lbWrite = await RawClient.connect(proxy.port);
    const lbOther = await RawClient.connect(proxy.port);
    for (const c of [monitor, worker]) await handshake(c);
    for (const c of [lbRead, lbWrite, lbOther]) await handshake(c, { loadBalanced: true });
    assert.equal((await monitor.command({ hello: 1, $db: 'admin' })).ok, 1, 'a heartbeat before the drain is answered');
    assert.equal((await admin(proxy).post('/drain', { timeoutMs: 60_000 })).status, 202);

    const heartbeat = await monitor.command({ hello: 1, $db: 'admin' });
    assert.deepEqual([heartbeat.ok, heartbeat.code, heartbeat.codeName], [0, 91, 'ShutdownInProgress']);
    await monitor.closedPromise;

    // The connections of a driver that has not heard yet keep working until it closes them.
    assert.equal((await worker.command({ insert: 'notice', documents: [{ a: 1 }], $db: 'drain' })).ok, 1);
    assert.equal((await worker.command({ find: 'notice', filter: {}, $db: 'drain' })).ok, 1);
    assert.equal(worker.closed, false);

    // Load-balanced: the first retryable command is answered with the notice, once; the
    // driver retries it (a find on the same, pinned connection) and then closes the connection.
    const find = { find: 'notice', filter: {}, $db: 'drain' };
    const read = await lbRead.command(find);
    assert.deepEqual([read.ok, read.code, read.errorLabels], [0, 91, undefined], 'a read the driver retries');
    assert.equal((await lbRead.command(find)).ok, 1, 'its retry is served');
    const lsid = { id: new Binary(Buffer.alloc(16, 7), Binary.SUBTYPE_UUID) };
    const write = await lbWrite.command({ insert: 'notice', documents: [{ a: 2 }], lsid, txnNumber: new Long(1), $db: 'drain' });
    assert.deepEqual([write.ok, write.code, write.errorLabels], [0, 91, ['RetryableWriteError']], 'a retryable write, labelled as a server would');
    assert.equal((await lbOther.command({ ping: 1, $db: 'admin' })).ok, 1, 'a command no driver retries is served');
    assert.equal(proxy.proxy.clientCount, 4, 'the connections not told by a heartbeat stay until their client leaves or the notice ends');
    for (const c of [worker, lbRead, lbWrite, lbOther]) c.destroy();
  });
});

describe('reload', () => {
  let dir: string;
  let file: string;
  let server: RunningServer;
  // Its own FerretDB, so the server-side connection count is this proxy's alone.
  const own = new FerretDB();
  const write = (maxPoolSize: number, extra = ''): void =>
    writeFileSync(file, `listen: { host: 127.0.0.1, port: 0 }\nadmin: { port: 0 }\nupstream: { servers: ["${own.address}"], maxPoolSize: ${maxPoolSize} }\nlog: { level: silent }\n${extra}`);
  before(async () => {
    await own.start();
    dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-reload-'));
    file = path.join(dir, 'mongoplex.yaml');
    write(2);
    const config = loadConfig({ file, env: {} });
    server = await startServer(config, createLogger('silent'), { reloadConfig: () => loadConfig({ file, env: {} }) });
  });
  after(async () => {
    await server?.stop();
    await own.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('POST /reload changes maxPoolSize live: the server-side connection count follows, up and down', async () => {
    const clients = await Promise.all(Array.from({ length: 24 }, () => RawClient.connect(server.tcp!.port)));
    let stop = false;
    const loops = clients.map(async (c, i) => {
      while (!stop) await c.command({ find: 'r', filter: { i }, $db: 'reload' }).catch(() => undefined);
    });
    const open = async (): Promise<number> => (await own.connections()).open;
    await waitFor('pool of 2 in use', async () => (proxyStats(server.proxy).pools[0]!.total === 2 ? true : undefined));
    assert.ok((await open()) <= 2 + MONITOR_CONNECTIONS);

    write(6);
    const grown = await admin(server).post('/reload');
    assert.equal(grown.status, 200);
    assert.deepEqual((grown.body.applied as Array<{ setting: string; to: number }>).map((c) => [c.setting, c.to]), [['upstream.maxPoolSize', 6]]);
    await waitFor('FerretDB sees 6 pooled connections', async () => ((await open()) >= 6 ? true : undefined));
    assert.ok((await open()) <= 6 + MONITOR_CONNECTIONS);

    write(1);
    assert.equal((await admin(server).post('/reload')).status, 200);
    await waitFor('FerretDB sees the pool shrink to 1', async () => ((await open()) <= 1 + MONITOR_CONNECTIONS ? true : undefined));
    assert.equal(proxyStats(server.proxy).pools[0]!.total, 1);
    stop = true;
    await Promise.all(loops);
    for (const c of clients) c.destroy();
    assert.ok((Metrics.upstreamConnectionsClosed.snapshot()[`reason=pool_shrunk,server=${own.address}`] ?? 0) >= 1);
  });

  it('says which changes need a restart, and refuses an invalid file without changing anything', async () => {
    write(1, 'stats: { maxEntries: 50 }\n');
    const res = await admin(server).post('/reload');
    assert.equal(res.status, 200);
    assert.deepEqual((res.body.needsRestart as Array<{ setting: string }>).map((c) => c.setting), ['stats.maxEntries']);
    assert.deepEqual(res.body.applied, []);
    writeFileSync(file, 'upstream: { maxPoolSize: -3 }\n');
    const bad = await admin(server).post('/reload');
    assert.equal(bad.status, 400);
    assert.match(String(bad.body.error), /upstream\.maxPoolSize/);
    assert.equal(Metrics.reloads.value({ result: 'failed' }), 1);
    assert.equal(server.proxy.config.upstream.maxPoolSize, 1);
  });
});

describe('SIGHUP reloads the configuration file of a running mongoplex', () => {
  let dir: string;
  let proc: MongoplexProcess | undefined;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-sighup-'));
  });
  after(async () => {
    await proc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a new maxPoolSize is in effect after SIGHUP', async () => {
    const file = path.join(dir, 'mongoplex.yaml');
    const write = (size: number): void => writeFileSync(file, `listen: { host: 127.0.0.1, port: 0 }\nadmin: { port: 0 }\nupstream: { servers: ["${db.address}"], maxPoolSize: ${size} }\n`);
    write(3);
    proc = await MongoplexProcess.start({}, ['--config', file]);
    const base = `http://${proc.listening.admin}`;
    // With workers (auto: the cores), each pools a share; the shares add up to the setting.
    const size = async (): Promise<number> => ((await (await fetch(`${base}/pools`)).json()) as { pools: Array<{ maxPoolSize: number }> }).pools.reduce((n, p) => n + p.maxPoolSize, 0);
    assert.equal(await size(), 3);
    write(9);
    proc.notify('SIGHUP');
    await waitFor('maxPoolSize 9', async () => ((await size()) === 9 ? true : undefined), 5000);
  });
});
