import { Envoy } from '../../scripts/envoy';
import { freePort } from '../../scripts/ports';
import { buildBootstrap, type IngressMode } from '../../filter/envoy/bootstrap';

export interface EnvoyFront {
  readonly envoy: Envoy;
  /** Connection string of Envoy's client-facing listener. */
  readonly uri: string;
  readonly port: number;
  /** The egress listener's address, when asked for. */
  readonly egress: string | undefined;
}

/** A real Envoy in front (ingress) and/or behind (egress) mongoplex, on free loopback ports. */
export async function startEnvoy(options: { ingress?: IngressMode; egress?: { maxConnectionsPerMember: number } }): Promise<EnvoyFront> {
  const admin = await freePort();
  const port = await freePort();
  const egressPort = options.egress ? await freePort() : undefined;
  const bootstrap = buildBootstrap({
    admin: { host: '127.0.0.1', port: admin },
    listeners: [{ name: 'main', host: '127.0.0.1', port }],
    ingress: options.ingress,
    egress: options.egress && egressPort ? { host: '127.0.0.1', port: egressPort, maxConnectionsPerMember: options.egress.maxConnectionsPerMember, connectTimeoutMs: 5000, tls: false } : undefined,
  });
  const envoy = await Envoy.start(bootstrap, admin);
  return { envoy, port, uri: `mongodb://127.0.0.1:${port}/`, egress: egressPort ? `127.0.0.1:${egressPort}` : undefined };
}
