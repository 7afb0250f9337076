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
 * Why this configuration cannot run in several processes, if it cannot: topology modes other
 * than single route cursors, transactions and replica-set views through maps each process
 * keeps for itself, and auth.mode proxy remembers which user owns a logical session per process
 * (another worker would let another user into it).
 */
function needsOneProcess(config: Config): string | undefined {
  if (config.topology.mode !== 'single') return `topology.mode ${config.topology.mode} routes cursors and transactions through per-process maps`;
  const proxied = Object.entries(listenerAuthModes(config)).filter(([, m]) => m === 'proxy').map(([l]) => l);
  if (proxied.length > 0) return `auth.mode proxy (${proxied.join(', ')} listeners) remembers session owners per process`;
  return undefined;
}

/** The smallest upstream limit that is split among workers: each worker needs one connection of it. */
function smallestSplitLimit(config: Config): { setting: string; value: number } {
  const limits = [{ setting: 'upstream.maxPoolSize', value: config.upstream.maxPoolSize }];
  if (Object.values(listenerAuthModes(config)).includes('passthrough')) limits.push({ setting: 'auth.passthrough.maxConnections', value: config.auth.passthrough.maxConnections });
  return limits.reduce((a, b) => (b.value < a.value ? b : a));
}

/** `workers` resolved: a number as given (ConfigError when the configuration cannot have it), or auto as far as it can go. */
export function planWorkers(config: Config, cores = availableParallelism()): WorkerPlan {
  const oneProcess = needsOneProcess(config);
  const limit = smallestSplitLimit(config);
  if (config.workers !== 'auto') {
    const n = config.workers;
    if (n > 1 && oneProcess) throw new ConfigError(`invalid configuration:\n  workers: ${n} needs one process: ${oneProcess}`);
    if (n > limit.value) throw new ConfigError(`invalid configuration:\n  workers: ${n} is more than ${limit.setting} (${limit.value}), which the workers split: each needs at least one connection`);
    return { count: n };
  }
  if (oneProcess) return cores > 1 ? { count: 1, limitedBy: oneProcess } : { count: 1 };
  if (limit.value < cores) return { count: limit.value, limitedBy: `${limit.setting} ${limit.value}, which the workers split` };
  return { count: cores };
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
 * Worker `index` of `count`: its share of every upstream limit (the shares add up to the
 * configured values, so the total stays the cap), its ext_proc address, and an admin endpoint
 * of its own on a loopback port the primary asks (the primary serves the configured one).
 */
export function workerConfig(config: Config, index: number, count: number): Config {
  const atLeastOne = (total: number): number => Math.max(1, share(total, index, count));
  const worker: Config = structuredClone(config);
  worker.workers = count;
  worker.upstream.maxPoolSize = share(config.upstream.maxPoolSize, index, count);
  worker.upstream.minPoolSize = Math.min(share(config.upstream.minPoolSize, index, count), worker.upstream.maxPoolSize);
  worker.upstream.maxConnecting = atLeastOne(config.upstream.maxConnecting);
  worker.auth.passthrough.maxConnections = share(config.auth.passthrough.maxConnections, index, count);
  worker.auth.passthrough.maxPoolSizePerUser = Math.min(config.auth.passthrough.maxPoolSizePerUser, worker.auth.passthrough.maxConnections);
  worker.mirror.poolSize = atLeastOne(config.mirror.poolSize);
  if (config.listen.grpc !== null) worker.listen.grpc = workerGrpcAddress(config.listen.grpc, index);
  if (config.admin.port !== null) worker.admin = { ...config.admin, host: '127.0.0.1', port: 0 };
  if (config.capture.dir !== null) worker.capture.dir = `${config.capture.dir}/worker-${index}`;
  return worker;
}
