import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Long } from 'bson';
import { loadConfig } from '../filter/config';
import { createLogger } from '../filter/log';
import { Proxy } from '../filter/proxy';
import { writeHeader } from '../filter/wire/header';
import { MsgFlag } from '../filter/wire/opmsg';
import { freePort } from '../scripts/ports';
import { MemoryTransport, opMsg } from './support/memory-transport';

/**
 * The session and its command handler, driven through the ClientTransport interface with no
 * server at all: the upstream address refuses connections, so anything that reaches it fails.
 * What the proxy answers itself must still be answered, and every failure must be a Mongo error.
 */
describe('a client session without a reachable server', () => {
  let proxy: Proxy;

  before(async () => {
    const nobody = await freePort(); // free a moment ago: connecting to it is refused
    proxy = new Proxy(loadConfig({ env: {}, overrides: {
      upstream: { servers: [`127.0.0.1:${nobody}`], connectTimeoutMs: 2000, waitQueueTimeoutMs: 2000 },
      client: { maxPendingRequests: 2 },
      log: { level: 'silent' },
    } }), createLogger('silent'));
  });
  after(() => proxy.stop());

  function connect(): { transport: MemoryTransport; send: (b: Buffer) => void; end: () => void } {
    const transport = new MemoryTransport();
    const session = proxy.openSession(transport, undefined, 'tcp')!;
    return { transport, send: (b) => session.receive(b), end: () => session.endOfInput() };
  }

  it('answers whatsmyuri with the client\'s own address and connectionStatus with no users', async () => {
    const c = connect();
    c.send(opMsg(1, { whatsmyuri: 1, $db: 'admin' }));
    c.send(opMsg(2, { connectionStatus: 1, $db: 'admin' }));
    await c.transport.replyCount(2);
    const [uri, status] = c.transport.documents();
    assert.deepEqual(uri, { you: '192.0.2.7:50123', ok: 1 });
    assert.deepEqual(status?.authInfo, { authenticatedUsers: [], authenticatedUserRoles: [] });
    assert.deepEqual(c.transport.replies.map((r) => r.header.responseTo), [1, 2], 'replies answer their requests, in order');
  });

  it('refuses authentication and killAllSessions with the codes drivers know', async () => {
    const c = connect();
    c.send(opMsg(1, { saslStart: 1, mechanism: 'SCRAM-SHA-256', payload: Buffer.alloc(0), $db: 'admin' }));
    c.send(opMsg(2, { killAllSessions: [], $db: 'admin' }));
    await c.transport.replyCount(2);
    const [auth, kill] = c.transport.documents();
    assert.equal(auth?.code, 18);
    assert.equal(auth?.codeName, 'AuthenticationFailed');
    assert.equal(kill?.code, 13);
    assert.equal(c.transport.closedWith, undefined);
  });

  it('answers getLastError with no preceding unacknowledged write as "no error", without asking a server', async () => {
    const c = connect();
    c.send(opMsg(1, { getLastError: 1, $db: 'admin' }));
    const [reply] = await c.transport.replyCount(1);
    assert.ok(reply);
    assert.deepEqual(c.transport.documents()[0], { ok: 1, err: null, n: 0 });
  });

  it('answers hello with HostUnreachable when the upstream cannot describe itself', async () => {
    const c = connect();
    c.send(opMsg(1, { hello: 1, $db: 'admin' }));
    await c.transport.replyCount(1);
    const [hello] = c.transport.documents();
    assert.equal(hello?.code, 6);
    assert.match(String(hello?.errmsg), /cannot reach its upstream server/);
  });

  it('fails a retryable write it could not deliver with HostUnreachable and RetryableWriteError', async () => {
    const c = connect();
    c.send(opMsg(7, { insert: 'c', documents: [{ _id: 1 }], txnNumber: Long.fromNumber(1), lsid: { id: Buffer.alloc(16) }, $db: 'app' }));
    await c.transport.replyCount(1);
    const [reply] = c.transport.documents();
    assert.equal(reply?.code, 6);
    assert.deepEqual(reply?.errorLabels, ['RetryableWriteError']);
    assert.equal(c.transport.replies[0]?.header.responseTo, 7);
  });

  it('drops an undeliverable fire-and-forget write without a reply and keeps serving the connection', async () => {
    const c = connect();
    c.send(opMsg(1, { insert: 'c', documents: [{ _id: 1 }], writeConcern: { w: 0 }, $db: 'app' }, MsgFlag.moreToCome));
    c.send(opMsg(2, { whatsmyuri: 1, $db: 'admin' }));
    await c.transport.replyCount(1);
    assert.deepEqual(c.transport.replies.map((r) => r.header.responseTo), [2]);
  });

  it('refuses an unknown opcode with a ProtocolError reply and keeps the connection open', async () => {
    const c = connect();
    const odd = Buffer.alloc(21);
    writeHeader(odd, { messageLength: 21, requestId: 5, responseTo: 0, opCode: 4242 });
    c.send(odd);
    c.send(opMsg(6, { whatsmyuri: 1, $db: 'admin' }));
    await c.transport.replyCount(2);
    const [refused, after] = c.transport.documents();
    assert.equal(refused?.codeName, 'ProtocolError');
    assert.equal(after?.ok, 1);
    assert.equal(c.transport.closedWith, undefined);
  });

  it('answers an unframeable message (negative length) with an error naming the request, then closes', async () => {
    const c = connect();
    const bad = Buffer.alloc(16);
    writeHeader(bad, { messageLength: -5, requestId: 9, responseTo: 0, opCode: 2013 });
    c.send(bad);
    await c.transport.replyCount(1);
    assert.equal(c.transport.replies[0]?.header.responseTo, 9);
    assert.equal(c.transport.documents()[0]?.codeName, 'ProtocolError');
    assert.equal(c.transport.closedWith, 'protocol_error_invalid_length');
  });

  it('pauses a client that pipelines past maxPendingRequests and resumes it once its queue drains', async () => {
    const c = connect();
    c.send(Buffer.concat([1, 2, 3, 4].map((id) => opMsg(id, { whatsmyuri: 1, $db: 'admin' }))));
    await c.transport.replyCount(4);
    assert.deepEqual(c.transport.calls, ['pause', 'resume']);
    assert.deepEqual(c.transport.replies.map((r) => r.header.responseTo), [1, 2, 3, 4]);
  });

  it('answers what was queued before a half-close, then closes', async () => {
    const c = connect();
    c.send(Buffer.concat([opMsg(1, { whatsmyuri: 1, $db: 'admin' }), opMsg(2, { getLastError: 1, $db: 'admin' })]));
    c.end();
    await c.transport.replyCount(2);
    assert.equal(c.transport.replies.length, 2);
    assert.equal(c.transport.closedWith, 'client_end_of_input');
  });
});
