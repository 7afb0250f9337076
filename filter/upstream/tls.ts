import { isIP } from 'node:net';
import type * as tls from 'node:tls';
import type { Config } from '../config';
import { loadPemFiles } from '../pem-files';

/** TLS to the upstream servers (upstream.tls), its files read once at start. */
export interface UpstreamTls {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly allowInvalidHostnames: boolean;
}

export function upstreamTls(settings: Config['upstream']['tls']): UpstreamTls | undefined {
  if (!settings.enabled) return undefined;
  return { ...loadPemFiles('upstream.tls', settings), allowInvalidHostnames: settings.allowInvalidHostnames };
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
