import { SECRET_SETTINGS, type Config } from '../config';
import type { TopologyMonitor } from '../topology/monitor';
import type { ServerSet } from '../topology/server-set';
import { Metrics } from '../telemetry/metrics';
import { ServerAddress } from '../upstream/address';
import type { PoolOptions } from '../upstream/pool';

/** One setting whose value differs between the running and the re-read configuration. */
export interface SettingChange {
  readonly setting: string;
  readonly from: unknown;
  readonly to: unknown;
}

export interface ReloadResult {
  /** Changed, and in effect now. */
  readonly applied: SettingChange[];
  /** Changed in the file, but the running process keeps the old value until it restarts. */
  readonly needsRestart: SettingChange[];
}

/** Upstream settings every pool reads when it needs them. */
const POOL_SETTINGS = ['maxPoolSize', 'minPoolSize', 'maxConnecting', 'maxIdleTimeMs', 'waitQueueTimeoutMs', 'maxWaitQueueSize', 'connectTimeoutMs'] as const;

/**
 * Settings that take effect without a restart, because their users read them from the running
 * configuration each time (or are told, for pools and the log level). `upstream.servers` only
 * in single mode: elsewhere the monitored deployment decides the servers.
 */
const LIVE: ReadonlySet<string> = new Set([
  ...POOL_SETTINGS.map((k) => `upstream.${k}`),
  'upstream.socketTimeoutMs', 'upstream.maxTimeGraceMs',
  'client.maxBufferedBytes', 'client.readTimeoutMs', 'client.maxPendingRequests', 'client.maxUnreadReplyBytes', 'client.idleTimeoutMs', 'client.lastErrorPinMs',
  'listen.maxClientConnections', 'listen.drainTimeoutMs',
  'readiness.requires', 'readiness.maxCheckoutWaitMs', 'readiness.saturatedForMs',
  'admin.maxPauseMs', 'log.level',
]);

/** Leaf settings (`section.key`, or a top-level `key`) of a configuration; arrays and maps are single values. */
function leaves(config: Config): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [section, values] of Object.entries(config)) {
    // A top-level setting (workers) is a leaf itself.
    if (values === null || typeof values !== 'object') {
      out.set(section, values);
      continue;
    }
    for (const [key, value] of Object.entries(values as Record<string, unknown>)) out.set(`${section}.${key}`, value);
  }
  return out;
}

/** The settings that differ, in the schema's order. */
export function diffConfig(running: Config, next: Config): SettingChange[] {
  const before = leaves(running);
  const changes: SettingChange[] = [];
  for (const [setting, to] of leaves(next)) {
    const from = before.get(setting);
    if (JSON.stringify(from) !== JSON.stringify(to)) changes.push({ setting, from, to });
  }
  return changes;
}

/** A secret's value never leaves the process: changes to it are reported without values. */
function shown(c: SettingChange): SettingChange {
  return SECRET_SETTINGS.has(c.setting) ? { setting: c.setting, from: c.from === null ? null : '(set)', to: c.to === null ? null : '(set)' } : c;
}

/** What a reload changes in the running engine (the Proxy is one). */
export interface Reloadable {
  readonly config: Config;
  readonly servers: Pick<ServerSet, 'reconfigure' | 'setServers'>;
  readonly monitor: Pick<TopologyMonitor, 'setServers'>;
  setLogLevel(level: string): void;
}

/**
 * Applies the live-changeable part of `next` to the running proxy: its configuration object
 * is updated in place (sessions, forwarders, readiness and the admin endpoint read from it),
 * the pools are resized, the server list followed (single mode), the log level set.
 */
export function applyReload(proxy: Reloadable, next: Config): ReloadResult {
  const running = proxy.config;
  const single = running.topology.mode === 'single';
  const applied: SettingChange[] = [];
  const needsRestart: SettingChange[] = [];
  for (const c of diffConfig(running, next)) {
    const live = LIVE.has(c.setting) || (c.setting === 'upstream.servers' && single);
    (live ? applied : needsRestart).push(shown(c));
  }
  for (const c of applied) {
    const [section, key] = c.setting.split('.') as [keyof Config, string];
    (running[section] as Record<string, unknown>)[key] = c.to;
  }
  const pool: Partial<Record<(typeof POOL_SETTINGS)[number], number>> = {};
  for (const k of POOL_SETTINGS) if (applied.some((c) => c.setting === `upstream.${k}`)) pool[k] = running.upstream[k];
  if (Object.keys(pool).length > 0) proxy.servers.reconfigure(pool as Partial<PoolOptions>);
  if (applied.some((c) => c.setting === 'upstream.servers')) {
    const servers = running.upstream.servers.map((s) => ServerAddress.parse(s));
    proxy.servers.setServers(servers);
    proxy.monitor.setServers(servers);
  }
  if (applied.some((c) => c.setting === 'log.level')) proxy.setLogLevel(running.log.level);
  Metrics.reloads.add(1, { result: applied.length + needsRestart.length === 0 ? 'unchanged' : 'applied' });
  return { applied, needsRestart };
}
