import { isIP } from 'node:net';
import { workerEndpoint } from '../workers/plan';

/**
 * Envoy bootstrap configurations for the ways mongoplex runs with Envoy. One source for the
 * files shipped in envoy/, for `mongoplex envoy-config`, for the dev stack and for the tests.
 */

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** A client-facing Envoy listener (e.g. one per replica-set member in replset mode). */
export interface ClientListener extends HostPort {
  readonly name: string;
  /** replset mode: the real member (host:port) this listener stands for. */
  readonly member?: string;
}

/** A Unix domain socket (Envoy's `pipe` address). */
export interface PipePath {
  readonly path: string;
}

/** PEM files for one side of a TLS connection. */
export interface TlsFiles {
  /** Certificate chain and key presented (required for a server, optional for a client). */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** CA certificates the peer's certificate is verified against. */
  readonly caFile?: string;
}

export interface EgressOptions extends HostPort {
  /** Envoy's per-member connection cap (circuit breaker per_host_thresholds). */
  readonly maxConnectionsPerMember: number;
  readonly connectTimeoutMs: number;
  /**
   * Originate TLS to the members: true (no verification), or the CA that members' certificates
   * are verified against and a client certificate to present. The chain is verified, not the
   * host name (an ORIGINAL_DST cluster has no per-member name to check).
   */
  readonly tls: boolean | TlsFiles;
}

export type IngressMode =
  /** Envoy streams client bytes to mongoplex over gRPC (network ext_proc). */
  | {
    /** filterGrpc: listen.grpc, host:port or a Unix socket. */
    readonly kind: 'ext_proc'; readonly filterGrpc: HostPort | PipePath; readonly filterAdmin?: HostPort;
    /** mongoplex's listen.grpcTls is set: Envoy presents this client certificate and verifies mongoplex's against caFile. */
    readonly filterTls?: Required<TlsFiles>;
    /**
     * A second mongoplex endpoint (a rolling restart's other slot): Envoy opens streams on
     * whichever endpoints pass their /readyz health check.
     */
    readonly standby?: { readonly grpc: HostPort | PipePath; readonly admin?: HostPort };
    /** mongoplex's `workers` (default 1): worker i serves ext_proc at filterGrpc's port + i (a socket: path + `.i`), each an endpoint (the standby's too). */
    readonly workers?: number;
  }
  /** Envoy tcp_proxy to mongoplex's TCP listener (sidecar). */
  | { readonly kind: 'sidecar'; readonly filterTcp: HostPort; readonly filterAdmin?: HostPort }
  /** Envoy tcp_proxy straight to MongoDB: no pooling (the benchmark baseline). */
  | { readonly kind: 'tcp_proxy'; readonly upstream: HostPort };

export interface BootstrapOptions {
  readonly admin: HostPort;
  readonly listeners: readonly ClientListener[];
  /** Terminate clients' TLS in Envoy (certificate and key required; caFile: verify client certificates). */
  readonly clientTls?: TlsFiles & { readonly requireClientCert?: boolean };
  readonly ingress?: IngressMode;
  readonly egress?: EgressOptions;
  readonly accessLog?: boolean;
  /**
   * TCP_USER_TIMEOUT on the client listeners' connections (0: off; default
   * DEFAULT_CLIENT_USER_TIMEOUT_MS): the kernel aborts a connection whose peer has not
   * acknowledged sent data, a zero receive window included, for this long. ext_proc cannot
   * slow Envoy's writes to a client that stopped reading; this frees what Envoy holds for it.
   */
  readonly clientUserTimeoutMs?: number;
}

/**
 * No healthy client on a slow network goes this long without acknowledging data; a client that
 * stopped reading holds Envoy's buffered replies until then.
 */
export const DEFAULT_CLIENT_USER_TIMEOUT_MS = 30_000;

/** Linux's IPPROTO_TCP and TCP_USER_TIMEOUT (netinet/tcp.h). */
const IPPROTO_TCP = 6;
const TCP_USER_TIMEOUT = 18;

export type Json = Record<string, unknown>;

const socket = (a: HostPort | PipePath): Json => ('path' in a ? { pipe: { path: a.path } } : { socket_address: { address: a.host, port_value: a.port } });

/** Envoy's CommonTlsContext for a set of PEM files. */
function commonTls(files: TlsFiles, alpn?: string[]): Json {
  return {
    ...(files.certFile ? { tls_certificates: [{ certificate_chain: { filename: files.certFile }, private_key: { filename: files.keyFile } }] } : {}),
    ...(files.caFile ? { validation_context: { trusted_ca: { filename: files.caFile } } } : {}),
    ...(alpn ? { alpn_protocols: alpn } : {}),
  };
}

function upstreamTls(files: TlsFiles, sni?: string, alpn?: string[]): Json {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      common_tls_context: commonTls(files, alpn),
      ...(sni ? { sni } : {}),
    },
  };
}

/**
 * One fixed endpoint: STATIC for an IP address or a Unix socket, STRICT_DNS for a name (e.g. a
 * compose service). With `readyz`, Envoy health-checks the endpoint with GET /readyz at that
 * (admin) address; an ext_proc endpoint on a Unix socket is checked over the socket itself
 * with gRPC health checking (mongoplex answers as /readyz would).
 */
function fixedCluster(name: string, target: HostPort | PipePath, extra: Json = {}, readyz?: HostPort, more: ReadonlyArray<{ target: HostPort | PipePath; readyz?: HostPort }> = []): Json {
  const endpoints = [{ target, readyz }, ...more];
  const pipes = endpoints.some((e) => 'path' in e.target);
  const checked = pipes || readyz !== undefined;
  const timing = {
    timeout: '1s',
    interval: '2s',
    // Envoy checks a cluster without traffic only every 60 s unless told otherwise.
    no_traffic_interval: '2s',
    unhealthy_threshold: 2,
    healthy_threshold: 1,
  };
  return {
    name,
    type: endpoints.every((e) => 'path' in e.target || isIP(e.target.host)) ? 'STATIC' : 'STRICT_DNS',
    connect_timeout: '5s',
    load_assignment: {
      cluster_name: name,
      endpoints: [{
        lb_endpoints: endpoints.map((e) => ({
          endpoint: { address: socket(e.target), ...(e.readyz && !pipes ? { health_check_config: { address: socket(e.readyz) } } : {}) },
        })),
      }],
    },
    ...(checked ? { health_checks: [{ ...timing, ...(pipes ? { grpc_health_check: {} } : { http_health_check: { path: '/readyz' } }) }] } : {}),
    ...extra,
  };
}

/** The last command of an ext_proc connection, from the dynamic metadata mongoplex sets. */
const MONGO_FIELDS = ' db=%DYNAMIC_METADATA(mongoplex:db)% collection=%DYNAMIC_METADATA(mongoplex:collection)% command=%DYNAMIC_METADATA(mongoplex:command)%';

const accessLog = (name: string, extra = ''): Json[] => [{
  name: 'envoy.access_loggers.stderr',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog',
    log_format: { text_format_source: { inline_string: `[%START_TIME%] ${name} %DOWNSTREAM_REMOTE_ADDRESS% -> %UPSTREAM_HOST% %BYTES_RECEIVED%B in %BYTES_SENT%B out %DURATION%ms %CONNECTION_TERMINATION_DETAILS%${extra}\n` } },
  },
}];

function tcpProxy(statPrefix: string, cluster: string, log: boolean): Json {
  return {
    name: 'envoy.filters.network.tcp_proxy',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
      stat_prefix: statPrefix,
      cluster,
      ...(log ? { access_log: accessLog(statPrefix) } : {}),
    },
  };
}

/**
 * The network filters that stream a client connection to mongoplex: ext_proc, then echo (the
 * terminal filter the consumed bytes end at). `cluster` is the ext_proc gRPC cluster (in Istio,
 * the processor service's outbound cluster). Shared by the bootstraps and the Kubernetes manifests.
 */
export function extProcFilters(l: Pick<ClientListener, 'name' | 'member'>, cluster = 'mongoplex_ext_proc'): Json[] {
  return [
    {
      name: 'envoy.filters.network.ext_proc',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.ext_proc.v3.NetworkExternalProcessor',
        stat_prefix: `mongoplex_${l.name}`,
        grpc_service: {
          envoy_grpc: { cluster_name: cluster },
          // Which listener this stream came through: the per-listener fact mongoplex needs
          // (in replset mode, the member this address stands for).
          initial_metadata: [
            { key: 'x-mongoplex-listener', value: l.name },
            ...(l.member ? [{ key: 'x-mongoplex-member', value: l.member }] : []),
          ],
        },
        // Replies are injected by mongoplex as write_data; Envoy never needs to ask.
        processing_mode: { process_read: 'STREAMED', process_write: 'SKIP' },
        // A byte pump has no per-message deadline: the default 200 ms would cut slow queries.
        message_timeout: '0s',
        failure_mode_allow: false,
        // The client's own address, sent with the stream's first read (whatsmyuri, logs).
        connection_attributes: ['source.address'],
        // mongoplex may describe the last command of each reply (listen.grpcDynamicMetadata):
        // %DYNAMIC_METADATA(mongoplex:command)% in access logs, and RBAC on it.
        metadata_options: { receiving_namespaces: { untyped: ['mongoplex'] } },
      },
    },
    {
      // ext_proc is not terminal; the consumed bytes (always empty) end here.
      name: 'envoy.filters.network.echo',
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo' },
    },
  ];
}

function clientFilters(l: ClientListener, ingress: IngressMode, log: boolean): Json[] {
  switch (ingress.kind) {
    case 'ext_proc':
      return extProcFilters(l);
    case 'sidecar':
      return [tcpProxy(`mongoplex_${l.name}`, 'mongoplex_tcp', log)];
    case 'tcp_proxy':
      return [tcpProxy(`mongodb_${l.name}`, 'mongodb_direct', log)];
  }
}

function downstreamTls(t: TlsFiles & { readonly requireClientCert?: boolean }): Json {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
      common_tls_context: commonTls(t),
      ...(t.requireClientCert ? { require_client_certificate: true } : {}),
    },
  };
}

/** A complete Envoy bootstrap (static resources only). */
export function buildBootstrap(o: BootstrapOptions): Json {
  const listeners: Json[] = [];
  const clusters: Json[] = [];
  const log = o.accessLog ?? false;
  const userTimeout = o.clientUserTimeoutMs ?? DEFAULT_CLIENT_USER_TIMEOUT_MS;
  if (o.ingress) {
    for (const l of o.listeners) {
      listeners.push({
        name: `mongodb_${l.name}`,
        address: socket(l),
        ...(userTimeout > 0 ? { socket_options: [{ description: 'TCP_USER_TIMEOUT: a client that stops acknowledging (never reads) is aborted', level: IPPROTO_TCP, name: TCP_USER_TIMEOUT, int_value: userTimeout }] } : {}),
        filter_chains: [{ filters: clientFilters(l, o.ingress, log), ...(o.clientTls ? { transport_socket: downstreamTls(o.clientTls) } : {}) }],
        // ext_proc has no upstream: the connection is logged when it closes, with the last
        // command mongoplex described (listen.grpcDynamicMetadata; "-" when it does not).
        ...(log && o.ingress.kind === 'ext_proc' ? { access_log: accessLog(`mongodb_${l.name}`, MONGO_FIELDS) } : {}),
      });
    }
    const ing = o.ingress;
    if (ing.kind === 'ext_proc') {
      const workerIndexes = Array.from({ length: ing.workers ?? 1 }, (_, i) => i);
      clusters.push(fixedCluster('mongoplex_ext_proc', ing.filterGrpc, {
        typed_extension_protocol_options: {
          'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
            '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
            explicit_http_config: { http2_protocol_options: { connection_keepalive: { interval: '30s', timeout: '10s' } } },
          },
        },
        // Many client connections share few HTTP/2 connections; each is one stream.
        circuit_breakers: { thresholds: [{ max_requests: 1_000_000, max_pending_requests: 1_000_000 }] },
        // gRPC over TLS negotiates HTTP/2 by ALPN; mongoplex's certificate is checked against the CA.
        ...(ing.filterTls ? { transport_socket: upstreamTls(ing.filterTls, 'host' in ing.filterGrpc && !isIP(ing.filterGrpc.host) ? ing.filterGrpc.host : undefined, ['h2']) } : {}),
      }, ing.filterAdmin, [
        ...workerIndexes.slice(1).map((i) => ({ target: workerEndpoint(ing.filterGrpc, i), readyz: ing.filterAdmin })),
        ...(ing.standby ? workerIndexes.map((i) => ({ target: workerEndpoint(ing.standby!.grpc, i), readyz: ing.standby!.admin })) : []),
      ]));
    } else if (ing.kind === 'sidecar') {
      clusters.push(fixedCluster('mongoplex_tcp', ing.filterTcp, { circuit_breakers: { thresholds: [{ max_connections: 1_000_000 }] } }, ing.filterAdmin));
    } else {
      clusters.push(fixedCluster('mongodb_direct', ing.upstream, { circuit_breakers: { thresholds: [{ max_connections: 1_000_000 }] } }));
    }
  }
  if (o.egress) {
    const e = o.egress;
    listeners.push({
      name: 'mongoplex_egress',
      address: socket(e),
      // mongoplex names the member it wants in a PROXY protocol v2 header; the listener filter
      // makes that the connection's destination, which the ORIGINAL_DST cluster dials.
      listener_filters: [{
        name: 'envoy.filters.listener.proxy_protocol',
        typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol' },
      }],
      filter_chains: [{ filters: [tcpProxy('mongoplex_egress', 'mongodb_members', log)] }],
    });
    clusters.push({
      name: 'mongodb_members',
      type: 'ORIGINAL_DST',
      lb_policy: 'CLUSTER_PROVIDED',
      connect_timeout: `${(e.connectTimeoutMs / 1000).toFixed(3)}s`,
      cleanup_interval: '60s',
      circuit_breakers: {
        thresholds: [{ max_connections: 1_000_000 }],
        per_host_thresholds: [{ max_connections: e.maxConnectionsPerMember }],
      },
      ...(e.tls ? { transport_socket: upstreamTls(e.tls === true ? {} : e.tls) } : {}),
    });
  }
  return {
    admin: { address: socket(o.admin) },
    static_resources: { listeners, clusters },
  };
}
