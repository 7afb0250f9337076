import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Binary, Long, MongoClient, MongoServerError, UUID, type Document } from 'mongodb';
import { ScramClient } from '../filter/wire/scram';
import { addUser } from '../filter/auth/users';
import { ConfigError, loadConfig } from '../filter/config';
import { startEnvoyFront, type EnvoyFront } from '../scripts/envoy';
import { FerretDB } from '../scripts/ferretdb';
import { MongoplexProcess } from '../scripts/mongoplex-process';
import { freePort, waitFor } from '../scripts/ports';
import { startConfigured, startMongoplex, type TestMongoplex } from './support/mongoplex';
import { RawClient } from './support/raw-client';
import { counterTotal } from './support/prometheus';

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

/** A counter's total over the series whose labels include `label` (`k="v"`), from /metrics. */
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

  it('upstream.uri gives the servers and the credentials (user:password@, authSource, authMechanism); a wrong password in it is a start-up error that does not show it', async () => {
    const uri = (password: string) => `mongodb://${SERVICE.username}:${encodeURIComponent(password)}@${server.address}/?authSource=admin&authMechanism=SCRAM-SHA-256&retryWrites=true`;
    const proxy = await startConfigured({ listen: { host: '127.0.0.1', port: 0 }, upstream: { uri: uri(SERVICE.password) } });
    const c = await new MongoClient(`mongodb://127.0.0.1:${proxy.tcp!.port}/`).connect();
    try {
      await c.db('up').collection('from-uri').insertOne({ ok: true });
      assert.equal(await c.db('up').collection('from-uri').countDocuments(), 1);
    } finally {
      await c.close();
      await proxy.stop();
    }
    const wrong = 'uri-Wrong-Pw-55';
    await assert.rejects(startConfigured({ listen: { host: '127.0.0.1', port: 0 }, upstream: { uri: uri(wrong) } }), (err: Error) => {
      assert.match(err.message, /^upstream\.auth: login as "mongoplex-svc" \(authSource admin\) at .* failed: Authentication failed/);
      assert.ok(!err.message.includes(wrong));
      return true;
    });
    const conflicting = () => loadConfig({ env: {}, overrides: { upstream: { uri: uri(wrong), servers: ['127.0.0.1:1'] } } });
    assert.throws(conflicting, (err: Error) => /upstream\.uri: also set: upstream\.servers/.test(err.message) && !err.message.includes(wrong));
    assert.throws(() => loadConfig({ env: {}, overrides: { upstream: { uri: `mongodb+srv://u:${wrong}@cluster.example.net/` } } }), (err: Error) => /upstream\.uri: mongodb\+srv/.test(err.message) && !err.message.includes(wrong));
    assert.throws(() => loadConfig({ env: {}, overrides: { upstream: { uri: `mongodb://CN=app@h:1/?authMechanism=MONGODB-X509` } } }), /upstream\.uri: authMechanism MONGODB-X509 is not supported upstream/);
  });

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
    const scram = new ScramClient('SCRAM-SHA-256', 'app', { password: 'app-Pw-1' });
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
      const scram = new ScramClient('SCRAM-SHA-1', 'app', { password: 'app-Pw-1' });
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

  it("a logical session is served only to the user who started it: another user's command in it, endSessions or killSessions of it get Unauthorized", async () => {
    const owner = await new MongoClient(uri(proxy.port, 'app', 'app-Pw-1')).connect();
    const session = owner.startSession();
    const other = await RawClient.connect(front.port);
    try {
      await owner.db('shop').collection('orders').insertOne({ tag: 'session-owner' }, { session });
      const id = session.id!.id;
      const scram = new ScramClient('SCRAM-SHA-256', 'reporting', { password: 'rep-Pw-3' });
      const first = await other.command({ saslStart: 1, mechanism: 'SCRAM-SHA-256', payload: new Binary(scram.clientFirst), options: { skipEmptyExchange: true }, $db: 'shop' });
      assert.equal((await other.command({ saslContinue: 1, conversationId: first.conversationId, payload: new Binary(scram.clientFinal(payloadOf(first))), $db: 'shop' })).done, true);
      const refusals = [
        await other.command({ find: 'orders', filter: {}, lsid: { id }, $db: 'shop' }),
        await other.command({ endSessions: [{ id }], $db: 'admin' }),
        await other.command({ killSessions: [{ id }], $db: 'admin' }),
      ];
      assert.deepEqual(refusals.map((r) => [r.ok, r.code, r.errmsg]), [
        [0, 13, 'mongoplex: the session (lsid) belongs to another user'],
        [0, 13, 'mongoplex: a session listed belongs to another user'],
        [0, 13, 'mongoplex: a session listed belongs to another user'],
      ]);
      // Its own sessions are its own; the owner's session carries on.
      assert.equal((await other.command({ find: 'orders', filter: {}, lsid: { id: new UUID() }, $db: 'shop' })).ok, 1);
      assert.ok(await owner.db('shop').collection('orders').findOne({ tag: 'session-owner' }, { session }));
    } finally {
      other.destroy();
      await session.endSession();
      await owner.close();
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
    const found = await counterTotal(proxy.admin!.port, 'mongoplex_auth_user_queries_total', 'result="found"');
    // Answers are cached: five logins as "queried" cost one or two queries (a wrong proof drops a secret older than 1 s).
    assert.ok(found >= 1 && found <= 2, `found: ${found}`);
    assert.equal(await counterTotal(proxy.admin!.port, 'mongoplex_auth_user_queries_total', 'result="not_found"'), 1);
    assert.equal(await counterTotal(proxy.admin!.port, 'mongoplex_auth_user_queries_total', 'result="failed"'), 0);
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

describe('auth.mode passthrough: each user gets upstream pools logged in as that user, without its password', () => {
  let proxy: TestMongoplex;
  let front: EnvoyFront;
  let admin: MongoClient;
  const USERS = { alice: { db: 'admin', pw: 'alice-Pw-7c1e' }, bob: { db: 'shop', pw: 'bob-Pw-20aa' } };
  const userUri = (port: number, user: keyof typeof USERS, password = USERS[user].pw) => `mongodb://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/?authSource=${USERS[user].db}`;
  const pools = async (p: TestMongoplex) => ((await (await fetch(`http://127.0.0.1:${p.admin!.port}/pools`)).json()) as { pools: Array<{ user?: string; total: number; inUse: number }> }).pools;
  const passthrough = (extra: { maxPoolSizePerUser?: number; maxConnections?: number; cacheTtlMs?: number; maxIdleTimeMs?: number } = {}, listen = {}) => startMongoplex(server.address, {
    auth: { mode: 'passthrough', userSource: 'upstream', cacheTtlMs: extra.cacheTtlMs ?? 60_000, passthrough: { maxPoolSizePerUser: extra.maxPoolSizePerUser ?? 2, maxConnections: extra.maxConnections ?? 8 } },
    upstream: { auth: { username: SERVICE.username, password: SERVICE.password }, ...(extra.maxIdleTimeMs ? { maxIdleTimeMs: extra.maxIdleTimeMs } : {}) },
    admin: { port: 0 },
    listen,
  });

  before(async () => {
    admin = await new MongoClient(`mongodb://${SERVICE.username}:${encodeURIComponent(SERVICE.password)}@${server.address}/?directConnection=true`).connect();
    for (const [user, { db, pw }] of Object.entries(USERS)) await admin.db(db).command({ createUser: user, pwd: pw, roles: [] });
    const grpc = await freePort();
    proxy = await passthrough({}, { grpc: `127.0.0.1:${grpc}` });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
  });
  after(async () => {
    await front?.envoy.stop();
    await proxy?.stop();
    await admin?.close();
  });

  it('the server sees each user as itself on every pooled connection (connectionStatus), through both ingresses, and two users never share one', async () => {
    const alice = await new MongoClient(userUri(proxy.port, 'alice')).connect();
    const bob = await new MongoClient(userUri(front.port, 'bob'), { maxPoolSize: 20 }).connect();
    try {
      await alice.db('pt').collection('c').insertOne({ by: 'alice' });
      assert.equal(await bob.db('pt').collection('c').countDocuments({ by: 'alice' }), 1);
      // Interleaved, many at once: each user's pool is two connections, and each answer comes from the server.
      const seen = await Promise.all(Array.from({ length: 60 }, async (_, i) => {
        const [name, c] = i % 2 === 0 ? ['alice', alice] as const : ['bob', bob] as const;
        const status = await c.db('admin').command({ connectionStatus: 1 });
        return `${name} → ${JSON.stringify(status.authInfo.authenticatedUsers)}`;
      }));
      assert.deepEqual(new Set(seen), new Set(['alice → [{"user":"alice","db":"admin"}]', 'bob → [{"user":"bob","db":"shop"}]']));
      const userPools = (await pools(proxy)).filter((p) => p.user !== undefined);
      assert.deepEqual(userPools.map((p) => p.user).sort(), ['admin.alice', 'shop.bob']);
      for (const p of userPools) assert.ok(p.total >= 1 && p.total <= 2, `${p.user}: ${p.total} connections (at most 2)`);
      // killAllSessions is not refused: it goes to the server as the user (who may end only its own sessions).
      const killed = await alice.db('admin').command({ killAllSessions: [] }).then(() => 'ok', (e: Error) => e.message);
      assert.ok(!killed.includes('mongoplex refuses'), killed);
    } finally {
      await alice.close();
      await bob.close();
    }
  });

  it("the users' connections stay within auth.passthrough.maxConnections: a busy user's pool gives up connections to another that waits", async () => {
    const small = await passthrough({ maxPoolSizePerUser: 2, maxConnections: 2 });
    const alice = await new MongoClient(userUri(small.port, 'alice'), { maxPoolSize: 10 }).connect();
    const bob = await new MongoClient(userUri(small.port, 'bob'), { maxPoolSize: 10 }).connect();
    let most = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        most = Math.max(most, (await pools(small)).filter((p) => p.user).reduce((n, p) => n + p.total, 0));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      const load = (c: MongoClient, who: string) => Promise.all(Array.from({ length: 40 }, (_, i) => c.db('pt').collection('budget').insertOne({ who, i })));
      await load(alice, 'alice'); // alice alone: her pool grows to both slots
      await Promise.all([load(alice, 'alice'), load(bob, 'bob')]); // then both at once: bob gets in
      assert.equal(await bob.db('pt').collection('budget').countDocuments({ who: 'bob' }), 40);
      assert.equal(await alice.db('pt').collection('budget').countDocuments({ who: 'alice' }), 80);
    } finally {
      sampling = false;
      await sampler;
      await alice.close();
      await bob.close();
    }
    try {
      assert.ok(most >= 1 && most <= 2, `users' connections at most 2, saw ${most}`);
      assert.ok(await counterTotal(small.admin!.port, 'mongoplex_upstream_connections_closed_total', 'reason="budget"') >= 1, 'a connection moved from one user to the other');
    } finally {
      await small.stop();
    }
  });

  it('a user whose secret changes is refused at the next login; its pools are closed, and its connected clients must log in again', async () => {
    await admin.db('admin').command({ createUser: 'carol', pwd: 'carol-Old-1', roles: [] });
    const short = await passthrough({ cacheTtlMs: 200 });
    const uri = (pw: string) => `mongodb://carol:${pw}@127.0.0.1:${short.port}/`;
    const early = await new MongoClient(uri('carol-Old-1'), { retryReads: false }).connect();
    // A client speaking the protocol by hand, to see the proxy's own answer.
    const raw = await RawClient.connect(short.port);
    const scram = new ScramClient('SCRAM-SHA-256', 'carol', { password: 'carol-Old-1' });
    const first = await raw.command({ saslStart: 1, mechanism: 'SCRAM-SHA-256', payload: new Binary(scram.clientFirst), options: { skipEmptyExchange: true }, $db: 'admin' });
    assert.equal((await raw.command({ saslContinue: 1, conversationId: first.conversationId, payload: new Binary(scram.clientFinal(payloadOf(first))), $db: 'admin' })).done, true);
    try {
      assert.equal((await early.db('admin').command({ connectionStatus: 1 })).authInfo.authenticatedUsers[0].user, 'carol');
      assert.equal((await raw.command({ find: 'c', filter: {}, $db: 'pt' })).ok, 1);
      await admin.db('admin').command({ updateUser: 'carol', pwd: 'carol-New-2' });
      await new Promise((r) => setTimeout(r, 300));
      const attempt = async (pw: string) => {
        const c = new MongoClient(uri(pw), { serverSelectionTimeoutMS: 5000 });
        try {
          await c.db('admin').command({ connectionStatus: 1 });
          return 'ok';
        } catch (err) {
          return (err as Error).message;
        } finally {
          await c.close();
        }
      };
      assert.equal(await attempt('carol-Old-1'), 'Authentication failed.');
      assert.equal(await attempt('carol-New-2'), 'ok');
      assert.ok(await counterTotal(short.admin!.port, 'mongoplex_auth_user_pools_total', 'event="secret_changed"') >= 1);
      // Clients that logged in before the change are told to log in again (ReauthenticationRequired);
      // the driver does so by itself, with the old password, and is refused.
      const told = await raw.command({ find: 'c', filter: {}, $db: 'pt' });
      assert.deepEqual([told.ok, told.code, told.codeName], [0, 391, 'ReauthenticationRequired']);
      const after = await early.db('pt').collection('c').findOne({}).then(() => 'ok', (e: MongoServerError) => `${e.code} ${e.message}`);
      assert.equal(after, '18 Authentication failed.');
    } finally {
      raw.destroy();
      await early.close();
      await short.stop();
    }
  });

  it('when the server refuses a pool\'s login with the old keys (secret changed, cache not yet expired), the user\'s clients must log in again', async () => {
    await admin.db('admin').command({ createUser: 'dave', pwd: 'dave-Old-1', roles: [] });
    // Secrets cached for a minute; pooled connections idle for 100 ms are closed.
    const reaping = await passthrough({ maxIdleTimeMs: 100 });
    const client = await new MongoClient(`mongodb://dave:dave-Old-1@127.0.0.1:${reaping.port}/`, { retryReads: false }).connect();
    try {
      assert.equal((await client.db('admin').command({ connectionStatus: 1 })).authInfo.authenticatedUsers[0].user, 'dave');
      await admin.db('admin').command({ updateUser: 'dave', pwd: 'dave-New-2' });
      // The idle connection is reaped (janitor: once a second); the next request needs a new one, whose login the server refuses.
      await waitFor('the user pool is empty', async () => ((await pools(reaping)).some((p) => p.user === 'admin.dave' && p.total > 0) ? undefined : true));
      const after = await client.db('pt').collection('c').findOne({}).then(() => 'ok', (e: MongoServerError) => `${e.code} ${e.message}`);
      assert.equal(after, '18 Authentication failed.');
      assert.ok(await counterTotal(reaping.admin!.port, 'mongoplex_auth_user_pools_total', 'event="login_refused"') >= 1);
      // The cached secret was dropped with the pools: the new password works at once.
      const fresh = await new MongoClient(`mongodb://dave:dave-New-2@127.0.0.1:${reaping.port}/`).connect();
      assert.equal((await fresh.db('admin').command({ connectionStatus: 1 })).authInfo.authenticatedUsers[0].user, 'dave');
      await fresh.close();
    } finally {
      await client.close();
      await reaping.stop();
    }
  });

  it("the proxy's memory never holds a user's password (heap snapshot of a mongoplex process)", async () => {
    const snapshots = mkdtempSync(path.join(tmpdir(), 'mongoplex-heap-'));
    const { proxy: child, port } = await MongoplexProcess.pooling(server.address, 4, {
      NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshots}`,
      MONGOPLEX_AUTH_MODE: 'passthrough', MONGOPLEX_AUTH_USER_SOURCE: 'upstream',
      MONGOPLEX_UPSTREAM_AUTH_USERNAME: SERVICE.username, MONGOPLEX_UPSTREAM_AUTH_PASSWORD: SERVICE.password,
    });
    try {
      for (const user of ['alice', 'bob'] as const) {
        for (const mechanism of ['SCRAM-SHA-256', 'SCRAM-SHA-1']) {
          const c = await new MongoClient(`${userUri(port, user)}&authMechanism=${mechanism}`).connect();
          assert.equal((await c.db('admin').command({ connectionStatus: 1 })).authInfo.authenticatedUsers[0].user, user);
          await c.close();
        }
      }
      child.notify('SIGUSR2');
      const file = await waitFor('the heap snapshot is written', async () => {
        const name = readdirSync(snapshots).find((f) => f.endsWith('.heapsnapshot'));
        if (!name) return undefined;
        const text = readFileSync(path.join(snapshots, name), 'utf8');
        return text.trimEnd().endsWith('}') ? text : undefined;
      }, 60_000);
      // The service identity's own password is there (it logs in with it): the search works.
      assert.ok(file.includes(SERVICE.password), 'control: the service password is found');
      for (const { pw } of Object.values(USERS)) assert.ok(!file.includes(pw), 'a user password is in the heap');
    } finally {
      await child.stop();
      rmSync(snapshots, { recursive: true, force: true });
    }
  });

  it('the mode is chosen per listener (auth.listeners): passthrough on the TCP ingress, none through Envoy', async () => {
    const grpc = await freePort();
    const mixed = await startMongoplex(server.address, {
      auth: { mode: 'passthrough', userSource: 'upstream', listeners: { grpc: 'none' } },
      upstream: { auth: { username: SERVICE.username, password: SERVICE.password } },
      listen: { grpc: `127.0.0.1:${grpc}` },
    });
    const envoy = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
    const anonymousTcp = await RawClient.connect(mixed.port);
    const anonymousEnvoy = await RawClient.connect(envoy.port);
    const alice = await new MongoClient(userUri(mixed.port, 'alice')).connect();
    try {
      assert.equal((await anonymousTcp.command({ find: 'c', filter: {}, $db: 'pt' })).code, 13, 'TCP: no login, no find');
      assert.equal((await anonymousEnvoy.command({ find: 'c', filter: {}, $db: 'pt' })).ok, 1, 'Envoy (none): served as the service identity');
      const login = await anonymousEnvoy.command({ saslStart: 1, mechanism: 'SCRAM-SHA-256', payload: new Binary(Buffer.from('n,,n=alice,r=abc')), $db: 'admin' });
      assert.match(String(login.errmsg), /auth\.mode none/);
      // Through the TCP ingress the server answers, as alice.
      assert.deepEqual((await alice.db('admin').command({ connectionStatus: 1 })).authInfo.authenticatedUsers, [{ user: 'alice', db: 'admin' }]);
    } finally {
      anonymousTcp.destroy();
      anonymousEnvoy.destroy();
      await alice.close();
      await envoy.envoy.stop();
      await mixed.stop();
    }
  });

  it('passthrough needs the auth query (the server\'s salts), and a per-user size within the total', () => {
    const base = { upstream: { auth: { username: 'svc', password: 'x' } } };
    assert.throws(() => loadConfig({ env: {}, overrides: { ...base, auth: { mode: 'passthrough', usersFile: '/tmp/u.json' } } }), /auth\.userSource: auth\.mode passthrough logs users in upstream with keys that fit only the server's own salts/);
    assert.throws(() => loadConfig({ env: {}, overrides: { ...base, auth: { mode: 'passthrough', userSource: 'upstream', passthrough: { maxPoolSizePerUser: 9, maxConnections: 4 } } } }), /auth\.passthrough\.maxPoolSizePerUser: must not exceed auth\.passthrough\.maxConnections/);
  });
});
