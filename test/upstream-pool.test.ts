import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON } from 'bson';
import { ServerAddress } from '../filter/upstream/address';
import type { UpstreamConnection } from '../filter/upstream/connection';
import { CheckoutError, UpstreamPool, type PoolOptions } from '../filter/upstream/pool';
import { newRequestId, OpCode } from '../filter/wire/header';
import { encodeOpReply } from '../filter/wire/legacy';
import { MAX_BSON_OBJECT_SIZE, MAX_MESSAGE_SIZE_BYTES, MAX_WRITE_BATCH_SIZE } from '../filter/wire/limits';
import { freePort, waitFor } from '../scripts/ports';
import { WireEndpoint } from './support/wire-endpoint';

/**
 * A server that only shakes hands, and can be told to hold its handshake answers: enough to
 * watch a pool open, lend, queue and reap connections.
 */
class HandshakeServer {
  readonly endpoint = new WireEndpoint(undefined, (conn) => async (m) => {
    if (m.header.opCode !== OpCode.QUERY) return;
    await this.gate;
    conn.socket.write(encodeOpReply(newRequestId(), m.header.requestId, [BSON.serialize({
      ismaster: true, maxBsonObjectSize: MAX_BSON_OBJECT_SIZE, maxMessageSizeBytes: MAX_MESSAGE_SIZE_BYTES,
      maxWriteBatchSize: MAX_WRITE_BATCH_SIZE, maxWireVersion: 21, minWireVersion: 0, ok: 1,
    })]));
  });
  private gate: Promise<void> = Promise.resolve();
  private open: (() => void) | undefined;

  holdHandshakes(): void {
    this.gate = new Promise((r) => (this.open = r));
  }

  releaseHandshakes(): void {
    this.open?.();
    this.gate = Promise.resolve();
  }
}

/** A pool with small test defaults, remembered in `pools` to be closed after the suite. */
function newPool(pools: UpstreamPool[], address: ServerAddress, options: Partial<PoolOptions>): UpstreamPool {
  const p = new UpstreamPool(address, {
    maxPoolSize: 2, minPoolSize: 0, maxConnecting: 2, maxIdleTimeMs: 60_000, waitQueueTimeoutMs: 5000, maxWaitQueueSize: 100,
    connectTimeoutMs: 2000, appName: 'pool-test', compressors: [], ...options,
  });
  pools.push(p);
  return p;
}

/** Inside a describe: a handshake-only server, and the pools to close after the suite. */
function useHandshakeServer(): { server: HandshakeServer; pools: UpstreamPool[] } {
  const server = new HandshakeServer();
  const pools: UpstreamPool[] = [];
  before(() => server.endpoint.listen());
  after(async () => {
    for (const p of pools) p.close();
    await server.endpoint.close();
  });
  return { server, pools };
}

const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('upstream pool', () => {
  const { server, pools } = useHandshakeServer();

  const pool = (options: Partial<PoolOptions> = {}, address = ServerAddress.parse(server.endpoint.address)): UpstreamPool => newPool(pools, address, options);

  it('lends the most recently returned idle connection first, and serves waiters in arrival order', async () => {
    const p = pool({ maxPoolSize: 2 });
    const [a, b] = await Promise.all([p.checkOut(), p.checkOut()]);
    p.checkIn(a!);
    p.checkIn(b!);
    const warm = await p.checkOut();
    assert.equal(warm, b, 'LIFO: the warmest connection goes out first');
    const cold = await p.checkOut();
    const order: number[] = [];
    const waiting = [1, 2, 3].map((n) => p.checkOut().then((c) => {
      order.push(n);
      return c;
    }));
    await tick();
    assert.equal(p.stats().waiting, 3);
    p.checkIn(warm);
    p.checkIn(cold);
    const [first] = await Promise.all(waiting.slice(0, 2));
    p.checkIn(first!);
    await waiting[2];
    assert.deepEqual(order, [1, 2, 3]);
    assert.equal(p.stats().total, 2, 'never more than maxPoolSize');
  });

  it('opens at most maxConnecting connections at once', async () => {
    const p = pool({ maxPoolSize: 5, maxConnecting: 2 });
    server.holdHandshakes();
    const acceptedBefore = server.endpoint.accepted;
    const all = Promise.all(Array.from({ length: 5 }, () => p.checkOut()));
    await tick(100);
    assert.equal(p.stats().connecting, 2);
    assert.equal(server.endpoint.accepted - acceptedBefore, 2, 'the server saw two connection attempts, not five');
    server.releaseHandshakes();
    const conns = await all;
    assert.equal(new Set(conns).size, 5);
    for (const c of conns) p.checkIn(c);
  });

  it('fails a checkout that waited past waitQueueTimeoutMs with a timeout, and one beyond maxWaitQueueSize at once', async () => {
    const p = pool({ maxPoolSize: 1, waitQueueTimeoutMs: 100, maxWaitQueueSize: 1 });
    const held = await p.checkOut();
    const waited = p.checkOut();
    await assert.rejects(p.checkOut(), (e: unknown) => e instanceof CheckoutError && e.reason === 'queue_full');
    await assert.rejects(waited, (e: unknown) => e instanceof CheckoutError && e.reason === 'timeout' && /timed out after 100 ms/.test(e.message));
    assert.equal(p.stats().waiting, 0);
    p.checkIn(held);
  });

  it('reaps connections idle past maxIdleTimeMs, but never one holding a cursor, and keeps minPoolSize', async () => {
    const p = pool({ maxPoolSize: 3, minPoolSize: 1, maxIdleTimeMs: 1000 });
    const conns: UpstreamConnection[] = await Promise.all([p.checkOut(), p.checkOut(), p.checkOut()]);
    conns[0]!.cursorOpened();
    for (const c of conns) p.checkIn(c);
    p.sweep(Date.now() + 500);
    assert.equal(p.stats().total, 3, 'nothing idle long enough yet');
    p.sweep(Date.now() + 5000);
    assert.equal(conns[0]!.closed, false, 'the connection holding a cursor stays');
    assert.equal(p.stats().total, 1, 'the others are reaped down to minPoolSize');
    conns[0]!.cursorClosed();
    p.sweep(Date.now() + 5000);
    assert.equal(p.stats().total, 1, 'minPoolSize is kept even when idle');
  });

  it('refills minPoolSize on sweep', async () => {
    const p = pool({ minPoolSize: 2 });
    p.sweep();
    await waitFor('two idle connections', async () => (p.stats().idle === 2 ? true : undefined), 5000);
    assert.equal(p.stats().total, 2);
  });

  it('fails waiters at once when the server refuses connections, instead of letting them sit out the timeout', async () => {
    const p = pool({ waitQueueTimeoutMs: 60_000 }, ServerAddress.parse(`127.0.0.1:${await freePort()}`));
    const started = Date.now();
    await assert.rejects(p.checkOut(), (e: unknown) => e instanceof CheckoutError && e.reason === 'connect_failed');
    assert.ok(Date.now() - started < 5000);
  });

  it('drops a connection that closes while idle and opens a fresh one for the next checkout', async () => {
    const p = pool({ maxPoolSize: 1 });
    const first = await p.checkOut();
    p.checkIn(first);
    first.close('socket_error', 'test: closed while idle');
    const second = await p.checkOut();
    assert.notEqual(second, first);
    assert.equal(p.stats().total, 1);
    p.checkIn(second);
  });
});

describe('upstream pool: continuations before new work', () => {
  const { server, pools } = useHandshakeServer();

  const pool = (maxPoolSize: number): UpstreamPool => newPool(pools, ServerAddress.parse(server.endpoint.address), { maxPoolSize });

  it('while a cursor is open, new work gets at most all but one connection; the last one serves a continuation', async () => {
    const p = pool(3);
    const cursorConn = await p.checkOut();
    cursorConn.cursorOpened();
    p.checkIn(cursorConn);
    const a = await p.checkOut();
    const b = await p.checkOut();
    let third: UpstreamConnection | undefined;
    const blocked = p.checkOut().then((c) => (third = c));
    await tick(50);
    assert.equal(third, undefined, 'a third new request waits although the pool has room for a third connection');
    assert.equal(p.stats().total, 2);
    const continuation = await p.checkOut('continuation');
    assert.ok(continuation, 'the reserved connection serves the getMore at once');
    p.checkIn(continuation);
    p.checkIn(a);
    await blocked;
    assert.ok(third);
    for (const c of [b, third!]) p.checkIn(c);
    cursorConn.cursorClosed();
  });

  it('a waiting continuation is served before new work that waited longer', async () => {
    const p = pool(1);
    const held = await p.checkOut();
    const order: string[] = [];
    const n1 = p.checkOut().then((c) => (order.push('new'), c));
    await tick();
    const c1 = p.checkOut('continuation').then((c) => (order.push('continuation'), c));
    await tick();
    p.checkIn(held);
    p.checkIn(await c1);
    p.checkIn(await n1);
    assert.deepEqual(order, ['continuation', 'new']);
  });

  it('without open cursors, new work may use every connection', async () => {
    const p = pool(2);
    const [a, b] = await Promise.all([p.checkOut(), p.checkOut()]);
    assert.notEqual(a, b);
    p.checkIn(a);
    p.checkIn(b);
  });
});
