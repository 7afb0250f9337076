import { availableParallelism } from 'node:os';
import { ConfigError, listenerAuthModes, type Config } from '../config';
import { parseGrpcAddress } from '../ingress/exposure';

/** How many workers a configuration asks for, and why `auto` came to less than the cores. */
export interface WorkerPlan {
  readonly count: number;
  /** Set when `workers: auto` was held back (logged at start). */
  readonly limitedBy?: string;
}

/**
 * Why this configuration cannot run in several processes, if it cannot. A driver spreads one
 * session's commands, and a cursor's getMores, over several connections, which may land in
 * different workers, so whatever a command needs to know from an earlier one must be the same
 * in every process. Topology modes other than single route cursors and transactions through
 * maps each process keeps for itself; client authentication (auth.mode proxy and passthrough)
 * remembers which user owns each logical session and cursor per process (another worker would
 * refuse the owner's getMore, or let another user into the session).
 */
function needsOneProcess(config: Config): string | undefined {
  if (config.topology.mode !== 'single') return `topology.mode ${config.topology.mode} routes cursors and transactions through per-process maps`;
  const authenticated = Object.entries(listenerAuthModes(config)).filter(([, m]) => m !== 'none');
  if (authenticated.length > 0) {
    const modes = [...new Set(authenticated.map(([, m]) => m))].join(' and ');
    return `auth.mode ${modes} (${authenticated.map(([l]) => l).join(', ')} listeners) remembers session and cursor owners per process`;
  }
  return undefined;
}

/** `workers` resolved: a number as given (ConfigError when the configuration cannot have it), or auto as far as it can go. */
export function planWorkers(config: Config, cores = availableParallelism()): WorkerPlan {
  const oneProcess = needsOneProcess(config);
  const limit = mostWorkers(config);
  let plan: WorkerPlan;
  if (config.workers !== 'auto') {
    const n = config.workers;
    if (n > 1 && oneProcess) throw new ConfigError(`invalid configuration:\n  workers: ${n} needs one process: ${oneProcess}`);
    plan = { count: n };
  } else if (oneProcess) plan = cores > 1 ? { count: 1, limitedBy: oneProcess } : { count: 1 };
  else if (limit.count < cores) plan = { count: limit.count, limitedBy: limit.why };
  else plan = { count: cores };
  refuseSplit(config, plan.count);
  return plan;
}

/** Worker `index`'s part of `total` split `count` ways: the parts differ by at most one and add up to `total`. */
export function share(total: number, index: number, count: number): number {
  return Math.floor(total / count) + (index < total % count ? 1 : 0);
}

/**
 * Where worker `index` serves ext_proc, given where worker 0 does (listen.grpc): the port +
 * index, or the socket path + `.index`. Port 0 stays 0: the workers share one free port.
 */
export function workerEndpoint<T extends { readonly path: string } | { readonly host: string; readonly port: number }>(first: T, index: number): T {
  if (index === 0) return first;
  if ('path' in first) return { ...first, path: `${first.path}.${index}` };
  return first.port === 0 ? first : { ...first, port: first.port + index };
}

/** workerEndpoint for listen.grpc's form (host:port or unix:/path). */
export function workerGrpcAddress(address: string, index: number): string {
  const where = parseGrpcAddress(address);
  if (where.kind === 'unix') return `unix:${workerEndpoint(where, index).path}`;
  const { host, port } = workerEndpoint(where, index);
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * The most workers the split limits allow, and which limit says so: each worker needs one
 * pooled connection, and a client input budget that holds one largest message.
 */
function mostWorkers(config: Config): { count: number; why: string } {
  const byPool = config.upstream.maxPoolSize;
  const byInput = Math.floor(config.client.maxTotalBufferedBytes / config.client.maxMessageSizeBytes);
  return byInput < byPool
    ? { count: byInput, why: `client.maxTotalBufferedBytes ${config.client.maxTotalBufferedBytes}, which the workers split, each holding at least client.maxMessageSizeBytes ${config.client.maxMessageSizeBytes}` }
    : { count: byPool, why: `upstream.maxPoolSize ${byPool}, which the workers split` };
}

/** ConfigError when `count` workers cannot split this configuration (at start, and on every worker's reload). */
function refuseSplit(config: Config, count: number): void {
  const refuse = (why: string): never => {
    throw new ConfigError(`invalid configuration:\n  workers: ${why}`);
  };
  if (config.upstream.maxPoolSize < count) refuse(`${count} is more than upstream.maxPoolSize (${config.upstream.maxPoolSize}), which the workers split: each needs at least one connection`);
  if (Math.floor(config.client.maxTotalBufferedBytes / count) < config.client.maxMessageSizeBytes) {
    refuse(`${count} workers would each hold less than client.maxMessageSizeBytes (${config.client.maxMessageSizeBytes}) of client.maxTotalBufferedBytes (${config.client.maxTotalBufferedBytes}), which they split: raise it or lower either`);
  }
  const grpc = config.listen.grpc !== null ? parseGrpcAddress(config.listen.grpc) : undefined;
  if (grpc?.kind === 'tcp' && grpc.port + count - 1 > 65535) refuse(`${count} workers serve ext_proc at listen.grpc's port ${grpc.port} and the ${count - 1} above it, past 65535`);
}

/**
 * Worker `index` of `count`: its share of every upstream limit and of every process-wide
 * bound (clients, client input, wait queues, routing maps, capture and mirror queues: the
 * shares add up to the configured values, so the total stays the cap whatever the number of
 * workers; a share never goes below the setting's own minimum), its ext_proc address, and an
 * admin endpoint of its own on a loopback port the primary asks (the primary serves the
 * configured one).
 */
export function workerConfig(config: Config, index: number, count: number): Config {
  refuseSplit(config, count);
  const atLeast = (least: number, total: number): number => Math.max(least, share(total, index, count));
  const atLeastOne = (total: number): number => atLeast(1, total);
  const worker: Config = structuredClone(config);
  worker.workers = count;
  worker.upstream.maxPoolSize = share(config.upstream.maxPoolSize, index, count);
  worker.upstream.minPoolSize = Math.min(share(config.upstream.minPoolSize, index, count), worker.upstream.maxPoolSize);
  worker.upstream.maxConnecting = atLeastOne(config.upstream.maxConnecting);
  worker.upstream.maxWaitQueueSize = atLeastOne(config.upstream.maxWaitQueueSize);
  worker.listen.maxClientConnections = atLeastOne(config.listen.maxClientConnections);
  // refuseSplit checked that each share holds one largest message.
  worker.client.maxTotalBufferedBytes = share(config.client.maxTotalBufferedBytes, index, count);
  worker.cursors.maxRoutes = atLeastOne(config.cursors.maxRoutes);
  worker.transactions.maxPins = atLeastOne(config.transactions.maxPins);
  worker.auth.maxSessions = atLeastOne(config.auth.maxSessions);
  worker.capture.queueBytes = atLeast(1024, config.capture.queueBytes);
  worker.capture.maxTotalBytes = atLeast(64 * 1024, config.capture.maxTotalBytes);
  worker.mirror.poolSize = atLeastOne(config.mirror.poolSize);
  worker.mirror.maxQueue = atLeastOne(config.mirror.maxQueue);
  worker.mirror.queueBytes = atLeast(1024, config.mirror.queueBytes);
  if (config.listen.grpc !== null) worker.listen.grpc = workerGrpcAddress(config.listen.grpc, index);
  if (config.admin.port !== null) worker.admin = { ...config.admin, host: '127.0.0.1', port: 0 };
  if (config.capture.dir !== null) worker.capture.dir = `${config.capture.dir}/worker-${index}`;
  return worker;
}
