import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { MongoClient } from 'mongodb';
import { startEnvoyFront } from '../scripts/envoy';
import { FerretDB } from '../scripts/ferretdb';
import { freePort, waitFor } from '../scripts/ports';
import { TestCa, type PemFiles } from './support/certificates';
import { startConfigured, startMongoplex } from './support/mongoplex';

// One CA signs everything: FerretDB's TLS listener, mongoplex's, Envoy's, and the clients'.
const ca = TestCa.create();
const serverCert = ca.server('server');
const clientCert = ca.client('client', 'app');
/** The driver's tlsCertificateKeyFile holds certificate and key in one file. */
function combined(files: PemFiles, name: string): string {
  const file = path.join(ca.dir, `${name}.pem`);
  writeFileSync(file, readFileSync(files.certFile, 'utf8') + readFileSync(files.keyFile, 'utf8'), { mode: 0o600 });
  return file;
}
const clientPem = combined(clientCert, 'client-combined');
const tlsUri = (port: number, extra = ''): string => `mongodb://127.0.0.1:${port}/?tls=true&tlsCAFile=${encodeURIComponent(ca.caFile)}${extra}`;
const quick = { serverSelectionTimeoutMS: 3000, connectTimeoutMS: 3000 };

// A TLS-only FerretDB that requires client certificates (its CA file turns verification on).
const server = new FerretDB({ tls: { ...serverCert, caFile: ca.caFile } });
before(() => server.start());
after(() => server.stop());

async function roundTrip(uri: string, collection: string, options = {}): Promise<void> {
  const c = new MongoClient(uri, { ...quick, ...options });
  try {
    await c.db('tls').collection(collection).insertOne({ collection });
    assert.equal((await c.db('tls').collection(collection).findOne({ collection }))?.collection, collection);
  } finally {
    await c.close();
  }
}

async function refused(uri: string, options = {}): Promise<Error> {
  const c = new MongoClient(uri, { ...quick, ...options });
  try {
    await c.db('admin').command({ ping: 1 });
  } catch (err) {
    return err as Error;
  } finally {
    await c.close();
  }
  throw new Error(`${uri} was not refused`);
}

describe('TLS from clients to the TCP ingress (listen.tls)', () => {
  it('a driver with tls=true&tlsCAFile= reads and writes; a plain-text client gets no answer', async () => {
    const proxy = await startMongoplex(server.address, { listen: { tls: serverCert } });
    try {
      await roundTrip(tlsUri(proxy.port), 'ingress');
      await refused(proxy.uri);
      // Untrusted: a driver that does not know the CA refuses the proxy's certificate.
      assert.match((await refused(`mongodb://127.0.0.1:${proxy.port}/?tls=true`)).message, /certificate|self[- ]signed|unable to verify/i);
    } finally {
      await proxy.stop();
    }
  });

  it('with requireClientCert, a client without a certificate is refused and one with a certificate from the CA is served', async () => {
    const proxy = await startMongoplex(server.address, { listen: { tls: { ...serverCert, caFile: ca.caFile, requireClientCert: true } }, admin: { port: 0 } });
    try {
      await refused(tlsUri(proxy.port));
      await roundTrip(tlsUri(proxy.port, `&tlsCertificateKeyFile=${encodeURIComponent(clientPem)}`), 'client-cert');
      const other = TestCa.create('another CA');
      const stranger = combined(other.client('stranger'), 'stranger');
      await refused(tlsUri(proxy.port, `&tlsCertificateKeyFile=${encodeURIComponent(stranger)}`));
      const metrics = await (await fetch(`http://127.0.0.1:${proxy.admin!.port}/metrics`)).text();
      const failures = Number(/^mongoplex_tls_handshake_failures_total(?:\{[^}]*\})? (\d+)/m.exec(metrics)?.[1] ?? 0);
      assert.ok(failures >= 2, `handshake failures counted (${failures})`);
    } finally {
      await proxy.stop();
    }
  });

  it('a renewed certificate is used for new connections without a restart; files that do not load leave the last good one in use', async () => {
    const certFile = path.join(ca.dir, 'live.crt');
    const keyFile = path.join(ca.dir, 'live.key');
    copyFileSync(serverCert.certFile, certFile);
    copyFileSync(serverCert.keyFile, keyFile);
    const proxy = await startMongoplex(server.address, { listen: { tls: { certFile, keyFile } } });
    try {
      await roundTrip(tlsUri(proxy.port), 'before-renewal');
      // Renewed by a different CA: clients that trust only the new CA get in once it is picked up.
      const renewedCa = TestCa.create('renewed CA');
      const renewed = renewedCa.server('renewed');
      copyFileSync(renewed.keyFile, keyFile);
      copyFileSync(renewed.certFile, certFile);
      const renewedUri = `mongodb://127.0.0.1:${proxy.port}/?tls=true&tlsCAFile=${encodeURIComponent(renewedCa.caFile)}`;
      await waitFor('the renewed certificate', async () => {
        try {
          await roundTrip(renewedUri, 'after-renewal', { serverSelectionTimeoutMS: 500 });
          return true;
        } catch {
          return undefined;
        }
      }, 10_000);
      // A half-written certificate: the renewed one stays in use.
      writeFileSync(certFile, '-----BEGIN CERTIFICATE-----\nMIIB\n');
      await new Promise((r) => setTimeout(r, 2500));
      await roundTrip(renewedUri, 'after-bad-file');
    } finally {
      await proxy.stop();
    }
  });

  it('a certificate file that does not load stops the start with an error naming listen.tls', async () => {
    const bad = path.join(ca.dir, 'bad.crt');
    writeFileSync(bad, 'not a certificate');
    await assert.rejects(startMongoplex(server.address, { listen: { tls: { certFile: bad, keyFile: serverCert.keyFile } } }), /^ConfigError: listen\.tls: /);
    await assert.rejects(startMongoplex(server.address, { listen: { tls: { certFile: path.join(ca.dir, 'missing.crt'), keyFile: serverCert.keyFile } } }), /listen\.tls: cannot read certFile .*missing\.crt: ENOENT/);
  });
});

describe('TLS to the servers (upstream.tls)', () => {
  it('pooled and monitor connections dial with TLS and a client certificate; a server certificate from an unknown CA is a clear error', async () => {
    const proxy = await startMongoplex(`127.0.0.1:${server.tlsPort}`, { upstream: { tls: { enabled: true, caFile: ca.caFile, ...clientCert } }, admin: { port: 0 } });
    try {
      await roundTrip(proxy.uri, 'upstream');
      await waitFor('the monitor over TLS', async () => (proxy.proxy.readiness.check().ready ? true : undefined), 5000);
    } finally {
      await proxy.stop();
    }
    const stranger = TestCa.create('unknown CA');
    const wrong = await startMongoplex(`127.0.0.1:${server.tlsPort}`, { upstream: { tls: { enabled: true, caFile: stranger.caFile, ...clientCert }, waitQueueTimeoutMs: 2000 } });
    try {
      const err = await refused(wrong.uri, { retryReads: false });
      assert.match(err.message, /TLS connect to 127\.0\.0\.1:\d+ failed: .*(certificate|self[- ]signed)/i);
    } finally {
      await wrong.stop();
    }
  });
});

describe('TLS to the servers from a connection string (upstream.uri)', () => {
  it('tls=true, tlsCAFile and tlsCertificateKeyFile in upstream.uri dial the servers with TLS and a client certificate', async () => {
    const uri = `mongodb://127.0.0.1:${server.tlsPort}/?tls=true&tlsCAFile=${encodeURIComponent(ca.caFile)}&tlsCertificateKeyFile=${encodeURIComponent(clientPem)}&replicaSet=ignored`;
    const proxy = await startConfigured({ listen: { host: '127.0.0.1', port: 0 }, upstream: { uri } });
    try {
      await roundTrip(`mongodb://127.0.0.1:${proxy.tcp!.port}/`, 'from-uri');
      assert.deepEqual([proxy.proxy.config.upstream.servers, proxy.proxy.config.upstream.tls.enabled], [[`127.0.0.1:${server.tlsPort}`], true]);
    } finally {
      await proxy.stop();
    }
  });
});

describe('TLS through Envoy', () => {
  it('Envoy terminates clients\' TLS (DownstreamTlsContext), reaches mongoplex over a Unix socket, and its egress originates TLS to the server', async () => {
    const socketPath = path.join(ca.dir, 'ext-proc.sock');
    const front = await startEnvoyFront({
      ingress: { kind: 'ext_proc', filterGrpc: { path: socketPath } },
      clientTls: serverCert,
      egress: { maxConnectionsPerMember: 4, tls: { caFile: ca.caFile, ...clientCert } },
    });
    const proxy = await startConfigured({
      listen: { port: null, grpc: `unix:${socketPath}` },
      upstream: { servers: [`127.0.0.1:${server.tlsPort}`], via: front.egress! },
    });
    try {
      await roundTrip(tlsUri(front.port), 'envoy');
      await refused(front.uri);
      assert.ok(await front.envoy.stat('cluster.mongodb_members.ssl.handshake') >= 1, 'the egress spoke TLS to the server');
    } finally {
      await proxy.stop();
      await front.envoy.stop();
    }
  });

  it('Envoy and mongoplex speak gRPC over mutual TLS (listen.grpcTls); an Envoy whose certificate is not from listen.grpcTls.caFile is refused', async () => {
    const grpcPort = await freePort();
    const envoyCert = ca.client('envoy', 'envoy');
    const front = await startEnvoyFront({
      ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpcPort }, filterTls: { ...envoyCert, caFile: ca.caFile } },
    });
    const proxy = await startConfigured({
      listen: { port: null, grpc: `127.0.0.1:${grpcPort}`, grpcTls: { ...serverCert, caFile: ca.caFile } },
      upstream: { servers: [`127.0.0.1:${server.tlsPort}`], tls: { enabled: true, caFile: ca.caFile, ...clientCert } },
    });
    try {
      await roundTrip(front.uri, 'grpc-mtls');
    } finally {
      await proxy.stop();
      await front.envoy.stop();
    }
    // mongoplex trusting another CA: Envoy's certificate is refused and no stream opens.
    const bare = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpcPort }, filterTls: { ...envoyCert, caFile: ca.caFile } } });
    const strict = await startConfigured({
      listen: { port: null, grpc: `127.0.0.1:${grpcPort}`, grpcTls: { ...serverCert, caFile: TestCa.create('other').caFile } },
      upstream: { servers: [`127.0.0.1:${server.tlsPort}`], tls: { enabled: true, caFile: ca.caFile, ...clientCert } },
    });
    try {
      await refused(bare.uri);
    } finally {
      await strict.stop();
      await bare.envoy.stop();
    }
  });
});
