import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { buildBootstrap, DEFAULT_CLIENT_USER_TIMEOUT_MS, type ClientListener, type HostPort, type IngressMode, type PipePath, type TlsFiles } from './bootstrap';

export const ENVOY_CONFIG_USAGE = `usage: mongoplex envoy-config [options]   (prints an Envoy bootstrap as YAML)

  --mode ext_proc|sidecar|none   how client connections reach mongoplex (default ext_proc);
                                 none: only the egress listener
  --listen NAME=HOST:PORT[@MEMBER] a client-facing listener (repeatable; default main=127.0.0.1:27017:
                                 loopback unless you say otherwise, e.g. main=0.0.0.0:27017);
                                 NAME reaches mongoplex as x-mongoplex-listener; with @MEMBER
                                 (a replica-set member's real host:port) the listener stands for
                                 that member (set topology.advertise to match)
  --filter-grpc HOST:PORT|unix:/PATH
                                 mongoplex's ext_proc gRPC address, listen.grpc (default
                                 127.0.0.1:50051)
  --filter-workers N             mongoplex's workers (default 1): worker i serves ext_proc at
                                 --filter-grpc's port + i (a socket: its path + .i), and Envoy
                                 spreads streams over all of them (the standby's too)
  --filter-tls-cert FILE, --filter-tls-key FILE, --filter-tls-ca FILE
                                 mongoplex's listen.grpcTls is set: Envoy presents this client
                                 certificate and verifies mongoplex's against the CA
  --client-tls-cert FILE, --client-tls-key FILE
                                 terminate clients' TLS in Envoy with this certificate
  --client-tls-ca FILE           verify client certificates against this CA
  --require-client-cert          refuse clients without a certificate (needs --client-tls-ca)
  --filter-tcp HOST:PORT         mongoplex's TCP listener, for --mode sidecar (default 127.0.0.1:27016)
  --filter-admin HOST:PORT       mongoplex's admin endpoint (admin.host/admin.port): Envoy
                                 health-checks mongoplex with GET /readyz there (with a Unix
                                 socket --filter-grpc, Envoy checks over the socket instead,
                                 with gRPC health checking)
  --standby-grpc HOST:PORT       a second mongoplex ext_proc address (the other slot of a rolling
                                 restart, see docs/operations.md, "Restarting without errors"); Envoy sends
                                 new connections to whichever slots pass /readyz
  --standby-admin HOST:PORT      the standby's admin endpoint, for its /readyz health check
  --egress HOST:PORT             add the egress listener mongoplex dials with upstream.via
  --max-connections-per-member N Envoy's per-member connection cap on egress (default 100)
  --upstream-tls                 originate TLS from the egress listener to the members
  --upstream-ca FILE             verify members' certificate chains against this CA
  --upstream-cert FILE, --upstream-key FILE
                                 a client certificate the egress presents to the members
  --admin HOST:PORT              Envoy admin address (default 127.0.0.1:9902)
  --access-log                   log every connection to stderr
  --client-user-timeout MS       TCP_USER_TIMEOUT on client connections (default 30000; 0: off):
                                 a client that stops acknowledging data (one that never reads its
                                 replies) is aborted after MS, freeing the replies Envoy holds for it`;

function grpcTarget(v: string): HostPort | PipePath {
  return v.startsWith('unix:') ? { path: v.slice('unix:'.length) } : hostPort(v, '--filter-grpc');
}

/** The named TLS files, or undefined when none is given; cert and key go together. */
function tlsFiles(values: Record<string, unknown>, prefix: string, what: string): TlsFiles | undefined {
  const certFile = values[`${prefix}-cert`] as string | undefined;
  const keyFile = values[`${prefix}-key`] as string | undefined;
  const caFile = values[`${prefix}-ca`] as string | undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) throw new Error(`--${prefix}-cert and --${prefix}-key go together (${what})`);
  if (certFile === undefined && caFile === undefined) return undefined;
  return { ...(certFile ? { certFile, keyFile: keyFile! } : {}), ...(caFile ? { caFile } : {}) };
}

function hostPort(v: string, what: string): HostPort {
  const m = /^(.+):(\d+)$/.exec(v);
  if (!m) throw new Error(`${what}: expected HOST:PORT, got '${v}'`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** `mongoplex envoy-config`: the Envoy bootstrap for a given set of ports, as YAML. */
export function envoyConfigCommand(argv: string[]): string {
  const { values } = parseArgs({
    args: argv,
    options: {
      mode: { type: 'string', default: 'ext_proc' },
      listen: { type: 'string', multiple: true },
      'filter-grpc': { type: 'string', default: '127.0.0.1:50051' },
      'filter-tcp': { type: 'string', default: '127.0.0.1:27016' },
      'filter-admin': { type: 'string' },
      'standby-grpc': { type: 'string' },
      'filter-workers': { type: 'string', default: '1' },
      'standby-admin': { type: 'string' },
      egress: { type: 'string' },
      'max-connections-per-member': { type: 'string', default: '100' },
      'upstream-tls': { type: 'boolean', default: false },
      'upstream-ca': { type: 'string' },
      'upstream-cert': { type: 'string' },
      'upstream-key': { type: 'string' },
      'filter-tls-cert': { type: 'string' },
      'filter-tls-key': { type: 'string' },
      'filter-tls-ca': { type: 'string' },
      'client-tls-cert': { type: 'string' },
      'client-tls-key': { type: 'string' },
      'client-tls-ca': { type: 'string' },
      'require-client-cert': { type: 'boolean', default: false },
      admin: { type: 'string', default: '127.0.0.1:9902' },
      'access-log': { type: 'boolean', default: false },
      'client-user-timeout': { type: 'string', default: String(DEFAULT_CLIENT_USER_TIMEOUT_MS) },
    },
  });
  const listeners: ClientListener[] = (values.listen ?? ['main=127.0.0.1:27017']).map((l) => {
    const eq = l.indexOf('=');
    if (eq <= 0) throw new Error(`--listen: expected NAME=HOST:PORT, got '${l}'`);
    const name = l.slice(0, eq);
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`--listen: listener name '${name}' may only use letters, digits, _ and -`);
    const [addr = '', member] = l.slice(eq + 1).split('@');
    if (member !== undefined) hostPort(member, '--listen member');
    return { name, ...hostPort(addr, '--listen'), ...(member ? { member } : {}) };
  });
  let ingress: IngressMode | undefined;
  const filterAdmin = values['filter-admin'] ? { filterAdmin: hostPort(values['filter-admin'], '--filter-admin') } : {};
  if (values['standby-admin'] && !values['standby-grpc']) throw new Error('--standby-admin needs --standby-grpc');
  const standby = values['standby-grpc']
    ? { standby: { grpc: grpcTarget(values['standby-grpc']), ...(values['standby-admin'] ? { admin: hostPort(values['standby-admin'], '--standby-admin') } : {}) } }
    : {};
  if (values['filter-grpc'].startsWith('unix:') && values['filter-admin']) throw new Error('--filter-admin: with a Unix socket, Envoy health-checks mongoplex over the socket itself (gRPC health checking)');
  const filterTls = tlsFiles(values, 'filter-tls', "mongoplex's listen.grpcTls");
  if (filterTls && !(filterTls.certFile && filterTls.caFile)) throw new Error('--filter-tls-*: mongoplex\'s gRPC TLS is mutual; give --filter-tls-cert, --filter-tls-key and --filter-tls-ca');
  const workers = Number(values['filter-workers']);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new Error('--filter-workers: expected mongoplex\'s workers, an integer from 1 to 64');
  if (values.mode === 'ext_proc') ingress = { kind: 'ext_proc', filterGrpc: grpcTarget(values['filter-grpc']), ...filterAdmin, ...standby, ...(filterTls ? { filterTls: filterTls as Required<TlsFiles> } : {}), ...(workers > 1 ? { workers } : {}) };
  else if (workers > 1) throw new Error('--filter-workers is for --mode ext_proc (the TCP ingress is one port whatever the workers)');
  else if (filterTls) throw new Error('--filter-tls-* is for --mode ext_proc');
  else if (values['standby-grpc']) throw new Error('--standby-grpc is for --mode ext_proc');
  else if (values.mode === 'sidecar') ingress = { kind: 'sidecar', filterTcp: hostPort(values['filter-tcp'], '--filter-tcp'), ...filterAdmin };
  else if (values.mode !== 'none') throw new Error(`--mode: expected ext_proc, sidecar or none, got '${values.mode}'`);
  const cap = Number(values['max-connections-per-member']);
  if (!Number.isInteger(cap) || cap < 1) throw new Error('--max-connections-per-member: expected a positive integer');
  if (!ingress && !values.egress) throw new Error('--mode none needs --egress');
  const clientTls = tlsFiles(values, 'client-tls', 'the client listeners\' TLS');
  if (clientTls && !clientTls.certFile) throw new Error('--client-tls-ca needs --client-tls-cert and --client-tls-key');
  if (values['require-client-cert'] && !clientTls?.caFile) throw new Error('--require-client-cert needs --client-tls-ca');
  const upstreamTls = tlsFiles(values, 'upstream', 'the egress listener\'s TLS to the members');
  if (upstreamTls && !values['upstream-tls']) throw new Error('--upstream-ca/--upstream-cert/--upstream-key need --upstream-tls');
  const userTimeout = Number(values['client-user-timeout']);
  if (!Number.isInteger(userTimeout) || userTimeout < 0 || userTimeout > 2_147_483_647) throw new Error('--client-user-timeout: expected milliseconds, an integer ≥ 0 (0: off)');
  const bootstrap = buildBootstrap({
    admin: hostPort(values.admin, '--admin'),
    listeners,
    ...(clientTls ? { clientTls: { ...clientTls, requireClientCert: values['require-client-cert'] } } : {}),
    ingress,
    egress: values.egress ? { ...hostPort(values.egress, '--egress'), maxConnectionsPerMember: cap, connectTimeoutMs: 5000, tls: values['upstream-tls'] && (upstreamTls ?? true) } : undefined,
    accessLog: values['access-log'],
    clientUserTimeoutMs: userTimeout,
  });
  return `# Generated by: mongoplex envoy-config ${argv.join(' ')}\n${stringify(bootstrap)}`;
}
