import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { BSON } from 'bson';
import { encodeOpMsg } from '../filter/wire/opmsg';
import { MessageFramer } from '../filter/wire/framer';
import { startEnvoyFront, type EnvoyFront } from '../scripts/envoy';
import { freePort, waitFor } from '../scripts/ports';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { RawClient } from './support/raw-client';
import { counterTotal } from './support/prometheus';
import { useFerretDB } from './support/setup';

/**
 * Envoy's network ext_proc takes every reply mongoplex injects, whether or not the client reads:
 * a client that never reads would make Envoy buffer without bound. Two bounds meet it:
 * mongoplex resets a client sent more than client.maxUnreadReplyBytes (or maxPendingRequests
 * replies) since it last sent anything, and the client listener's TCP_USER_TIMEOUT
 * (envoy-config --client-user-timeout) makes the kernel abort a connection under that bound
 * that stopped reading. Envoy frees what it held either way. A client that reads, however
 * slowly, keeps acknowledging and stays.
 */

const db = useFerretDB();
const MB = 1024 * 1024;
const USER_TIMEOUT_MS = 2000;

/** Envoy's heap in use, from its admin /memory. */
async function envoyAllocated(front: EnvoyFront): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${front.envoy.adminPort}/memory`);
  return Number(((await r.json()) as { allocated: string }).allocated);
}

function pipelinedFinds(socket: net.Socket, n: number): void {
  for (let i = 1; i <= n; i++) socket.write(encodeOpMsg(i, 0, BSON.serialize({ find: 'big', filter: { _id: 1 }, $db: 'unread' })));
}

/** Connections Envoy's client listener holds open. */
function activeConnections(front: EnvoyFront): Promise<number | undefined> {
  return front.envoy.stat(`listener.127.0.0.1_${front.port}.downstream_cx_active`);
}

async function connectNeverReading(front: EnvoyFront): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port: front.port });
  await new Promise((r) => s.once('connect', r));
  s.pause();
  s.on('error', () => undefined);
  return s;
}

async function assertBystanderServed(front: EnvoyFront): Promise<void> {
  const bystander = await RawClient.connect(front.port);
  assert.equal((await bystander.command({ ping: 1, $db: 'admin' })).ok, 1, 'a bystander is served');
  bystander.destroy();
}

describe('a client that never reads its replies through Envoy ext_proc', () => {
  let proxy: TestMongoplex;
  let front: EnvoyFront;
  /** The same mongoplex behind a listener without TCP_USER_TIMEOUT: only mongoplex's bound can close a client there. */
  let untimed: EnvoyFront;
  before(async () => {
    const grpc = await freePort();
    proxy = await startMongoplex(db.address, { listen: { grpc: `127.0.0.1:${grpc}` }, admin: { port: 0 } });
    front = await startEnvoyFront({ clientUserTimeoutMs: USER_TIMEOUT_MS, ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
    untimed = await startEnvoyFront({ clientUserTimeoutMs: 0, ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
    const seed = await RawClient.connect(proxy.port);
    await seed.command({ insert: 'big', documents: [{ _id: 1, pad: 'x'.repeat(MB) }], $db: 'unread' });
    seed.destroy();
  });
  after(async () => {
    await front?.envoy.stop();
    await untimed?.envoy.stop();
    await proxy?.stop();
  });

  it('is reset by mongoplex once it was sent more than client.maxUnreadReplyBytes since it last sent anything: Envoy never holds more, and the reset is counted', async () => {
    const baseline = await envoyAllocated(untimed);
    const s = await connectNeverReading(untimed);
    let peak = 0;
    const sampler = setInterval(() => void envoyAllocated(untimed).then((a) => (peak = Math.max(peak, a - baseline)), () => undefined), 50);
    try {
      pipelinedFinds(s, 200); // 200 MB of replies asked for; the default bound is 64 MiB
      await waitFor('Envoy to drop the connection', async () => ((await activeConnections(untimed)) === 0 ? true : undefined), 20_000);
      await assertBystanderServed(untimed);
      await waitFor('Envoy to free the replies', async () => ((await envoyAllocated(untimed)) - baseline < 20 * MB ? true : undefined), 10_000);
    } finally {
      clearInterval(sampler);
      s.destroy();
    }
    assert.ok(peak < 100 * MB, `Envoy held at most ${Math.round(peak / MB)} MB for the client (64 MiB of replies plus what is in flight), not the 200 MB it asked for`);
    assert.equal(await counterTotal(proxy.admin!.port, 'mongoplex_client_connections_closed_total', 'reason="unread_replies"'), 1);
    assert.equal(await counterTotal(proxy.admin!.port, 'mongoplex_client_protocol_errors_total', 'reason="unread_replies"'), 1);
  });

  it('is reset once it has more than client.maxPendingRequests replies unread, however small they are', async () => {
    const s = await connectNeverReading(untimed);
    try {
      for (let i = 1; i <= 100; i++) s.write(encodeOpMsg(i, 0, BSON.serialize({ ping: 1, $db: 'admin' })));
      await waitFor('Envoy to drop the connection', async () => ((await activeConnections(untimed)) === 0 ? true : undefined), 20_000);
    } finally {
      s.destroy();
    }
    assert.equal(await counterTotal(proxy.admin!.port, 'mongoplex_client_connections_closed_total', 'reason="unread_replies"'), 2);
  });

  it('under that bound, is aborted by the kernel after the listener\'s TCP_USER_TIMEOUT, Envoy frees what it held, and others are served meanwhile', async () => {
    const baseline = await envoyAllocated(front);
    const s = await connectNeverReading(front);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    const started = Date.now();
    pipelinedFinds(s, 40);
    await waitFor('Envoy to buffer the unread replies', async () => ((await envoyAllocated(front)) - baseline > 20 * MB ? true : undefined), 10_000);
    await assertBystanderServed(front);
    // The kernel aborts Envoy's side without a word to the client (it sends nothing on a timeout).
    await waitFor('Envoy to drop the connection', async () => ((await activeConnections(front)) === 0 ? true : undefined), 30_000);
    const tookMs = Date.now() - started;
    assert.ok(tookMs >= USER_TIMEOUT_MS, `dropped after ${tookMs} ms, not before the timeout`);
    await waitFor('mongoplex to end the session', async () => (proxy.proxy.clientCount === 0 ? true : undefined), 5000);
    await waitFor('Envoy to free the replies', async () => ((await envoyAllocated(front)) - baseline < 20 * MB ? true : undefined), 10_000);
    assert.equal(await counterTotal(proxy.admin!.port, 'mongoplex_client_connections_closed_total', 'reason="unread_replies"'), 2, 'mongoplex did not reset this one');
    // The client learns it at its next send: a reset.
    s.write(encodeOpMsg(999, 0, BSON.serialize({ ping: 1, $db: 'admin' })));
    s.resume();
    await closed;
  });

  it('a client that reads slowly but steadily is not closed and gets every reply', async () => {
    const s = net.connect({ host: '127.0.0.1', port: front.port });
    await new Promise((r) => s.once('connect', r));
    const framer = new MessageFramer(48_000_000);
    let replies = 0;
    let closed = false;
    s.on('close', () => (closed = true));
    s.pause();
    // What the socket holds, every 100 ms: far slower than the replies come, never silent for the timeout.
    const reader = setInterval(() => {
      const chunk = s.read() as Buffer | null;
      if (chunk) replies += framer.push(chunk).length;
    }, 100);
    try {
      pipelinedFinds(s, 6);
      await waitFor('every reply', async () => (replies >= 6 ? true : undefined), 30_000);
      assert.equal(closed, false, 'the slow reader stayed connected');
    } finally {
      clearInterval(reader);
      s.destroy();
    }
  });
});
