import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import type { Config } from '../config';
import { ConfigError } from '../config';

/** TLS to the upstream servers (upstream.tls), its files read once at start. */
export interface UpstreamTls {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly allowInvalidHostnames: boolean;
}

export function upstreamTls(settings: Config['upstream']['tls']): UpstreamTls | undefined {
  if (!settings.enabled) return undefined;
  const read = (name: string, file: string | null): Buffer | undefined => {
    if (file === null) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError(`upstream.tls.${name}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const ca = read('caFile', settings.caFile);
  const cert = read('certFile', settings.certFile);
  const key = read('keyFile', settings.keyFile);
  try {
    tls.createSecureContext({ ca, cert, key });
  } catch (err) {
    throw new ConfigError(`upstream.tls: the certificate files do not load: ${(err as Error).message}`);
  }
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), allowInvalidHostnames: settings.allowInvalidHostnames };
}

/** Options for tls.connect to one server: SNI and the host-name check use the name dialled. */
export function tlsConnectOptions(t: UpstreamTls, host: string, port: number): tls.ConnectionOptions {
  return {
    host,
    port,
    ...(isIP(host) ? {} : { servername: host }),
    ca: t.ca,
    cert: t.cert,
    key: t.key,
    ...(t.allowInvalidHostnames ? { checkServerIdentity: () => undefined } : {}),
  };
}
