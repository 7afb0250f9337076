import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { completeLogin, speculativeLogin } from '../filter/upstream/login';
import { addUser } from '../filter/auth/users';
import { FerretDB } from '../scripts/ferretdb';
import { MongoplexProcess, ONE_PROCESS } from '../scripts/mongoplex-process';
import { RawClient } from '../test/support/raw-client';

/**
 * `npm run bench -- auth`: what logging in costs, direct to a FerretDB with access control and
 * through mongoplex with `auth.mode proxy` (clients verified at the proxy against a users file,
 * pooled connections logged in as the service user) and with `auth.mode passthrough` (secrets
 * from the server's usersInfo, each user's own pooled connections logged in as that user with
 * the key from its proof), in one invocation:
 * - set-up rate: `--concurrency` loops each opening a connection, logging in the way drivers do
 *   (hello with speculativeAuthenticate SCRAM-SHA-256, then saslContinue), one ping, close —
 *   new connections per second. Like drivers, the client keeps its salted password (PBKDF2 once).
 * - ops/s: `--clients` logged-in connections in closed find loops.
 */

const SERVICE = { username: 'bench-svc', password: 'bench-svc-Pw' };
const APP = { username: 'bench-app', password: 'bench-app-Pw' };

/** Logs in as drivers do, with the proxy's own client side of SCRAM (speculative in the handshake). */
async function logIn(c: RawClient, user: { username: string; password: string }, saltedCache: Map<string, Buffer>): Promise<void> {
  const credentials = { username: user.username, source: 'admin', mechanism: 'SCRAM-SHA-256' as const, secret: { password: user.password, saltedCache } };
  const speculative = speculativeLogin(credentials);
  const hello = await c.command({ hello: 1, client: { driver: { name: 'bench', version: '1' } }, ...speculative.fields, $db: 'admin' });
  await completeLogin((db, cmd) => c.command({ ...cmd, $db: db }), credentials, speculative, hello);
}

async function setupRate(port: number, user: typeof APP, concurrency: number, seconds: number): Promise<number> {
  const cache = new Map<string, Buffer>();
  const until = Date.now() + seconds * 1000;
  let n = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < until) {
      const c = await RawClient.connect(port);
      await logIn(c, user, cache);
      if ((await c.command({ ping: 1, $db: 'admin' })).ok !== 1) throw new Error('ping failed');
      c.destroy();
      n++;
    }
  }));
  return n / seconds;
}

async function opsRate(port: number, user: typeof APP, clients: number, seconds: number): Promise<number> {
  const cache = new Map<string, Buffer>();
  const conns = await Promise.all(Array.from({ length: clients }, async () => {
    const c = await RawClient.connect(port);
    await logIn(c, user, cache);
    return c;
  }));
  const until = Date.now() + seconds * 1000;
  let n = 0;
  await Promise.all(conns.map(async (c) => {
    while (Date.now() < until) {
      const r = await c.command({ find: 'items', filter: { k: n % 10 }, limit: 1, $db: 'bench' });
      if (r.ok !== 1) throw new Error(`find failed: ${String(r.errmsg)}`);
      n++;
    }
  }));
  for (const c of conns) c.destroy();
  return n / seconds;
}

export async function runAuthBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '8' }, clients: { type: 'string', default: '50' }, pool: { type: 'string', default: '8' } } });
  const seconds = Number(values.seconds);
  const db = await FerretDB.start({ auth: SERVICE });
  const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-bench-auth-'));
  let proxy: MongoplexProcess | undefined;
  let passthrough: MongoplexProcess | undefined;
  try {
    const seed = await RawClient.connect(db.port);
    await logIn(seed, SERVICE, new Map());
    await seed.command({ insert: 'items', documents: Array.from({ length: 10 }, (_, k) => ({ k })), $db: 'bench' });
    // The same user on the server, for passthrough (which logs in upstream as it).
    await seed.command({ createUser: APP.username, pwd: APP.password, roles: [], $db: 'admin' });
    seed.destroy();
    const usersFile = path.join(dir, 'users.json');
    addUser(usersFile, APP.username, 'admin', APP.password);
    const started = await MongoplexProcess.pooling(db.address, Number(values.pool), {
      MONGOPLEX_UPSTREAM_AUTH_USERNAME: SERVICE.username, MONGOPLEX_UPSTREAM_AUTH_PASSWORD: SERVICE.password,
      MONGOPLEX_AUTH_MODE: 'proxy', MONGOPLEX_AUTH_USERS_FILE: usersFile,
    });
    proxy = started.proxy;
    const port = started.port;
    const second = await MongoplexProcess.pooling(db.address, Number(values.pool), {
      ...ONE_PROCESS,
      MONGOPLEX_UPSTREAM_AUTH_USERNAME: SERVICE.username, MONGOPLEX_UPSTREAM_AUTH_PASSWORD: SERVICE.password,
      MONGOPLEX_AUTH_MODE: 'passthrough', MONGOPLEX_AUTH_USER_SOURCE: 'upstream', MONGOPLEX_AUTH_PASSTHROUGH_MAX_POOL_SIZE_PER_USER: values.pool,
    });
    passthrough = second.proxy;
    const direct = { setupPerSecond: await setupRate(db.port, SERVICE, Number(values.concurrency), seconds), opsPerSecond: await opsRate(db.port, SERVICE, Number(values.clients), seconds) };
    const viaProxy = { setupPerSecond: await setupRate(port, APP, Number(values.concurrency), seconds), opsPerSecond: await opsRate(port, APP, Number(values.clients), seconds) };
    const viaPassthrough = { setupPerSecond: await setupRate(second.port, APP, Number(values.concurrency), seconds), opsPerSecond: await opsRate(second.port, APP, Number(values.clients), seconds) };
    const round = (v: number) => Math.round(v);
    console.log(JSON.stringify({
      benchmark: 'auth', seconds, concurrency: Number(values.concurrency), clients: Number(values.clients), pool: Number(values.pool),
      direct: { setupPerSecond: round(direct.setupPerSecond), opsPerSecond: round(direct.opsPerSecond) },
      mongoplex: { setupPerSecond: round(viaProxy.setupPerSecond), opsPerSecond: round(viaProxy.opsPerSecond) },
      passthrough: { setupPerSecond: round(viaPassthrough.setupPerSecond), opsPerSecond: round(viaPassthrough.opsPerSecond) },
      setupRatio: Number((viaProxy.setupPerSecond / direct.setupPerSecond).toFixed(2)),
      opsRatio: Number((viaProxy.opsPerSecond / direct.opsPerSecond).toFixed(2)),
      passthroughSetupRatio: Number((viaPassthrough.setupPerSecond / direct.setupPerSecond).toFixed(2)),
      passthroughOpsRatio: Number((viaPassthrough.opsPerSecond / direct.opsPerSecond).toFixed(2)),
    }));
  } finally {
    await proxy?.stop();
    await passthrough?.stop();
    await db.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
