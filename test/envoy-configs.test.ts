import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { envoyBinary } from '../scripts/envoy';
import { TestCa } from './support/certificates';

/** `envoy --mode validate`: undefined when the config is valid, else Envoy's complaint. */
function validateEnvoyConfig(file: string): string | undefined {
  const r = spawnSync(envoyBinary(), ['--mode', 'validate', '-c', file, '--log-level', 'error'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${r.stdout}\n${r.stderr}`.trim();
}

const ROOT = path.resolve(__dirname, '..', '..');
const ENVOY_DIR = path.join(ROOT, 'envoy');
const shipped = readdirSync(ENVOY_DIR).filter((f) => f.endsWith('.yaml'));

describe('shipped Envoy configurations', () => {
  it('ships the ingress (ext_proc), sidecar (tcp_proxy) and egress configurations', () => {
    for (const f of ['ingress-ext-proc.yaml', 'sidecar-tcp-proxy.yaml', 'egress.yaml']) assert.ok(shipped.includes(f), f);
  });

  for (const file of shipped) {
    it(`Envoy 1.40 accepts envoy/${file} (envoy --mode validate)`, () => {
      assert.equal(validateEnvoyConfig(path.join(ENVOY_DIR, file)), undefined);
    });
  }

  it('are exactly what `mongoplex envoy-config` generates (scripts/envoy-configs.sh)', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'mongoplex-envoy-configs-'));
    execFileSync('bash', [path.join(ROOT, 'scripts', 'envoy-configs.sh'), out]);
    for (const f of readdirSync(out)) {
      assert.equal(readFileSync(path.join(out, f), 'utf8'), readFileSync(path.join(ENVOY_DIR, f), 'utf8'), `envoy/${f} is stale: run scripts/envoy-configs.sh`);
    }
  });

  it('mongoplex envoy-config generates a valid config for a replica set of listeners and refuses bad arguments', () => {
    const main = path.join(ROOT, 'dist', 'filter', 'main.js');
    const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-envoy-gen-'));
    const file = path.join(dir, 'rs.yaml');
    const yaml = execFileSync(process.execPath, [main, 'envoy-config', '--listen', 'rs0=0.0.0.0:27017', '--listen', 'rs1=0.0.0.0:27018', '--listen', 'rs2=0.0.0.0:27019', '--egress', '127.0.0.1:27100', '--upstream-tls'], { encoding: 'utf8' });
    writeFileSync(file, yaml);
    assert.equal(validateEnvoyConfig(file), undefined);
    assert.equal((yaml.match(/x-mongoplex-listener/g) ?? []).length, 3);
    const bad = spawnSync(process.execPath, [main, 'envoy-config', '--listen', 'nope'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--listen: expected NAME=HOST:PORT, got 'nope'/);
  });

  it('mongoplex envoy-config writes TLS for clients, for the gRPC leg (mutual) and for the egress, and Envoy accepts it with real certificate files', () => {
    const main = path.join(ROOT, 'dist', 'filter', 'main.js');
    const ca = TestCa.create();
    const server = ca.server('server');
    const client = ca.client('envoy');
    const args = [
      '--client-tls-cert', server.certFile, '--client-tls-key', server.keyFile, '--client-tls-ca', ca.caFile, '--require-client-cert',
      '--filter-grpc', '127.0.0.1:50051', '--filter-tls-cert', client.certFile, '--filter-tls-key', client.keyFile, '--filter-tls-ca', ca.caFile,
      '--egress', '127.0.0.1:27100', '--upstream-tls', '--upstream-ca', ca.caFile, '--upstream-cert', client.certFile, '--upstream-key', client.keyFile,
    ];
    const yaml = execFileSync(process.execPath, [main, 'envoy-config', ...args], { encoding: 'utf8' });
    const file = path.join(ca.dir, 'tls.yaml');
    writeFileSync(file, yaml);
    assert.equal(validateEnvoyConfig(file), undefined);
    assert.equal((yaml.match(/DownstreamTlsContext/g) ?? []).length, 1);
    assert.equal((yaml.match(/UpstreamTlsContext/g) ?? []).length, 2);
    assert.match(yaml, /require_client_certificate: true/);
    assert.match(yaml, /alpn_protocols:\n\s+- h2/);
    for (const [argv, message] of [
      [['--filter-tls-cert', client.certFile, '--filter-tls-key', client.keyFile], /give --filter-tls-cert, --filter-tls-key and --filter-tls-ca/],
      [['--client-tls-cert', server.certFile], /--client-tls-cert and --client-tls-key go together/],
      [['--client-tls-cert', server.certFile, '--client-tls-key', server.keyFile, '--require-client-cert'], /--require-client-cert needs --client-tls-ca/],
      [['--egress', '127.0.0.1:1', '--upstream-ca', ca.caFile], /need --upstream-tls/],
      [['--filter-grpc', 'unix:/tmp/x.sock', '--filter-admin', '127.0.0.1:9000'], /--filter-admin: with a Unix socket/],
    ] as const) {
      const r = spawnSync(process.execPath, [main, 'envoy-config', ...argv], { encoding: 'utf8' });
      assert.equal(r.status, 2, argv.join(' '));
      assert.match(r.stderr, message);
    }
  });
});
