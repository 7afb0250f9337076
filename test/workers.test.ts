import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Binary, Long, MongoClient, type Document } from 'mongodb';
import { MongoplexProcess } from '../scripts/mongoplex-process';
import { consecutiveFreePorts, freePort, waitFor } from '../scripts/ports';
import { startEnvoyFront, type EnvoyFront } from '../scripts/envoy';
import { RawClient, startLargeMessages } from './support/raw-client';
import { ReplicaSetFixture } from './support/replica-set-fixture';
import { MONITOR_CONNECTIONS, useFerretDB } from './support/setup';
import { browserRequests, rawPost } from './support/cross-site';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

interface Livez { workers: Array<{ worker: number; pid: number; up: boolean; restarts: number; restartDelayMs?: number }> }
interface ClientRow { worker: number; remote: string }

async function getJson<T>(admin: string, path: string): Promise<T> {
  const r = await fetch(`http://${admin}${path}`);
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return (await r.json()) as T;
}

/** The worker serving each of `clients` (by its address as mongoplex sees it). */
async function workersOf(admin: string, clients: RawClient[]): Promise<number[]> {
  const rows = (await getJson<{ clients: ClientRow[] }>(admin, '/clients')).clients;
  return clients.map((c) => {
    const row = rows.find((r) => r.remote === `127.0.0.1:${c.socket.localPort}`);
    assert.ok(row, `client 127.0.0.1:${c.socket.localPort} is in /clients`);
    return row.worker;
  });
}

describe('workers: 2 — clients spread over two processes, the upstream cap stays the configured total', () => {
  let proxy: MongoplexProcess;
  let port: number;
  let admin: string;
  let baseline: number;

  before(async () => {
    baseline = (await db.connections()).open;
    port = await freePort();
    proxy = await MongoplexProcess.start({
      MONGOPLEX_WORKERS: '2', MONGOPLEX_LISTEN_PORT: String(port), MONGOPLEX_ADMIN_PORT: '0',
      MONGOPLEX_UPSTREAM_SERVERS: db.address, MONGOPLEX_UPSTREAM_MAX_POOL_SIZE: '4', MONGOPLEX_UPSTREAM_WAIT_QUEUE_TIMEOUT_MS: '60000',
    });
    admin = proxy.listening.admin!;
  });
  after(async () => {
    await proxy?.stop();
  });

  it('60 driver clients hitting both workers never make FerretDB hold more than maxPoolSize 4 plus one heartbeat per worker', async () => {
    const seed = await new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`).connect();
    await seed.db('workers').collection('items').insertMany(Array.from({ length: 30 }, (_, i) => ({ _id: i, v: i })) as never);
    await seed.close();
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, (await db.connections()).open - baseline);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const clients = await Promise.all(Array.from({ length: 60 }, () => new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`, { maxPoolSize: 2 }).connect()));
    try {
      const served = await getJson<{ clients: ClientRow[] }>(admin, '/clients?limit=10000');
      const perWorker = [0, 1].map((w) => served.clients.filter((c) => c.worker === w).length);
      assert.ok(perWorker.every((n) => n >= 10), `both workers serve clients: ${perWorker.join(' and ')}`);
      await Promise.all(clients.map(async (c, i) => {
        const col = c.db('workers').collection('items');
        for (let round = 0; round < 5; round++) {
          assert.equal((await col.findOne({ _id: (i + round) % 30 } as never))?.v, (i + round) % 30);
          await col.insertOne({ client: i, round });
        }
      }));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      sampling = false;
      await sampler;
    }
    const pools = (await getJson<{ pools: Array<{ worker: number; maxPoolSize: number; total: number }> }>(admin, '/pools')).pools;
    assert.deepEqual(pools.map((p) => [p.worker, p.maxPoolSize]).sort(), [[0, 2], [1, 2]], 'each worker pools half of upstream.maxPoolSize');
    const cap = 4 + 2 * MONITOR_CONNECTIONS;
    assert.ok(peak <= cap, `FerretDB held at most ${peak} connections from mongoplex (cap ${cap})`);
    assert.ok(peak > 2 * MONITOR_CONNECTIONS, `the pools were used (${peak} connections at the peak)`);
  });

  it("a cursor opened through one worker is read to its end through the other (single mode: the worker forwards a cursor it never saw to the one server)", async () => {
    const seed = await RawClient.connect(port);
    const clients = [seed];
    try {
      await seed.command({ insert: 'cross', documents: Array.from({ length: 9 }, (_, i) => ({ _id: i })), $db: 'workers' });
      // Drivers send a cursor's getMores over whichever pooled connection is free: here, one in the other worker.
      let workers = await workersOf(admin, clients);
      while (new Set(workers).size < 2) {
        clients.push(await RawClient.connect(port));
        workers = await workersOf(admin, clients);
      }
      const other = clients[workers.findIndex((w) => w !== workers[0])]!;
      const first = await seed.command({ find: 'cross', filter: {}, sort: { _id: 1 }, batchSize: 2, $db: 'workers' });
      const ids = ((first.cursor as Document).firstBatch as Document[]).map((d) => d._id as number);
      let id = (first.cursor as Document).id as Long;
      while (String(id) !== '0') {
        const more = await other.command({ getMore: id, collection: 'cross', batchSize: 2, $db: 'workers' });
        assert.equal(more.ok, 1, JSON.stringify(more));
        ids.push(...((more.cursor as Document).nextBatch as Document[]).map((d) => d._id as number));
        id = (more.cursor as Document).id as Long;
      }
      assert.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    } finally {
      for (const c of clients) c.destroy();
    }
  });

  it('the admin endpoint adds the workers up (/stats, /metrics, /readyz) and passes control requests to every worker', async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, () => RawClient.connect(port)));
    try {
      for (const c of clients) assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
      const workers = await workersOf(admin, clients);
      assert.deepEqual([...new Set(workers)].sort(), [0, 1], `round-robin: clients on both workers (${workers.join(',')})`);
      // Clients of the tests before close asynchronously: wait until only these six are left.
      const stats = await waitFor('/stats counting these 6 clients', async () => {
        const s = await getJson<{ clients: number; workers: Livez['workers'] }>(admin, '/stats');
        return s.clients === 6 ? s : undefined;
      }, 5000);
      assert.deepEqual(stats.workers.map((w) => [w.worker, w.up]), [[0, true], [1, true]]);
      const metrics = await (await fetch(`http://${admin}/metrics`)).text();
      assert.match(metrics, /^mongoplex_client_connections\{[^}]*\} 6$/m, 'the gauge is the sum of both workers');
      assert.match(metrics, /^mongoplex_workers 2$/m);
      assert.equal((metrics.match(/^# TYPE mongoplex_client_connections gauge$/gm) ?? []).length, 1, 'one family, not one per worker');
      assert.equal((await fetch(`http://${admin}/readyz`)).status, 200);
      // Control requests reach every worker; each worker's answer is listed.
      const post = (path: string, body: string): Promise<Response> => fetch(`http://${admin}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      const paused = await post('/pause', '{"timeoutMs": 5000}');
      assert.equal(paused.status, 200);
      const answers = ((await paused.json()) as { workers: Array<{ worker: number; status: number; body: { paused: boolean } }> }).workers;
      assert.deepEqual(answers.map((a) => [a.worker, a.status, a.body.paused]), [[0, 200, true], [1, 200, true]]);
      assert.equal(((await (await post('/resume', '')).json()) as { workers: Array<{ body: { resumed: boolean } }> }).workers.every((a) => a.body.resumed), true);
      for (const probe of browserRequests(admin)) {
        const r = await rawPost(admin, '/pause', probe.headers, '{"timeoutMs": 5000}');
        assert.equal(r.status, 403, `the primary refuses ${probe.what} (${r.body})`);
      }
      const invalid = await post('/pause', '{"timeoutMs": -1}');
      assert.equal(invalid.status, 400, 'a body every worker refuses is refused');
      const huge = await post('/pause', JSON.stringify({ pad: 'x'.repeat(70 * 1024) })).catch((err: Error) => err);
      assert.ok(!(huge instanceof Error) && huge.status === 413, 'a body over 64 KiB gets 413');
    } finally {
      for (const c of clients) c.destroy();
    }
  });
});

describe('workers: 2 — process-wide budgets hold for the whole deployment', () => {
  const MB = 1024 * 1024;
  let proxy: MongoplexProcess;
  let port: number;
  let admin: string;

  before(async () => {
    port = await freePort();
    proxy = await MongoplexProcess.start({
      MONGOPLEX_WORKERS: '2', MONGOPLEX_LISTEN_PORT: String(port), MONGOPLEX_ADMIN_PORT: '0', MONGOPLEX_UPSTREAM_SERVERS: db.address,
      MONGOPLEX_CLIENT_MAX_MESSAGE_SIZE_BYTES: String(2 * MB), MONGOPLEX_CLIENT_MAX_TOTAL_BUFFERED_BYTES: String(4 * MB), MONGOPLEX_CLIENT_READ_TIMEOUT_MS: '5000',
    });
    admin = proxy.listening.admin!;
  });
  after(async () => {
    await proxy?.stop();
  });

  it('client.maxTotalBufferedBytes is split: clients that each start a 1.5 MB message are refused once the workers together would hold more than 4 MB', async () => {
    const flooders = await Promise.all(Array.from({ length: 6 }, () => RawClient.connect(port)));
    try {
      for (const f of flooders) assert.equal((await f.command({ ping: 1, $db: 'admin' })).ok, 1);
      const workers = await workersOf(admin, flooders);
      const perWorker = [0, 1].map((w) => workers.filter((x) => x === w).length);
      assert.ok(perWorker.every((n) => n >= 2), `both workers serve at least two of the clients (${perWorker.join(' and ')})`);
      const answers = await startLargeMessages(flooders, 1.5 * MB, 1000);
      const refused = answers.filter((a) => a?.codeName === 'ExceededMemoryLimit').length;
      // Each worker holds 2 MB, one 1.5 MB claim; one process of 4 MB would hold two.
      assert.equal(refused, 4, `one claim per worker fits: ${refused} of 6 refused`);
      const stats = await getJson<{ clientClaimedBytes: number }>(admin, '/stats');
      assert.ok(stats.clientClaimedBytes <= 4 * MB, `the workers together claim ${stats.clientClaimedBytes} bytes`);
    } finally {
      for (const f of flooders) f.destroy();
    }
  });
});

describe('workers: a worker that dies is replaced; only its clients notice', () => {
  let fixture: ReplicaSetFixture;
  let proxy: MongoplexProcess;
  let port: number;
  let admin: string;

  before(async () => {
    // One router that takes transactions (its storage is FerretDB), pooled in single mode.
    fixture = new ReplicaSetFixture(db, 'workers', 1, 'mongos');
    await fixture.start();
    port = await freePort();
    proxy = await MongoplexProcess.start({
      MONGOPLEX_WORKERS: '2', MONGOPLEX_LISTEN_PORT: String(port), MONGOPLEX_ADMIN_PORT: '0',
      MONGOPLEX_UPSTREAM_SERVERS: fixture.addresses[0]!, MONGOPLEX_UPSTREAM_MAX_POOL_SIZE: '4',
    });
    admin = proxy.listening.admin!;
  });
  after(async () => {
    await proxy?.stop();
    await fixture?.stop();
  });

  it('a cursor and a transaction open on one worker complete while the other worker is killed and replaced; a replacement that dies young waits before the next', async () => {
    const clients = await Promise.all(Array.from({ length: 4 }, () => RawClient.connect(port)));
    try {
      for (const c of clients) assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
      const workers = await workersOf(admin, clients);
      const survivor = clients[0]!;
      const doomedWorker = 1 - workers[0]!;
      const doomed = clients.filter((_, i) => workers[i] === doomedWorker);
      assert.ok(doomed.length > 0, `clients on both workers (${workers.join(',')})`);

      // On the surviving worker: a cursor with batches left, and a transaction with a write in it.
      await survivor.command({ insert: 'kill', documents: Array.from({ length: 10 }, (_, i) => ({ _id: i })), $db: 'workers' });
      const first = await survivor.command({ find: 'kill', filter: {}, sort: { _id: 1 }, batchSize: 3, $db: 'workers' });
      const cursorId = (first.cursor as Document).id as Long;
      assert.notEqual(String(cursorId), '0', 'the cursor has batches left');
      const session = { lsid: { id: new Binary(randomBytes(16), Binary.SUBTYPE_UUID) } };
      const inTxn = await survivor.command({ insert: 'kill', documents: [{ _id: 'txn' }], ...session, txnNumber: Long.fromNumber(1), startTransaction: true, autocommit: false, $db: 'workers' });
      assert.equal(inTxn.ok, 1);

      const before = await getJson<Livez>(admin, '/livez');
      const victim = before.workers.find((w) => w.worker === doomedWorker)!;
      process.kill(victim.pid, 'SIGKILL');
      await Promise.all(doomed.map((c) => c.closedPromise));
      // Until its replacement serves, the admin endpoint answers with the other worker's figures and names the missing one.
      const during = await getJson<{ unanswered?: Array<{ worker: number }> }>(admin, '/stats');
      assert.deepEqual(during.unanswered?.map((u) => u.worker), [doomedWorker]);
      assert.equal((await fetch(`http://${admin}/metrics`)).status, 200);

      const ids = ((first.cursor as Document).firstBatch as Document[]).map((d) => d._id as number);
      let id = cursorId;
      while (String(id) !== '0') {
        const more = await survivor.command({ getMore: id, collection: 'kill', batchSize: 3, $db: 'workers' });
        ids.push(...((more.cursor as Document).nextBatch as Document[]).map((d) => d._id as number));
        id = (more.cursor as Document).id as Long;
      }
      assert.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'the cursor on the surviving worker ran to its end');
      const commit = await survivor.command({ commitTransaction: 1, ...session, txnNumber: Long.fromNumber(1), autocommit: false, $db: 'admin' });
      assert.equal(commit.ok, 1, 'the transaction on the surviving worker committed');

      const replaced = await waitFor('a replacement worker', async () => {
        const now = await getJson<Livez>(admin, '/livez');
        const w = now.workers.find((x) => x.worker === doomedWorker)!;
        return w.up && w.pid !== victim.pid ? w : undefined;
      }, 20_000);
      assert.equal(replaced.restarts, 1);
      const fresh = await Promise.all(Array.from({ length: 4 }, () => RawClient.connect(port)));
      try {
        for (const c of fresh) assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
        assert.deepEqual([...new Set(await workersOf(admin, fresh))].sort(), [0, 1], 'new clients reach the replacement too');
      } finally {
        for (const c of fresh) c.destroy();
      }
      const metrics = await (await fetch(`http://${admin}/metrics`)).text();
      assert.match(metrics, /^mongoplex_worker_restarts_total 1$/m);

      // A replacement that dies soon after it started is not restarted at once: /livez shows the wait.
      process.kill(replaced.pid, 'SIGKILL');
      const waiting = await waitFor('the second replacement to be scheduled', async () => {
        const w = (await getJson<Livez>(admin, '/livez')).workers.find((x) => x.worker === doomedWorker)!;
        return !w.up && w.restartDelayMs !== undefined ? w : undefined;
      }, 10_000);
      assert.ok(waiting.restartDelayMs! >= 500, `a worker that died young waits before its replacement: ${waiting.restartDelayMs} ms`);
      const again = await waitFor('the second replacement', async () => {
        const w = (await getJson<Livez>(admin, '/livez')).workers.find((x) => x.worker === doomedWorker)!;
        return w.up && w.pid !== replaced.pid ? w : undefined;
      }, 40_000);
      assert.equal(again.restarts, 2);
      assert.equal(again.restartDelayMs, undefined, 'no replacement pending once it serves');
    } finally {
      for (const c of clients) c.destroy();
    }
  });
});

describe('workers: Envoy spreads ext_proc streams over every worker (mongoplex envoy-config --filter-workers)', () => {
  let proxy: MongoplexProcess;
  let front: EnvoyFront;

  before(async () => {
    const grpc = await consecutiveFreePorts(2);
    proxy = await MongoplexProcess.start({
      MONGOPLEX_WORKERS: '2', MONGOPLEX_LISTEN_PORT: 'null', MONGOPLEX_LISTEN_GRPC: `127.0.0.1:${grpc}`, MONGOPLEX_ADMIN_PORT: '0',
      MONGOPLEX_UPSTREAM_SERVERS: db.address, MONGOPLEX_UPSTREAM_MAX_POOL_SIZE: '4',
    });
    assert.deepEqual((proxy.listening as unknown as { grpcPorts: number[] }).grpcPorts, [grpc, grpc + 1]);
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc }, workers: 2 } });
  });
  after(async () => {
    await front?.envoy.stop();
    await proxy?.stop();
  });

  it('20 clients through Envoy are served by both workers, and every command is answered', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => new MongoClient(front.uri, { directConnection: true, maxPoolSize: 1 }).connect()));
    try {
      await Promise.all(clients.map(async (c, i) => {
        await c.db('workers_envoy').collection('c').insertOne({ i });
        assert.equal((await c.db('workers_envoy').collection('c').findOne({ i }))?.i, i);
      }));
      const rows = (await getJson<{ clients: ClientRow[] }>(proxy.listening.admin!, '/clients')).clients;
      const perWorker = [0, 1].map((w) => rows.filter((r) => r.worker === w).length);
      assert.ok(perWorker.every((n) => n > 0), `streams on both workers: ${perWorker.join(' and ')}`);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});
