import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tls from 'node:tls';
import { BSON } from 'bson';
import { MongoClient, MongoServerError } from 'mongodb';
import { startMongoplex } from './support/mongoplex';
import { RawClient, decodeReply } from './support/raw-client';
import { useFaultRelay } from './support/fault-relay';
import { encodeOpMsg } from '../filter/wire/opmsg';
import { writeHeader } from '../filter/wire/header';
import { Metrics } from '../filter/telemetry/metrics';
import { useFerretDB, useProxiedDriver } from './support/setup';

/** One FerretDB for every suite in this file. */
/**
 * A FerretDB that says it is a replica-set member (`--repl-set-name`), so mongoplex presents a
 * mongos and drivers make their writes retryable (FerretDB takes `txnNumber` and ignores it).
 */
const db = useFerretDB({ replSetName: 'rs0' });

function header(length: number, requestId: number, opCode: number): Buffer {
  const b = Buffer.alloc(16);
  writeHeader(b, { messageLength: length, requestId, responseTo: 0, opCode });
  return b;
}

describe('bad input gets a clear error and disturbs no one else', () => {
  // A well-behaved client sharing the proxy (and its two pooled connections) with the attackers.
  const bystander = useProxiedDriver(() => db.address, { mongoplex: { upstream: { maxPoolSize: 2 }, client: { maxMessageSizeBytes: 1024 * 1024 } }, driver: { maxPoolSize: 1 } });

  before(async () => {
    await bystander.client.db('bad').collection('c').insertOne({ _id: 'still-here' } as never);
  });

  async function bystanderStillServed(): Promise<void> {
    assert.deepEqual(await bystander.client.db('bad').collection('c').findOne({ _id: 'still-here' } as never), { _id: 'still-here' });
  }

  it('answers a negative message length with a ProtocolError reply, then closes', async () => {
    const c = await RawClient.connect(bystander.proxy.port);
    c.send(header(-5, 77, 2013));
    const reply = await c.next();
    assert.ok(reply);
    assert.equal(reply.header.responseTo, 77);
    const doc = decodeReply(reply);
    assert.equal(doc.code, 17);
    assert.match(doc.errmsg, /invalid message length -5/);
    await c.closedPromise;
    await bystanderStillServed();
  });

  it('answers a length below the header size with an error and closes', async () => {
    const c = await RawClient.connect(bystander.proxy.port);
    c.send(header(8, 5, 2013));
    const doc = decodeReply((await c.next())!);
    assert.equal(doc.codeName, 'ProtocolError');
    await c.closedPromise;
  });

  it('refuses a message larger than maxMessageSizeBytes before buffering it', async () => {
    const c = await RawClient.connect(bystander.proxy.port);
    c.send(header(48_000_000, 9, 2013));
    const doc = decodeReply((await c.next())!);
    assert.equal(doc.codeName, 'BSONObjectTooLarge');
    assert.match(doc.errmsg, /exceeds maxMessageSizeBytes 1048576/);
    await c.closedPromise;
    await bystanderStillServed();
  });

  it('closes a TLS client on the plain port at once (no wait for a "message" that never completes), counted', async () => {
    // Default limits: a ClientHello read as a wire header declares ~16 MB, under maxMessageSizeBytes.
    const plain = await startMongoplex(db.address);
    try {
      const before = Metrics.clientProtocolErrors.value({ reason: 'tls_handshake' });
      const started = Date.now();
      const outcome = await new Promise<string>((resolve) => {
        const s = tls.connect({ host: '127.0.0.1', port: plain.port, rejectUnauthorized: false });
        s.on('secureConnect', () => resolve('handshake completed'));
        s.on('error', (e) => resolve(`error: ${e.message}`));
        s.on('close', () => resolve('closed'));
        setTimeout(() => {
          s.destroy();
          resolve('still open after 5 s');
        }, 5000).unref();
      });
      assert.notEqual(outcome, 'still open after 5 s');
      assert.notEqual(outcome, 'handshake completed');
      assert.ok(Date.now() - started < 2000, `closed after ${Date.now() - started} ms`);
      assert.equal(Metrics.clientProtocolErrors.value({ reason: 'tls_handshake' }), before + 1);
    } finally {
      await plain.stop();
    }
    await bystanderStillServed();
  });

  it('answers an unknown opcode with an error and keeps the connection usable', async () => {
    const c = await RawClient.connect(bystander.proxy.port);
    const msg = Buffer.concat([header(20, 3, 4242), Buffer.alloc(4)]);
    c.send(msg);
    const doc = decodeReply((await c.next())!);
    assert.equal(doc.ok, 0);
    assert.match(doc.errmsg, /unknown opcode 4242/);
    assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    c.destroy();
  });

  it('answers invalid BSON with InvalidBSON and keeps the connection usable', async () => {
    const c = await RawClient.connect(bystander.proxy.port);
    const body = Buffer.from(BSON.serialize({ find: 'c', $db: 'bad' }));
    body.writeInt32LE(body.length + 100, 0); // the document claims more bytes than it has
    c.send(encodeOpMsg(11, 0, body));
    const doc = decodeReply((await c.next())!);
    assert.equal(doc.codeName, 'InvalidBSON');
    const garbage = Buffer.from(BSON.serialize({ a: 1, $db: 'x' }));
    garbage[4] = 0x7f; // an element type that does not exist
    c.send(encodeOpMsg(12, 0, garbage));
    assert.equal(decodeReply((await c.next())!).codeName, 'InvalidBSON');
    assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
    c.destroy();
  });

  it('refuses an OP_MSG with unknown required flag bits', async () => {
    const c = await RawClient.connect(bystander.proxy.port);
    const doc = await c.command({ ping: 1, $db: 'admin' }, 1 << 5);
    assert.equal(doc.codeName, 'ProtocolError');
    assert.match(doc.errmsg, /unknown required flag bits 0x20/);
    c.destroy();
  });

  it('survives random garbage followed by a vanished client', async () => {
    const c = await RawClient.connect(bystander.proxy.port);
    const msg = encodeOpMsg(1, 0, BSON.serialize({ insert: 'c', documents: [{ x: 1 }], $db: 'bad' }));
    c.send(msg.subarray(0, msg.length - 10)); // truncated: the rest never comes
    c.destroy();
    await c.closedPromise;
    await bystanderStillServed();
  });

  it('keeps the pooled connection healthy when a client vanishes while its request is upstream', async () => {
    const closedBefore = Metrics.upstreamConnectionsClosed.value();
    const c = await RawClient.connect(bystander.proxy.port);
    const docs = Array.from({ length: 2000 }, (_, i) => ({ i, pad: 'y'.repeat(200) }));
    c.send(encodeOpMsg(1, 0, BSON.serialize({ insert: 'vanish', documents: docs, $db: 'bad' })));
    await new Promise((r) => setTimeout(r, 5));
    c.destroy();
    await bystanderStillServed();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(Metrics.upstreamConnectionsClosed.value() - closedBefore, 0, 'no upstream connection was thrown away');
    await bystanderStillServed();
  });
});

describe('an upstream that vanishes mid-reply', () => {
  const fault = useFaultRelay(() => db);
  let proxy: Awaited<ReturnType<typeof startMongoplex>>;

  before(async () => {
    proxy = await startMongoplex(fault.relay.address, { upstream: { maxPoolSize: 1 } });
  });
  after(async () => {
    await proxy?.stop();
  });

  it('gives the client a HostUnreachable error reply instead of a hang, and the next request works', async () => {
    const c = await RawClient.connect(proxy.port);
    assert.equal((await c.command({ insert: 'v', documents: [{ _id: 1 }], $db: 'cut' })).ok, 1);
    fault.relay.severNextReply(10);
    const doc = await c.command({ find: 'v', filter: {}, $db: 'cut' });
    assert.equal(doc.ok, 0);
    assert.equal(doc.codeName, 'HostUnreachable');
    assert.match(doc.errmsg, /lost/);
    assert.equal(doc.errorLabels, undefined, 'a read carries no write labels');
    assert.equal(fault.relay.severed, 1);
    const again = await c.command({ find: 'v', filter: {}, $db: 'cut' });
    assert.equal(again.ok, 1);
    c.destroy();
  });

  it('labels a retryable write RetryableWriteError, so the driver retries it and succeeds', async () => {
    const client = await new MongoClient(proxy.uri, { retryWrites: true }).connect();
    try {
      const col = client.db('cut').collection('retry');
      await col.insertOne({ _id: 'warm' } as never);
      const updatesBefore = await db.metricSum('ferretdb_client_requests_total{command="update"');
      fault.relay.severNextReply(10);
      // Idempotent on purpose: FerretDB does not deduplicate retried writes by txnNumber the
      // way mongod does (the proxy passes lsid/txnNumber through untouched for mongod to do so).
      const res = await col.updateOne({ _id: 'once' } as never, { $set: { v: 1 } }, { upsert: true });
      assert.equal(res.acknowledged, true);
      assert.deepEqual(await col.findOne({ _id: 'once' } as never), { _id: 'once', v: 1 });
      assert.equal(fault.relay.severed, 2);
      const updatesAfter = await db.metricSum('ferretdb_client_requests_total{command="update"');
      assert.equal(updatesAfter - updatesBefore, 2, 'the server saw the write and its retry');
    } finally {
      await client.close();
    }
  });

  it('does not label a non-retryable write, so the application sees the failure', async () => {
    const client = await new MongoClient(proxy.uri, { retryWrites: false }).connect();
    try {
      const col = client.db('cut').collection('noretry');
      await col.insertOne({ _id: 'warm' } as never);
      fault.relay.severNextReply(10);
      await assert.rejects(col.insertOne({ _id: 'x' } as never), (err: unknown) => {
        assert.ok(err instanceof MongoServerError);
        assert.equal(err.code, 6);
        assert.equal(err.hasErrorLabel('RetryableWriteError'), false);
        return true;
      });
    } finally {
      await client.close();
    }
  });
});

describe('connection-scoped commands are handled by the proxy, not by whichever pooled connection is free', () => {
  let proxy: Awaited<ReturnType<typeof startMongoplex>>;

  before(async () => {
    proxy = await startMongoplex(db.address);
  });
  after(async () => {
    await proxy?.stop();
  });

  it('whatsmyuri names the client\'s own connection to the proxy', async () => {
    const c = await RawClient.connect(proxy.port);
    const r = await c.command({ whatsmyuri: 1, $db: 'admin' });
    assert.equal(r.you, `127.0.0.1:${c.socket.localPort}`);
    c.destroy();
  });

  it('connectionStatus reports an unauthenticated client, not the proxy\'s upstream identity', async () => {
    const c = await RawClient.connect(proxy.port);
    const r = await c.command({ connectionStatus: 1, $db: 'admin' });
    assert.deepEqual(r.authInfo, { authenticatedUsers: [], authenticatedUserRoles: [] });
    c.destroy();
  });

  it('killAllSessions is refused: on shared connections it would end every client\'s sessions', async () => {
    const c = await RawClient.connect(proxy.port);
    const r = await c.command({ killAllSessions: [], $db: 'admin' });
    assert.equal(r.codeName, 'Unauthorized');
    assert.match(r.errmsg, /use killSessions/);
    c.destroy();
  });
});
