import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON } from 'bson';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { RawClient, decodeReply, partialInsert, startLargeMessages } from './support/raw-client';
import { encodeOpMsg } from '../filter/wire/opmsg';
import { Metrics } from '../filter/telemetry/metrics';
import { waitFor } from '../scripts/ports';
import { useFerretDB } from './support/setup';
import { proxyStats } from '../filter/admin/views';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

const MB = 1024 * 1024;

describe('process-wide client input budget and the per-message read deadline', () => {
  let proxy: TestMongoplex;

  before(async () => {
    proxy = await startMongoplex(db.address, { client: { maxMessageSizeBytes: 2 * MB, maxTotalBufferedBytes: 4 * MB, readTimeoutMs: 1000 } });
  });
  after(async () => {
    await proxy?.stop();
  });

  it('clients that each start a large message and stop are refused once their declared sizes would overrun the budget; others are served', async () => {
    const refusedBefore = Metrics.clientProtocolErrors.value({ reason: 'memory_budget' });
    const flooders = await Promise.all(Array.from({ length: 5 }, () => RawClient.connect(proxy.port)));
    // Each sends 1 KB of a 1.5 MB message: the header claims all 1.5 MB.
    const answers = await startLargeMessages(flooders, 1.5 * MB, 500);
    const refused = answers.filter((a) => a !== undefined);
    assert.equal(refused.length, 3, 'two 1.5 MB claims fit in 4 MB, the other three are refused');
    for (const r of refused) {
      assert.equal(r!.codeName, 'ExceededMemoryLimit');
      assert.match(r!.errmsg, /would overrun the 4194304 bytes all clients may have buffered \(client\.maxTotalBufferedBytes\)/);
    }
    assert.equal(Metrics.clientProtocolErrors.value({ reason: 'memory_budget' }), refusedBefore + 3);
    assert.ok(proxyStats(proxy.proxy).clientClaimedBytes <= 4 * MB);
    const bystander = await RawClient.connect(proxy.port);
    assert.equal((await bystander.command({ ping: 1, $db: 'admin' })).ok, 1, 'a small request still fits');
    bystander.destroy();
    for (const f of flooders) f.destroy();
    await waitFor('the claims to be released', async () => (proxyStats(proxy.proxy).clientClaimedBytes === 0 ? true : undefined), 3000);
  });

  it('a sender that trickles a message is closed after client.readTimeoutMs with a NetworkTimeout reply', async () => {
    const c = await RawClient.connect(proxy.port);
    const msg = partialInsert(7, 4096, 4096);
    c.send(msg.subarray(0, 100));
    const started = Date.now();
    let sent = 100;
    const trickle = setInterval(() => {
      if (sent < msg.length - 1) c.send(msg.subarray(sent, ++sent));
    }, 200);
    try {
      const reply = await c.next();
      assert.ok(reply, 'an error reply before the close');
      const doc = decodeReply(reply);
      assert.equal(doc.codeName, 'NetworkTimeout');
      assert.match(doc.errmsg, /did not arrive within 1000 ms \(client\.readTimeoutMs\)/);
      await c.closedPromise;
      const took = Date.now() - started;
      assert.ok(took >= 1000 && took < 3500, `closed after ${took} ms`);
    } finally {
      clearInterval(trickle);
      c.destroy();
    }
  });

  it('a client pipelining many messages back to back is never taken for a slow sender', async () => {
    const c = await RawClient.connect(proxy.port);
    const one = encodeOpMsg(1, 0, BSON.serialize({ ping: 1, $db: 'admin' }));
    // Chunks that always end mid-message, for longer than readTimeoutMs.
    const stream = Buffer.concat(Array.from({ length: 400 }, () => one));
    const started = Date.now();
    let at = 0;
    while (at < stream.length) {
      const next = Math.min(stream.length, at + Math.floor(one.length * 1.5));
      c.send(stream.subarray(at, next));
      at = next;
      await new Promise((r) => setTimeout(r, 5));
    }
    for (let i = 0; i < 400; i++) assert.equal(decodeReply((await c.next())!).ok, 1);
    assert.ok(Date.now() - started > 1000, 'the stream lasted longer than readTimeoutMs');
    assert.equal(c.closed, false);
    c.destroy();
  });
});
