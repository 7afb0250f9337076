import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { FerretDB } from '../scripts/ferretdb';
import { waitFor } from '../scripts/ports';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { FaultRelay } from './support/fault-relay';
import { RawClient } from './support/raw-client';
import { proxyStats } from '../filter/admin/views';

interface Readyz {
  status: number;
  body: { ready: boolean; reasons: string[]; servers: Array<{ server: string; type: string; error?: string }> };
}

async function readyz(proxy: TestMongoplex, query = ''): Promise<Readyz> {
  const r = await fetch(`http://127.0.0.1:${proxy.admin!.port}/readyz${query}`);
  return { status: r.status, body: (await r.json()) as Readyz['body'] };
}

/** Polls /readyz until it answers `status`; resolves with that answer and how long it took. */
async function readyzBecomes(proxy: TestMongoplex, status: number, timeoutMs: number): Promise<Readyz & { afterMs: number }> {
  const started = Date.now();
  const r = await waitFor(`/readyz to answer ${status}`, async () => {
    const x = await readyz(proxy);
    return x.status === status ? x : undefined;
  }, timeoutMs);
  return { ...r, afterMs: Date.now() - started };
}

describe('liveness and readiness', () => {
  let db: FerretDB;
  let proxy: TestMongoplex;

  before(async () => {
    db = await FerretDB.start();
    proxy = await startMongoplex(db.address, {
      admin: { port: 0 },
      topology: { heartbeatMs: 200 },
      upstream: { connectTimeoutMs: 1000 },
    });
  });
  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  it('/livez answers 200 and /readyz 200 once the upstream answers; query strings are accepted', async () => {
    const live = await fetch(`http://127.0.0.1:${proxy.admin!.port}/livez?verbose=1`);
    assert.equal(live.status, 200);
    const ready = await readyzBecomes(proxy, 200, 5000);
    assert.deepEqual(ready.body.reasons, []);
    assert.equal(ready.body.servers[0]!.server, db.address);
    assert.equal((await readyz(proxy, '?full=true')).status, 200);
    const old = await fetch(`http://127.0.0.1:${proxy.admin!.port}/healthz`);
    assert.equal(old.status, 404);
    assert.match(((await old.json()) as { error: string }).error, /try \/, \/livez, \/readyz, \/metrics, \/stats/);
  });

  it('/readyz fails within seconds of the upstream dying, names it, and recovers when it is back', async () => {
    await readyzBecomes(proxy, 200, 5000);
    const port = db.port;
    await db.stop();
    const down = await readyzBecomes(proxy, 503, 5000);
    assert.ok(down.afterMs < 3000, `unready after ${down.afterMs} ms`);
    assert.match(down.body.reasons[0]!, new RegExp(`no writable upstream server: 127\\.0\\.0\\.1:${port} is Unknown \\(.+\\)`));
    assert.equal((await fetch(`http://127.0.0.1:${proxy.admin!.port}/livez`)).status, 200, 'still live: the process serves');
    db = await FerretDB.start({ port });
    const up = await readyzBecomes(proxy, 200, 5000);
    assert.ok(up.afterMs < 3000, `ready again after ${up.afterMs} ms`);
    const client = await new MongoClient(proxy.uri).connect();
    try {
      assert.equal((await client.db('admin').command({ ping: 1 })).ok, 1);
    } finally {
      await client.close();
    }
  });
});

describe('readiness under pool saturation', () => {
  let db: FerretDB;
  let relay: FaultRelay;
  let proxy: TestMongoplex;

  before(async () => {
    db = await FerretDB.start();
    relay = new FaultRelay(db.host, db.port);
    await relay.listen();
    proxy = await startMongoplex(relay.address, {
      admin: { port: 0 },
      upstream: { maxPoolSize: 1, waitQueueTimeoutMs: 20_000, connectTimeoutMs: 20_000 },
      readiness: { maxCheckoutWaitMs: 300, saturatedForMs: 1000 },
    });
  });
  after(async () => {
    relay?.release();
    await proxy?.stop();
    await relay?.close();
    await db?.stop();
  });

  it('/readyz fails while requests keep waiting for the pool\'s connections, and recovers when the queue drains', async () => {
    await readyzBecomes(proxy, 200, 5000);
    const [a, b] = await Promise.all([RawClient.connect(proxy.port), RawClient.connect(proxy.port)]);
    assert.equal((await a!.command({ ping: 1, $db: 'admin' })).ok, 1); // the one pooled connection exists
    relay.hold(); // the server stops answering: the connection stays busy
    const slow = a!.command({ ping: 1, $db: 'admin' });
    await waitFor('the only connection to be busy', async () => (proxyStats(proxy.proxy).pools[0]!.idle === 0 ? true : undefined));
    const queued = b!.command({ ping: 1, $db: 'admin' });
    const jammed = await readyzBecomes(proxy, 503, 5000);
    assert.ok(jammed.afterMs < 3000, `unready after ${jammed.afterMs} ms`);
    assert.match(jammed.body.reasons.join('\n'), /pool for 127\.0\.0\.1:\d+ saturated for \d+\.\d s: a request has waited \d+\.\d s for one of its 1 connections/);
    relay.release();
    assert.equal((await slow).ok, 1);
    assert.equal((await queued).ok, 1);
    const recovered = await readyzBecomes(proxy, 200, 3000);
    assert.deepEqual(recovered.body.reasons, []);
    a!.destroy();
    b!.destroy();
  });
});
