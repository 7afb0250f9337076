import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Binary, Long, MongoClient, MongoServerError, type Document } from 'mongodb';
import { ScramClient } from '../filter/auth/scram';
import { addUser } from '../filter/auth/users';
import { ConfigError, loadConfig } from '../filter/config';
import { startEnvoyFront, type EnvoyFront } from '../scripts/envoy';
import { FerretDB } from '../scripts/ferretdb';
import { freePort, waitFor } from '../scripts/ports';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { RawClient } from './support/raw-client';

const MAIN = path.resolve(__dirname, '..', 'filter', 'main.js');
const SERVICE = { username: 'mongoplex-svc', password: 'svc-Secret-9f2c' };

// Its own FerretDB with access control on: nothing reaches it without logging in.
const server = new FerretDB({ auth: SERVICE });
let dir: string;
before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-auth-'));
  await server.start();
});
after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const payloadOf = (reply: Document): Buffer => Buffer.from((reply.payload as Binary).buffer);

describe('upstream login: pooled and monitor connections log in to a server with access control', () => {
  it('the server refuses a client that does not log in (the fixture really enforces it)', async () => {
    const c = new MongoClient(server.uri, { serverSelectionTimeoutMS: 3000 });
    try {
      await assert.rejects(c.db('t').collection('c').insertOne({ a: 1 }), /requires authentication/);
    } finally {
      await c.close();
    }
  });

  for (const mechanism of ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'DEFAULT'] as const) {
    it(`with ${mechanism}, a client of mongoplex (auth.mode none) reads and writes`, async () => {
      const passwordFile = path.join(dir, `pw-${mechanism}`);
      writeFileSync(passwordFile, `${SERVICE.password}\n`, { mode: 0o600 });
      const proxy = await startMongoplex(server.address, { upstream: { auth: { username: SERVICE.username, passwordFile, mechanism } } });
      const c = await new MongoClient(proxy.uri).connect();
      try {
        await c.db('up').collection(mechanism).insertOne({ mechanism });
        assert.equal((await c.db('up').collection(mechanism).findOne({ mechanism }))?.mechanism, mechanism);
      } finally {
        await c.close();
        await proxy.stop();
      }
    });
  }

  it('a wrong upstream password stops the start with an error naming upstream.auth, and never shows the password', async () => {
    const wrong = 'wrong-Password-771';
    await assert.rejects(startMongoplex(server.address, { upstream: { auth: { username: SERVICE.username, password: wrong } } }), (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^upstream\.auth: login as "mongoplex-svc" \(authSource admin\) at .* failed: Authentication failed/);
      assert.ok(!err.message.includes(wrong));
      return true;
    });
    // The process: exit 2, the same message on stderr, the password nowhere in its output.
    const port = await freePort();
    const run = spawnSync(process.execPath, [MAIN], {
      env: { ...process.env, MONGOPLEX_LISTEN_PORT: String(port), MONGOPLEX_UPSTREAM_SERVERS: server.address, MONGOPLEX_UPSTREAM_AUTH_USERNAME: SERVICE.username, MONGOPLEX_UPSTREAM_AUTH_PASSWORD: wrong, MONGOPLEX_LOG_LEVEL: 'info' },
      encoding: 'utf8', timeout: 30_000,
    });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /mongoplex: upstream\.auth: login as "mongoplex-svc"/);
    assert.ok(!run.stdout.includes(wrong) && !run.stderr.includes(wrong), 'the password is not in the output');
  });
});

describe('auth.mode proxy: clients log in at mongoplex with SCRAM', () => {
  let usersFile: string;
  let proxy: TestMongoplex;
  let front: EnvoyFront;
  before(async () => {
    usersFile = path.join(dir, 'users.json');
    addUser(usersFile, 'app', 'admin', 'app-Pw-1');
    addUser(usersFile, 'legacy', 'admin', 'legacy-Pw-2', ['SCRAM-SHA-1']);
    addUser(usersFile, 'reporting', 'shop', 'rep-Pw-3');
    const grpc = await freePort();
    proxy = await startMongoplex(server.address, {
      auth: { mode: 'proxy', usersFile },
      upstream: { auth: { username: SERVICE.username, password: SERVICE.password } },
      listen: { grpc: `127.0.0.1:${grpc}` },
    });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
  });
  after(async () => {
    await front?.envoy.stop();
    await proxy?.stop();
  });

  const ingresses = () => [['TCP ingress', proxy.port], ['Envoy ext_proc', front.port]] as const;
  const uri = (port: number, user: string, password: string, query = '') => `mongodb://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${query}`;

  it('the official driver logs in with SCRAM-SHA-256, SCRAM-SHA-1, the default mechanism and an authSource, through both ingresses', async () => {
    for (const [ingress, port] of ingresses()) {
      const cases = [
        ['app', 'app-Pw-1', '?authMechanism=SCRAM-SHA-256', 'admin'],
        ['app', 'app-Pw-1', '?authMechanism=SCRAM-SHA-1', 'admin'],
        // The default: speculative SCRAM-SHA-256 in the handshake, declined for a user with only
        // SCRAM-SHA-1, then saslStart with the mechanism saslSupportedMechs named.
        ['legacy', 'legacy-Pw-2', '', 'admin'],
        ['reporting', 'rep-Pw-3', '?authSource=shop', 'shop'],
      ] as const;
      for (const [user, password, query, db] of cases) {
        const c = await new MongoClient(uri(port, user, password, query), { serverSelectionTimeoutMS: 5000 }).connect();
        try {
          const tag = `${ingress} ${user}${query}`;
          await c.db('shop').collection('orders').insertOne({ tag });
          assert.equal(await c.db('shop').collection('orders').countDocuments({ tag }), 1, tag);
          const status = await c.db('admin').command({ connectionStatus: 1 });
          assert.deepEqual(status.authInfo.authenticatedUsers, [{ user, db }], `${ingress} ${user}${query}`);
        } finally {
          await c.close();
        }
      }
    }
  });

  it('a wrong password and an unknown user get AuthenticationFailed (18) with one and the same message', async () => {
    for (const [ingress, port] of ingresses()) {
      const failures: string[] = [];
      for (const [user, password] of [['app', 'not-it'], ['nobody', 'not-it'], ['legacy', 'app-Pw-1']]) {
        const c = new MongoClient(uri(port, user!, password!), { serverSelectionTimeoutMS: 5000 });
        const err = await c.connect().then(() => undefined, (e: Error & { code?: number }) => e);
        await c.close();
        assert.ok(err, `${ingress}: ${user} must not log in`);
        failures.push(`${err.code} ${err.message}`);
      }
      assert.deepEqual(failures, Array(3).fill('18 Authentication failed.'), ingress);
    }
  });

  it('a login without speculativeAuthenticate or skipEmptyExchange takes three round trips; a replayed proof is refused', async () => {
    const scram = new ScramClient('SCRAM-SHA-256', 'app', 'app-Pw-1');
    const c = await RawClient.connect(proxy.port);
    const first = await c.command({ saslStart: 1, mechanism: 'SCRAM-SHA-256', payload: new Binary(scram.clientFirst), $db: 'admin' });
    assert.equal(first.done, false);
    const clientFinal = scram.clientFinal(payloadOf(first));
    const second = await c.command({ saslContinue: 1, conversationId: first.conversationId, payload: new Binary(clientFinal), $db: 'admin' });
    assert.deepEqual([second.ok, second.done], [1, false]);
    scram.verifyServerFinal(payloadOf(second)); // the proxy proved it holds the user's ServerKey
    const third = await c.command({ saslContinue: 1, conversationId: first.conversationId, payload: new Binary(Buffer.alloc(0)), $db: 'admin' });
    assert.deepEqual([third.ok, third.done], [1, true]);
    assert.equal((await c.command({ find: 'orders', filter: {}, $db: 'shop' })).ok, 1);
    c.destroy();

    // Someone who recorded that conversation sends it again: the server's nonce is new, so the proof is not valid.
    const replay = await RawClient.connect(proxy.port);
    const again = await replay.command({ saslStart: 1, mechanism: 'SCRAM-SHA-256', payload: new Binary(scram.clientFirst), $db: 'admin' });
    const refused = await replay.command({ saslContinue: 1, conversationId: again.conversationId, payload: new Binary(clientFinal), $db: 'admin' });
    assert.deepEqual([refused.ok, refused.code, refused.errmsg], [0, 18, 'Authentication failed.']);
    assert.equal((await replay.command({ find: 'orders', filter: {}, $db: 'shop' })).code, 13);
    replay.destroy();
  });

  it('before logging in only the handshake, the login and ping are served; logout ends the login', async () => {
    const c = await RawClient.connect(front.port);
    try {
      assert.equal((await c.command({ hello: 1, $db: 'admin' })).ok, 1);
      assert.equal((await c.command({ ping: 1, $db: 'admin' })).ok, 1);
      const refused = await c.command({ find: 'orders', filter: {}, $db: 'shop' });
      assert.deepEqual([refused.ok, refused.code, refused.codeName, refused.errmsg], [0, 13, 'Unauthorized', 'command find requires authentication']);
      const scram = new ScramClient('SCRAM-SHA-1', 'app', 'app-Pw-1');
      const first = await c.command({ saslStart: 1, mechanism: 'SCRAM-SHA-1', payload: new Binary(scram.clientFirst), options: { skipEmptyExchange: true }, $db: 'admin' });
      const done = await c.command({ saslContinue: 1, conversationId: first.conversationId, payload: new Binary(scram.clientFinal(payloadOf(first))), $db: 'admin' });
      assert.deepEqual([done.ok, done.done], [1, true], 'skipEmptyExchange: done in two round trips');
      assert.equal((await c.command({ find: 'orders', filter: {}, $db: 'shop' })).ok, 1);
      assert.equal((await c.command({ logout: 1, $db: 'admin' })).ok, 1);
      assert.equal((await c.command({ find: 'orders', filter: {}, $db: 'shop' })).code, 13);
      assert.deepEqual((await c.command({ connectionStatus: 1, $db: 'admin' })).authInfo.authenticatedUsers, []);
    } finally {
      c.destroy();
    }
  });

  it('a user whose secret changes is refused at the next login with the old password', async () => {
    addUser(usersFile, 'rotating', 'admin', 'first-Pw');
    const login = async (password: string) => {
      const c = new MongoClient(uri(proxy.port, 'rotating', password), { serverSelectionTimeoutMS: 5000 });
      try {
        await c.connect();
        return 'ok';
      } catch (err) {
        return (err as Error).message;
      } finally {
        await c.close();
      }
    };
    await waitFor('the new user is picked up', async () => ((await login('first-Pw')) === 'ok' ? true : undefined));
    addUser(usersFile, 'rotating', 'admin', 'second-Pw');
    await waitFor('the changed secret applies', async () => ((await login('first-Pw')) === 'Authentication failed.' ? true : undefined));
    assert.equal(await login('second-Pw'), 'ok');
  });

  it("a cursor is served only to the user who opened it: another user's getMore or killCursors gets Unauthorized, an unknown cursor CursorNotFound", async () => {
    const owner = await new MongoClient(uri(proxy.port, 'app', 'app-Pw-1')).connect();
    const other = await new MongoClient(uri(front.port, 'reporting', 'rep-Pw-3', '?authSource=shop')).connect();
    try {
      const coll = owner.db('owned').collection('docs');
      await coll.insertMany([1, 2, 3, 4, 5, 6].map((n) => ({ n })));
      const opened = await owner.db('owned').command({ find: 'docs', batchSize: 2 });
      const raw = (opened.cursor as { id: Long | number }).id;
      const id = typeof raw === 'number' ? Long.fromNumber(raw) : raw;
      assert.ok(!id.isZero());
      const refusedGetMore = await other.db('owned').command({ getMore: id, collection: 'docs' }).catch((e: MongoServerError) => e);
      assert.ok(refusedGetMore instanceof MongoServerError);
      assert.equal(refusedGetMore.code, 13);
      assert.equal(refusedGetMore.message, `cursor id ${id.toString()} was not created by the authenticated user`);
      const refusedKill = await other.db('owned').command({ killCursors: 'docs', cursors: [id] }).catch((e: MongoServerError) => e);
      assert.ok(refusedKill instanceof MongoServerError && refusedKill.code === 13);
      // The owner's cursor is untouched: it continues where it was.
      const next = await owner.db('owned').command({ getMore: id, collection: 'docs', batchSize: 10 });
      assert.equal((next.cursor as { nextBatch: unknown[] }).nextBatch.length, 4);
      const unknown = await owner.db('owned').command({ getMore: Long.fromNumber(987654321), collection: 'docs' }).catch((e: MongoServerError) => e);
      assert.ok(unknown instanceof MongoServerError && unknown.code === 43, String(unknown));
    } finally {
      await owner.close();
      await other.close();
    }
  });

  it('mongoplex users add stores SCRAM secrets, never the password, in a 0600 file', () => {
    const file = path.join(dir, 'cli-users.json');
    const run = spawnSync(process.execPath, [MAIN, 'users', 'add', '--file', file, '--user', 'cli-user', '--db', 'shop'], { input: 'cli-Password-5\n', encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const text = readFileSync(file, 'utf8');
    assert.ok(!text.includes('cli-Password-5'));
    const users = JSON.parse(text) as { users: Array<{ user: string; db: string; credentials: Record<string, { iterationCount: number }> }> };
    assert.deepEqual(users.users.map((u) => [u.user, u.db, Object.keys(u.credentials).sort(), u.credentials['SCRAM-SHA-256']!.iterationCount]), [['cli-user', 'shop', ['SCRAM-SHA-1', 'SCRAM-SHA-256'], 15000]]);
  });
});

describe('auth.userSource upstream: the proxy asks the server for users\' secrets (usersInfo showCredentials)', () => {
  let proxy: TestMongoplex;
  let admin: MongoClient;
  const serviceUri = () => `mongodb://${SERVICE.username}:${encodeURIComponent(SERVICE.password)}@${server.address}/?directConnection=true`;
  const login = async (user: string, password: string, query = '') => {
    const c = new MongoClient(`mongodb://${user}:${encodeURIComponent(password)}@127.0.0.1:${proxy.port}/${query}`, { serverSelectionTimeoutMS: 5000 });
    try {
      await c.db('query').collection('c').insertOne({ user });
      return (await c.db('query').collection('c').findOne({ user })) ? 'ok' : 'not found';
    } catch (err) {
      return (err as Error).message;
    } finally {
      await c.close();
    }
  };
  before(async () => {
    admin = await new MongoClient(serviceUri()).connect();
    await admin.db('admin').command({ createUser: 'queried', pwd: 'queried-Pw-1', roles: [] });
    proxy = await startMongoplex(server.address, {
      auth: { mode: 'proxy', userSource: 'upstream' },
      upstream: { auth: { username: SERVICE.username, password: SERVICE.password } },
      admin: { port: 0 },
    });
  });
  after(async () => {
    await proxy?.stop();
    await admin?.close();
  });

  it('a user the server knows logs in with SCRAM-SHA-256 and SCRAM-SHA-1, with no users file; wrong password and unknown user get AuthenticationFailed', async () => {
    assert.equal(await login('queried', 'queried-Pw-1', '?authMechanism=SCRAM-SHA-256'), 'ok');
    assert.equal(await login('queried', 'queried-Pw-1', '?authMechanism=SCRAM-SHA-1'), 'ok');
    assert.equal(await login('queried', 'queried-Pw-1'), 'ok');
    assert.equal(await login('queried', 'wrong-Pw'), 'Authentication failed.');
    assert.equal(await login('nobody', 'queried-Pw-1'), 'Authentication failed.');
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.admin!.port}/metrics`)).text();
    const queries = (result: string) => Number(new RegExp(`^mongoplex_auth_user_queries_total\\{[^}]*result="${result}"[^}]*\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
    // Answers are cached: five logins as "queried" cost one or two queries (a wrong proof drops a secret older than 1 s).
    assert.ok(queries('found') >= 1 && queries('found') <= 2, `found: ${queries('found')}`);
    assert.equal(queries('not_found'), 1);
    assert.equal(queries('failed'), 0);
  });

  it('a password changed on the server works at the second login at the latest, and the old one is refused after that', async () => {
    await admin.db('admin').command({ createUser: 'changing', pwd: 'old-Pw-1', roles: [] });
    assert.equal(await login('changing', 'old-Pw-1'), 'ok');
    await admin.db('admin').command({ updateUser: 'changing', pwd: 'new-Pw-2' });
    await new Promise((r) => setTimeout(r, 1100));
    const first = await login('changing', 'new-Pw-2');
    if (first !== 'ok') assert.equal(first, 'Authentication failed.');
    assert.equal(await login('changing', 'new-Pw-2'), 'ok');
    assert.equal(await login('changing', 'old-Pw-1'), 'Authentication failed.');
  });

  it('without upstream.auth the auth query is a configuration error', () => {
    assert.throws(() => loadConfig({ env: {}, overrides: { auth: { mode: 'proxy', userSource: 'upstream' } } }), /auth\.userSource: upstream asks the server for users' secrets as upstream\.auth\.username/);
  });
});
