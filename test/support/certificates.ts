import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import forge from 'node-forge';

/**
 * A throwaway certificate authority for TLS tests: a CA, and leaf certificates it signs for
 * servers (with subject alternative names) and clients, written as PEM files in a temp dir.
 * Keys come from node:crypto; node-forge builds and signs the certificates.
 */

export interface PemFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

interface KeyPair {
  readonly pem: string;
  readonly privateKey: forge.pki.rsa.PrivateKey;
  readonly publicKey: forge.pki.rsa.PublicKey;
}

function keyPair(): KeyPair {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(pem);
  return { pem, privateKey: key, publicKey: forge.pki.setRsaPublicKey(key.n, key.e) };
}

let serial = 1;

function certificate(subject: string, publicKey: forge.pki.rsa.PublicKey, extensions: object[]): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.serialNumber = (serial++).toString(16).padStart(2, '0');
  cert.publicKey = publicKey;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 3600_000);
  cert.setSubject([{ name: 'commonName', value: subject }]);
  cert.setExtensions(extensions);
  return cert;
}

export class TestCa {
  private constructor(readonly dir: string, readonly caFile: string, private readonly cert: forge.pki.Certificate, private readonly key: KeyPair) {}

  static create(name = 'mongoplex test CA'): TestCa {
    const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-ca-'));
    const key = keyPair();
    const cert = certificate(name, key.publicKey, [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ]);
    cert.setIssuer(cert.subject.attributes);
    cert.sign(key.privateKey, forge.md.sha256.create());
    const caFile = path.join(dir, 'ca.pem');
    writeFileSync(caFile, forge.pki.certificateToPem(cert));
    return new TestCa(dir, caFile, cert, key);
  }

  /** A server certificate for these names (DNS names and IP addresses). */
  server(file: string, names: readonly string[] = ['localhost', '127.0.0.1']): PemFiles {
    const altNames = names.map((n) => (/^[\d.]+$|:/.test(n) ? { type: 7, ip: n } : { type: 2, value: n }));
    return this.issue(file, names[0] ?? 'server', [{ name: 'extKeyUsage', serverAuth: true }, { name: 'subjectAltName', altNames }]);
  }

  /** A client certificate with this common name. */
  client(file: string, commonName = 'client'): PemFiles {
    return this.issue(file, commonName, [{ name: 'extKeyUsage', clientAuth: true }]);
  }

  private issue(file: string, commonName: string, extensions: object[]): PemFiles {
    const key = keyPair();
    const cert = certificate(commonName, key.publicKey, [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      ...extensions,
    ]);
    cert.setIssuer(this.cert.subject.attributes);
    cert.sign(this.key.privateKey, forge.md.sha256.create());
    const certFile = path.join(this.dir, `${file}.crt`);
    const keyFile = path.join(this.dir, `${file}.key`);
    writeFileSync(keyFile, key.pem, { mode: 0o600 });
    writeFileSync(certFile, forge.pki.certificateToPem(cert));
    return { certFile, keyFile };
  }
}
