import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { MongoClient } from 'mongodb';
import { PROTO_DIR } from '../filter/ingress/ext-proc';
import { ConfigError, ConfigSchema } from '../filter/config';
import { startEnvoyFront } from '../scripts/envoy';
import * as net from 'node:net';
import { freePort, portInUse, waitFor } from '../scripts/ports';
import { startConfigured, startMongoplex } from './support/mongoplex';
import { useFerretDB } from './support/setup';
import { browserRequests, rawPost } from './support/cross-site';

const MAIN = path.resolve(__dirname, '..', 'filter', 'main.js');
const db = useFerretDB();
const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-exposure-'));

describe('safe defaults: what listens where', () => {
  it('by default only the client port listens on a network address; the gRPC ingress is off and the admin endpoint is on loopback', () => {
    const d = ConfigSchema.parse({});
    assert.equal(d.listen.grpc, null);
    assert.equal(d.admin.host, '127.0.0.1');
    assert.equal(d.admin.token, null);
    assert.equal(d.listen.tls.certFile, null);
  });

  it('an admin endpoint on a non-loopback address without admin.token is refused at start, naming the setting', async () => {
    await assert.rejects(startMongoplex(db.address, { admin: { host: '0.0.0.0', port: 0 } }), (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /admin\.host: 0\.0\.0\.0 is not a loopback address: set admin\.token/);
      return true;
    });
    // With a token it starts; on loopback it starts without one.
    const withToken = await startMongoplex(db.address, { admin: { host: '0.0.0.0', port: 0, token: 'a-long-enough-admin-token' } });
    await withToken.stop();
    const local = await startMongoplex(db.address, { admin: { host: 'localhost', port: 0 } });
    await local.stop();
  });

  it('a gRPC ingress on a non-loopback address without mutual TLS is refused at start; the process exits 2 with the reason', async () => {
    const port = await freePort();
    await assert.rejects(startMongoplex(db.address, { listen: { grpc: `0.0.0.0:${port}` } }), /listen\.grpc: 0\.0\.0\.0 is not a loopback address, and the gRPC ingress trusts whoever connects/);
    const run = spawnSync(process.execPath, [MAIN], {
      env: { ...process.env, MONGOPLEX_LISTEN_PORT: String(await freePort()), MONGOPLEX_LISTEN_GRPC: `0.0.0.0:${port}`, MONGOPLEX_ADMIN_HOST: '0.0.0.0', MONGOPLEX_ADMIN_PORT: '0', MONGOPLEX_UPSTREAM_SERVERS: db.address },
      encoding: 'utf8', timeout: 30_000,
    });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /listen\.grpc: 0\.0\.0\.0 is not a loopback address/);
    assert.match(run.stderr, /admin\.host: 0\.0\.0\.0 is not a loopback address/);
  });

  it('the gRPC ingress listens on a Unix socket that Envoy reaches through a pipe address; a socket left by a dead process is reclaimed, a live one is not taken', async () => {
    const socketPath = path.join(dir, 'grpc.sock');
    // A process that dies without removing its socket file.
    const dead = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    await new Promise((r) => dead.once('exit', r));
    assert.ok(existsSync(socketPath), 'the stale socket file is there');
    const front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { path: socketPath } } });
    const proxy = await startConfigured({ listen: { port: null, grpc: `unix:${socketPath}` }, upstream: { servers: [db.address] } });
    try {
      const c = new MongoClient(front.uri, { serverSelectionTimeoutMS: 5000 });
      try {
        await c.db('exposure').collection('c').insertOne({ over: 'unix socket' });
        assert.equal((await c.db('exposure').collection('c').findOne({ over: 'unix socket' }))?.over, 'unix socket');
      } finally {
        await c.close();
      }
      // Envoy health-checks mongoplex over the socket itself (gRPC health checking).
      await waitFor('a passing gRPC health check', async () => ((await front.envoy.stat('cluster.mongoplex_ext_proc.health_check.success')) >= 1 ? true : undefined), 10_000);
      // A second mongoplex on the same path: refused, the first keeps serving.
      await assert.rejects(startConfigured({ listen: { port: null, grpc: `unix:${socketPath}` }, upstream: { servers: [db.address] } }), /listen\.grpc: another process already listens on .*grpc\.sock/);
    } finally {
      await proxy.stop();
      await front.envoy.stop();
    }
  });

  it('the gRPC health service answers SERVING exactly when /readyz passes', async () => {
    const port = await freePort();
    const nowhere = await freePort();
    const up = await startConfigured({ listen: { port: null, grpc: `127.0.0.1:${port}` }, upstream: { servers: [db.address] }, admin: { port: 0 } });
    const downPort = await freePort();
    const down = await startConfigured({ listen: { port: null, grpc: `127.0.0.1:${downPort}` }, upstream: { servers: [`127.0.0.1:${nowhere}`], connectTimeoutMs: 300 } });
    try {
      const def = protoLoader.loadSync('grpc/health/v1/health.proto', { includeDirs: [PROTO_DIR], enums: String });
      const Health = (grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } }).grpc.health.v1.Health;
      const check = (p: number): Promise<string> => new Promise((resolve, reject) => {
        const client = new Health(`127.0.0.1:${p}`, grpc.credentials.createInsecure()) as unknown as { check(req: object, cb: (err: Error | null, res: { status: string }) => void): void; close(): void };
        client.check({}, (err, res) => {
          client.close();
          if (err) reject(err);
          else resolve(res.status);
        });
      });
      await waitFor('readiness', async () => (up.proxy.readiness.check().ready ? true : undefined), 5000);
      assert.equal(await check(port), 'SERVING');
      assert.equal(await check(downPort), 'NOT_SERVING');
      up.proxy.announceDrain();
      assert.equal(await check(port), 'NOT_SERVING');
    } finally {
      await up.stop();
      await down.stop();
    }
  });

  it('a listen.grpc path that is not a socket is left alone', async () => {
    const file = path.join(dir, 'not-a-socket');
    writeFileSync(file, 'data');
    await assert.rejects(startConfigured({ listen: { port: null, grpc: `unix:${file}` }, upstream: { servers: [db.address] } }), /listen\.grpc: .*not-a-socket exists and is not a socket/);
    assert.equal(readFileSync(file, 'utf8'), 'data');
  });

  it('the tokenless loopback admin endpoint refuses control requests a web page could send (403), and serves the same request from a tool', async () => {
    const server = await startConfigured({ listen: { host: '127.0.0.1', port: 0 }, admin: { port: 0 }, upstream: { servers: [db.address] } });
    try {
      const admin = `127.0.0.1:${server.admin!.port}`;
      for (const path of ['/pause', '/drain', '/reload']) {
        for (const probe of browserRequests(admin)) {
          const r = await rawPost(admin, path, probe.headers, '{"timeoutMs": 2000}');
          assert.equal(r.status, 403, `${path}: ${probe.what} (${r.body})`);
        }
      }
      assert.equal(server.proxy.gate.status().paused, false, 'nothing was paused');
      assert.equal(server.proxy.draining, false, 'nothing was drained');
      assert.equal((await fetch(`http://${admin}/readyz`)).status, 200);
      const byTool = await rawPost(admin, '/pause', { 'content-type': 'application/json' }, '{"timeoutMs": 2000}');
      assert.equal(byTool.status, 200, byTool.body);
      assert.equal((await rawPost(admin, '/resume', { host: `localhost:${server.admin!.port}` }, '')).status, 200, 'Host localhost and no body are a tool too');
    } finally {
      await server.stop();
    }
  });

  it('a start that cannot bind its admin port fails with EADDRINUSE and leaves none of its other listeners open', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const adminPort = (taken.address() as net.AddressInfo).port;
    const tcpPort = await freePort();
    const grpcPort = await freePort();
    try {
      await assert.rejects(
        startConfigured({ listen: { host: '127.0.0.1', port: tcpPort, grpc: `127.0.0.1:${grpcPort}` }, admin: { port: adminPort }, upstream: { servers: [db.address] } }),
        /EADDRINUSE/,
      );
      assert.equal(await portInUse(tcpPort), false, 'the client port was closed again');
      assert.equal(await portInUse(grpcPort), false, 'the gRPC port was closed again');
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });
});
