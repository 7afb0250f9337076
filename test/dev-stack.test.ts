import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { MongoClient } from 'mongodb';
import { acceptsConnections, freePort, waitFor } from '../scripts/ports';
import { useFerretDB } from './support/setup';
import { StandaloneMongodFixture } from './support/standalone-mongod-fixture';

/** Storage for the standalone mongod fixture (the suites that use their own upstream). */
const storage = useFerretDB();

interface DevStack {
  readonly ports: Record<string, number>;
  readonly uri: string;
  /** FerretDB's process id, from the banner. */
  readonly ferretdbPid: number;
  readonly exited: Promise<number | null>;
  readonly child: ChildProcess;
  stderr(): string;
}

/** `node dist/scripts/dev-stack.js` on free ports; resolves once it prints the connection string. `env`: more variables. */
async function startDevStack(env: Record<string, string> = {}, args: string[] = []): Promise<DevStack> {
  const ports: Record<string, number> = { DEV_ENVOY_PORT: await freePort(), DEV_ENVOY_ADMIN_PORT: await freePort(), DEV_FERRETDB_PORT: await freePort(), DEV_GRPC_PORT: await freePort(), DEV_ADMIN_PORT: await freePort() };
  if (args.includes('--traces')) Object.assign(ports, { DEV_JAEGER_OTLP_PORT: await freePort(), DEV_JAEGER_PORT: await freePort() });
  const child = spawn(process.execPath, [path.resolve(__dirname, '..', 'scripts', 'dev-stack.js'), ...args], {
    env: {
      ...process.env,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      DEV_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'mongoplex-dev-')),
      MONGOPLEX_LISTEN_PORT: String(await freePort()),
      MONGOPLEX_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let ferretdbPid = 0;
  const uri = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`dev stack exited early with ${code}: ${stderr}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const pid = /embedded FerretDB, pid (\d+)/.exec(line);
      if (pid) ferretdbPid = Number(pid[1]);
      const m = /^\s+(mongodb:\/\/\S+)$/.exec(line);
      if (m) resolve(m[1]!);
    });
  });
  return { ports, uri, ferretdbPid, exited, child, stderr: () => stderr };
}

describe('the dev stack (npm run dev)', () => {
  it('starts FerretDB, mongoplex and Envoy, prints a working connection string, and stops everything on Ctrl-C', async () => {
    const { ports, uri, exited, child } = await startDevStack();
    assert.equal(uri, `mongodb://127.0.0.1:${ports.DEV_ENVOY_PORT}/`, 'the connection string is Envoy\'s listener');
    const client = await new MongoClient(uri).connect();
    try {
      await client.db('dev').collection('hello').insertOne({ from: 'test' });
      assert.equal(await client.db('dev').collection('hello').countDocuments(), 1);
    } finally {
      await client.close();
    }
    child.kill('SIGINT');
    assert.equal(await exited, 0);
    for (const [name, port] of Object.entries(ports)) assert.equal(await acceptsConnections(port), false, `${name} ${port} is closed after Ctrl-C`);
  });

  it('with --traces also runs Jaeger, where a find through the stack is stored as a span of service mongoplex', async () => {
    const { ports, uri, exited, child } = await startDevStack({}, ['--traces']);
    const client = await new MongoClient(uri).connect();
    try {
      await client.db('dev').collection('traced').findOne({});
    } finally {
      await client.close();
    }
    // The API the dev stack's banner points at (Jaeger's query service, API v1 JSON).
    const api = `http://127.0.0.1:${ports.DEV_JAEGER_PORT}/api/traces?service=mongoplex&operation=${encodeURIComponent('find dev.traced')}&limit=5`;
    const found = await waitFor('the find span in Jaeger', async () => {
      const body = (await (await fetch(api)).json()) as { data?: Array<{ spans: Array<{ operationName: string }> }> };
      return body.data?.flatMap((t) => t.spans).find((s) => s.operationName === 'find dev.traced');
    }, 20_000);
    assert.ok(found);
    child.kill('SIGINT');
    assert.equal(await exited, 0);
    for (const [name, port] of Object.entries(ports)) assert.equal(await acceptsConnections(port), false, `${name} ${port} is closed after Ctrl-C`);
  });

  it('in front of your own standalone mongod (MONGOPLEX_UPSTREAM_SERVERS): prints a working connection string and a default insert succeeds', async () => {
    const mongod = new StandaloneMongodFixture(storage);
    await mongod.start();
    const { uri, exited, child } = await startDevStack({ MONGOPLEX_UPSTREAM_SERVERS: mongod.address });
    try {
      const client = await new MongoClient(uri).connect();
      try {
        await client.db('dev').collection('own').insertOne({ from: 'test' });
        assert.equal(await client.db('dev').collection('own').countDocuments(), 1);
        assert.equal(mongod.refusals, 0, 'the driver sent the standalone no transaction number');
      } finally {
        await client.close();
      }
    } finally {
      child.kill('SIGINT');
      assert.equal(await exited, 0);
      await mongod.stop();
    }
  });

  it('notices when its FerretDB dies: says so, stops mongoplex and Envoy, and exits 1', async () => {
    const stack = await startDevStack();
    assert.ok(stack.ferretdbPid > 0, 'the banner names FerretDB\'s pid');
    process.kill(stack.ferretdbPid, 'SIGKILL');
    const started = Date.now();
    assert.equal(await stack.exited, 1);
    assert.ok(Date.now() - started < 10_000, `the stack stopped ${Date.now() - started} ms after FerretDB died`);
    assert.match(stack.stderr(), /dev stack: FerretDB was killed by SIGKILL; stopping the rest of the stack\./);
    for (const [name, port] of Object.entries(stack.ports)) assert.equal(await acceptsConnections(port), false, `${name} ${port} is closed`);
  });

  it('refuses to start when a port is taken, naming the port and the variable that moves it, leaving nothing behind', async () => {
    const blocker = net.createServer();
    const taken = await freePort();
    await new Promise<void>((r) => blocker.listen(taken, '127.0.0.1', r));
    const others = { DEV_ENVOY_ADMIN_PORT: await freePort(), DEV_FERRETDB_PORT: await freePort(), DEV_GRPC_PORT: await freePort(), DEV_ADMIN_PORT: await freePort() };
    const dataDir = path.join(mkdtempSync(path.join(tmpdir(), 'mongoplex-dev-')), 'data');
    const tmpBefore = readdirSync(tmpdir()).filter((f) => f.startsWith('mongoplex-envoy-')).length;
    try {
      const child = spawn(process.execPath, [path.resolve(__dirname, '..', 'scripts', 'dev-stack.js')], {
        env: {
          ...process.env,
          ...Object.fromEntries(Object.entries(others).map(([k, v]) => [k, String(v)])),
          DEV_ENVOY_PORT: String(taken),
          DEV_DATA_DIR: dataDir,
          MONGOPLEX_LISTEN_PORT: String(await freePort()),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      assert.equal(code, 2);
      assert.match(stderr, new RegExp(`port ${taken} \\(DEV_ENVOY_PORT\\) is already in use on 127\\.0\\.0\\.1: set DEV_ENVOY_PORT to a free port`));
      for (const [name, port] of Object.entries(others)) assert.equal(await acceptsConnections(port), false, `${name} ${port} was never opened`);
      assert.equal(existsSync(dataDir), false, 'FerretDB never started: no data folder');
      assert.equal(readdirSync(tmpdir()).filter((f) => f.startsWith('mongoplex-envoy-')).length, tmpBefore, 'no Envoy folder left behind');
    } finally {
      blocker.close();
    }
  });
});
