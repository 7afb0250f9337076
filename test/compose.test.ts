import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parse, parseDocument } from 'yaml';
import { spawn } from 'node:child_process';
import { ConfigSchema, environmentVariables, loadConfig } from '../filter/config';
import { freePort, waitFor } from '../scripts/ports';
import { startMongoplex } from './support/mongoplex';
import { useFerretDB } from './support/setup';

/** No Docker engine runs here: docker-compose.yml is validated, not run. */
const ROOT = path.resolve(__dirname, '..', '..');
const db = useFerretDB();

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  ports?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}

function compose(): { services: Record<string, Service>; volumes?: Record<string, unknown> } {
  const doc = parseDocument(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true });
  assert.deepEqual(doc.errors, []);
  return doc.toJS({ maxAliasCount: 100 }) as { services: Record<string, Service> };
}

describe('docker-compose.yml', () => {
  const c = compose();
  const services = c.services;

  it('has a three-member replica set initialised automatically, mongoplex, Envoy, a collector and a trace UI', () => {
    for (const s of ['mongo1', 'mongo2', 'mongo3', 'mongo-init', 'mongoplex', 'envoy', 'otel-collector', 'jaeger']) assert.ok(services[s], s);
    for (const m of ['mongo1', 'mongo2', 'mongo3']) assert.deepEqual(services[m]!.command, ['mongod', '--replSet', 'rs0', '--bind_ip_all']);
    const init = readFileSync(path.join(ROOT, 'scripts', 'docker', 'mongo-init.js'), 'utf8');
    for (const m of ['mongo1:27017', 'mongo2:27017', 'mongo3:27017']) assert.ok(init.includes(m));
  });

  it('pins every image to a version, and Envoy to the same release the tests run', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build) continue;
      assert.match(s.image ?? '', /^[\w./-]+:[\w.-]+$/, `${name} image has a tag`);
      assert.doesNotMatch(s.image ?? '', /:latest$/, `${name} image is not :latest`);
    }
    const pinned = /VERSION="\$\{ENVOY_VERSION:-([\d.]+)\}"/.exec(readFileSync(path.join(ROOT, 'scripts', 'install-envoy.sh'), 'utf8'))![1];
    assert.equal(services.envoy!.image, `envoyproxy/envoy:v${pinned}`);
  });

  it('publishes only Envoy\'s client listener on every interface; admin and UI ports on loopback; nothing that bypasses Envoy', () => {
    const published: Array<{ service: string; bind: string; host: string; container: string }> = [];
    for (const [service, s] of Object.entries(services)) {
      for (const p of s.ports ?? []) {
        const m = /^(?:(127\.0\.0\.1):)?(\d{1,5}):(\d{1,5})$/.exec(p);
        assert.ok(m, `port mapping '${p}'`);
        published.push({ service, bind: m[1] ?? 'all', host: m[2]!, container: m[3]! });
      }
    }
    assert.equal(new Set(published.map((p) => p.host)).size, published.length, 'distinct host ports');
    assert.deepEqual(published.filter((p) => p.bind === 'all').map((p) => `${p.service}:${p.container}`), ['envoy:27017']);
    assert.deepEqual(published.filter((p) => p.service === 'mongoplex').map((p) => p.container), [services.mongoplex!.environment!.MONGOPLEX_ADMIN_PORT], 'mongoplex publishes only its admin port');
  });

  it('depends only on services it defines, with valid conditions', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
        assert.ok(services[dep], `${name} depends on undefined service ${dep}`);
        assert.ok(['service_started', 'service_healthy', 'service_completed_successfully'].includes(condition));
        if (condition === 'service_healthy') assert.ok(services[dep]!.healthcheck, `${dep} has a healthcheck`);
      }
    }
  });

  it('mounts and builds only files that exist in the repository', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const v of s.volumes ?? []) {
        const host = v.split(':')[0]!;
        if (host.startsWith('./')) assert.ok(existsSync(path.join(ROOT, host)), `${name} mounts ${host}`);
        else assert.ok(c.volumes && host in c.volumes, `${name} uses named volume ${host}`);
      }
      if (s.build) assert.ok(existsSync(path.join(ROOT, s.build.context, s.build.dockerfile)), `${name} Dockerfile`);
    }
    const collector = parse(readFileSync(path.join(ROOT, 'scripts', 'docker', 'otel-collector.yaml'), 'utf8')) as { service: { pipelines: Record<string, { receivers: string[] }> } };
    assert.deepEqual(collector.service.pipelines.traces!.receivers, ['otlp']);
  });

  it("configures mongoplex only with settings mongoplex knows, pointing at the compose services", () => {
    const env = services.mongoplex!.environment!;
    const known = environmentVariables();
    const settings: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) {
      if (k.startsWith('OTEL_')) continue;
      assert.ok(known.has(k), `${k} is a mongoplex setting`);
      // Compose's ${VAR:-default}: the value when VAR is not set.
      settings[k] = v.replace(/^\$\{[A-Z_]+:-(.*)\}$/, '$1');
    }
    assert.match(env.OTEL_EXPORTER_OTLP_ENDPOINT!, /^http:\/\/otel-collector:4318$/);
    assert.equal(env.MONGOPLEX_UPSTREAM_VIA, 'envoy:27100');
    // The same values the process would load from its environment.
    const cfg = loadConfig({ env: settings });
    assert.equal(ConfigSchema.safeParse(cfg).success, true);
    assert.deepEqual(cfg.upstream.servers, ['mongo1:27017', 'mongo2:27017', 'mongo3:27017']);
    assert.equal(cfg.topology.mode, 'mongos', 'the replica set is monitored, not treated as one server');
    const envoyConfig = readFileSync(path.join(ROOT, 'envoy', 'compose.yaml'), 'utf8');
    assert.match(envoyConfig, /port_value: 27100/);
  });

  it('Envoy reaches the gRPC ingress over a Unix socket in a volume only the two share; the admin endpoint has a token', () => {
    const env = services.mongoplex!.environment!;
    const socketPath = /^unix:(.+)$/.exec(env.MONGOPLEX_LISTEN_GRPC ?? '')?.[1];
    assert.ok(socketPath, 'listen.grpc is a Unix socket');
    const envoyConfig = readFileSync(path.join(ROOT, 'envoy', 'compose.yaml'), 'utf8');
    assert.ok(envoyConfig.includes(`pipe:\n                      path: ${socketPath}`), 'Envoy dials the same socket');
    const mount = (service: string): string | undefined => services[service]!.volumes?.find((v) => v.endsWith(`:${path.dirname(socketPath)}`));
    assert.ok(mount('mongoplex') && mount('mongoplex') === mount('envoy'), 'the socket directory is one named volume in both');
    for (const [name, s] of Object.entries(services)) if (name !== 'mongoplex' && name !== 'envoy') assert.ok(!s.volumes?.includes(mount('mongoplex')!), `${name} does not mount it`);
    assert.match(env.MONGOPLEX_ADMIN_TOKEN ?? '', /^\$\{MONGOPLEX_ADMIN_TOKEN:-.{16,}\}$/);
  });

  it('health-checks mongoplex at /readyz in compose, and from Envoy over the gRPC socket (gRPC health, answered as /readyz)', async () => {
    const env = services.mongoplex!.environment!;
    const probe = services.mongoplex!.healthcheck!.test;
    assert.equal(probe[0], 'CMD');
    assert.match(probe.join(' '), new RegExp(`http://127\\.0\\.0\\.1:${env.MONGOPLEX_ADMIN_PORT}/readyz`));
    const envoyConfig = readFileSync(path.join(ROOT, 'envoy', 'compose.yaml'), 'utf8');
    assert.match(envoyConfig, /grpc_health_check: \{\}/);
    // The probe command itself, run against a real mongoplex whose upstream is down (not ready)
    // and one whose upstream answers (ready).
    // (asynchronously: the mongoplex under test runs in this process)
    const run = (port: number): Promise<number | null> => new Promise((resolve) => {
      const child = spawn(probe[1]!, probe.slice(2).map((a) => a.replace(`:${env.MONGOPLEX_ADMIN_PORT}/`, `:${port}/`)), { stdio: 'ignore', timeout: 10_000 });
      child.on('exit', (code) => resolve(code));
    });
    const nowhere = await freePort();
    const down = await startMongoplex(`127.0.0.1:${nowhere}`, { admin: { port: 0 }, upstream: { connectTimeoutMs: 500 } });
    const up = await startMongoplex(db.address, { admin: { port: 0 } });
    try {
      await waitFor('the heartbeat', async () => (up.proxy.readiness.check().ready ? true : undefined), 5000);
      assert.equal(await run(down.admin!.port), 1);
      assert.equal(await run(up.admin!.port), 0);
    } finally {
      await down.stop();
      await up.stop();
    }
  });
});
