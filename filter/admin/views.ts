import type { Config } from '../config';
import type { UserPools } from '../auth/user-pools';
import type { CursorRoutes } from '../routing/cursor-routes';
import type { LastErrorPins } from '../routing/last-error-pin';
import type { SessionOwners } from '../routing/session-owners';
import type { TransactionRoutes } from '../routing/transaction-routes';
import type { ClientRoutes } from '../routing/client-routes';
import type { ByteBudget } from '../session/byte-budget';
import type { ClientInfo } from '../session/client-info';
import type { ClientSession } from '../session/client-session';
import type { PauseGate } from '../session/pause-gate';
import type { CommandStats } from '../traffic/command-stats';
import { Counter, Metrics, observeGauge } from '../telemetry/metrics';
import type { AddressMap } from '../topology/address-map';
import type { MemberType } from '../topology/member';
import type { TopologyMonitor } from '../topology/monitor';
import type { ServerSet } from '../topology/server-set';
import type { Mirror, MirrorStatus } from '../traffic/mirror';
import type { CaptureStatus, Recorder } from '../traffic/recorder';
import type { PoolStats } from '../upstream/pool';
import type { History } from './history';

/**
 * What the admin endpoint and the metrics show of the engine: /stats, /clients, /pools,
 * /servers, the status page's history, and the engine's gauges. Each is read from the engine's
 * parts when asked, never kept up to date on the message path.
 */

/** A live client session and what the engine keeps beside it. */
export interface ClientEntry {
  readonly info: ClientInfo;
  readonly routes: ClientRoutes;
}

/** The parts of the engine the views read (the Proxy has them). */
export interface Inspectable {
  readonly config: Config;
  readonly servers: ServerSet;
  readonly monitor: TopologyMonitor;
  readonly addresses: AddressMap | undefined;
  readonly userPools: UserPools | undefined;
  readonly sessionOwners: SessionOwners | undefined;
  readonly inputBudget: ByteBudget;
  readonly cursors: CursorRoutes;
  readonly transactions: TransactionRoutes;
  readonly lastErrorPins: LastErrorPins;
  readonly gate: PauseGate;
  readonly recorder: Recorder;
  readonly mirror: Mirror;
  readonly commandStats: CommandStats;
  readonly draining: boolean;
  readonly clientCount: number;
  clients(): Iterable<[ClientSession, ClientEntry]>;
}

/** One member of the monitored deployment, as `/stats` shows it. */
export interface MemberStats {
  readonly member: string;
  readonly type: MemberType;
  readonly rttMs: number | undefined;
  readonly error: string | undefined;
  readonly proxyAddress: string | undefined;
}

/** One client connection as /clients shows it. */
export interface ClientStatus {
  readonly id: number;
  readonly remote: string;
  readonly appName: string | undefined;
  readonly driver: string | undefined;
  readonly connectedForMs: number;
  readonly state: string;
  /** Messages read and waiting behind the one being handled. */
  readonly queued: number;
  readonly command: string | undefined;
  readonly commandForMs: number | undefined;
  readonly forwarded: number;
  /** Replset mode: the member proxy address the client dialled. */
  readonly member: string | undefined;
  readonly loadBalanced: boolean;
  /** What ties this client to a server: a getLastError pin, and (load-balanced) open cursors and transactions. */
  readonly pins: { lastError: boolean; cursors: number; transactions: number };
}

/** One pool as /pools and /stats show it; `user`: a passthrough user's own pool (`db.user`). */
export type PoolListEntry = PoolStats & { maxPoolSize: number; oldestWaitMs: number; user?: string };

/** What `/stats` serves: the engine's state now, and every counter since start. */
export interface ProxyStats {
  readonly clients: number;
  readonly clientBufferedBytes: number;
  /** Claimed against client.maxTotalBufferedBytes (messages arriving count at their declared size). */
  readonly clientClaimedBytes: number;
  readonly pools: PoolListEntry[];
  readonly cursorRoutes: number;
  readonly transactionRoutes: number;
  /** Pooled connections held for a getLastError (at most a quarter of each pool). */
  readonly lastErrorPins: number;
  /** The monitored servers (in single mode, the configured ones). */
  readonly topology: MemberStats[];
  /** The traffic capture (running or last). */
  readonly capture: CaptureStatus;
  /** Read mirroring, when a shadow is configured. */
  readonly mirror: MirrorStatus | undefined;
  /** PAUSE state: whether commands are held, how many wait. */
  readonly pause: ReturnType<PauseGate['status']>;
  /** Shutting down or drained: new clients are refused. */
  readonly draining: boolean;
  /** The busiest (db, collection, command) and callsite rows. */
  readonly commandStats: ReturnType<CommandStats['top']>;
  /** Counter name → attribute set (`k=v,…`) → value. */
  readonly counters: Record<string, Record<string, number>>;
}

/** What `/stats` serves (see ProxyStats). */
export function proxyStats(p: Inspectable): ProxyStats {
  return {
    clients: p.clientCount,
    clientBufferedBytes: bufferedBytes(p),
    clientClaimedBytes: p.inputBudget.usedBytes,
    pools: poolList(p),
    cursorRoutes: p.cursors.size,
    transactionRoutes: p.transactions.size,
    lastErrorPins: p.lastErrorPins.size,
    topology: serverList(p),
    pause: p.gate.status(),
    draining: p.draining,
    commandStats: p.commandStats.top(10),
    capture: p.recorder.status(),
    mirror: p.config.mirror.target ? p.mirror.status() : undefined,
    counters: Object.fromEntries(Object.values(Metrics).filter((m) => m instanceof Counter).map((m) => [m.name, m.snapshot()])),
  };
}

/** The monitored servers (/servers): type, round trip, last error, the proxy address clients dial for it. */
export function serverList(p: Inspectable): MemberStats[] {
  return p.monitor.members().map((m) => ({ member: m.address.toString(), type: m.type, rttMs: m.rttMs, error: m.error, proxyAddress: p.addresses?.proxyAddressOf(m.address.toString()) }));
}

/** The pools (/pools): per server (and passthrough user), connections by state, waiters and the oldest wait. */
export function poolList(p: Inspectable, now = Date.now()): PoolListEntry[] {
  const shared = p.servers.all().map((pool) => ({ ...pool.stats(), maxPoolSize: pool.maxSize, oldestWaitMs: pool.oldestWaitMs(now) }));
  const users = p.userPools?.stats(now).map((u) => ({ ...u.pool, maxPoolSize: u.maxPoolSize, oldestWaitMs: u.oldestWaitMs, user: u.user })) ?? [];
  return [...shared, ...users];
}

/** The client connections (/clients), longest connected first, at most `limit`. */
export function clientList(p: Inspectable, limit: number, now = Date.now()): { total: number; clients: ClientStatus[] } {
  const clients: ClientStatus[] = [];
  for (const [session, { info, routes }] of p.clients()) {
    if (clients.length >= limit) break;
    const lb = routes.loadBalanced;
    clients.push({
      id: info.id, remote: info.remote, appName: info.appName, driver: info.driver,
      connectedForMs: now - info.connectedAt, state: session.currentState, queued: session.queued,
      command: info.command, commandForMs: info.command === undefined ? undefined : now - info.commandSince, forwarded: info.forwarded,
      member: routes.member?.toString(), loadBalanced: lb !== undefined,
      pins: { lastError: routes.lastError.pinned, cursors: lb?.openCursors ?? 0, transactions: lb?.openTransactions ?? 0 },
    });
  }
  return { total: p.clientCount, clients };
}

/** The janitor's once-a-second sample for the status page's history (rates since the previous sample). */
export function historySampler(p: Inspectable, history: History): (now: number) => void {
  let lastSampleAt = Date.now();
  return (now) => {
    const pools = poolList(p, now);
    const window = p.commandStats.window.take();
    const seconds = Math.max(0.001, (now - lastSampleAt) / 1000);
    lastSampleAt = now;
    history.add({
      t: now, clients: p.clientCount,
      upstream: pools.reduce((n, e) => n + e.total, 0), inUse: pools.reduce((n, e) => n + e.inUse, 0), maxPool: pools.reduce((n, e) => n + e.maxPoolSize, 0),
      waiting: pools.reduce((n, e) => n + e.waiting, 0), oldestWaitMs: pools.reduce((n, e) => Math.max(n, e.oldestWaitMs), 0),
      commandsPerSecond: Math.round(window.count / seconds), p50Ms: window.p50Ms, p99Ms: window.p99Ms,
    });
  };
}

/** Bytes held for all clients, not yet processed. */
function bufferedBytes(p: Inspectable): number {
  let n = 0;
  for (const [s] of p.clients()) n += s.bufferedBytes;
  return n;
}

/** Registers the engine's gauges (read at collection time); returns what unregisters them. */
export function engineGauges(p: Inspectable): Array<() => void> {
  const offs: Array<() => void> = [];
  const gauge = (...a: Parameters<typeof observeGauge>): void => void offs.push(observeGauge(...a));
  gauge('mongoplex.client.connections', 'Open client connections', () => [[p.clientCount]]);
  gauge('mongoplex.client.buffered_bytes', 'Bytes held for clients, not yet processed', () => [[bufferedBytes(p)]]);
  gauge('mongoplex.client.claimed_bytes', 'Client input claimed against client.maxTotalBufferedBytes (messages arriving count at their declared size)', () => [[p.inputBudget.usedBytes]]);
  gauge('mongoplex.paused_commands.waiting', 'Commands held by a pause now', () => [[p.gate.waiting]]);
  gauge('mongoplex.cursor_routes', 'Cursor routes remembered', () => [[p.cursors.size]]);
  gauge('mongoplex.transaction_routes', 'Transactions pinned to a server', () => [[p.transactions.size]]);
  gauge('mongoplex.last_error_pins', 'Pooled connections held for a getLastError after an unacknowledged write', () => [[p.lastErrorPins.size]]);
  gauge('mongoplex.pool.connections', 'Pooled upstream connections by state', () =>
    p.servers.all().flatMap((pool) => {
      const s = pool.stats();
      return [
        [s.idle, { server: s.address, state: 'idle' }],
        [s.inUse, { server: s.address, state: 'in_use' }],
        [s.connecting, { server: s.address, state: 'connecting' }],
      ] as Array<[number, Record<string, string>]>;
    }));
  if (p.sessionOwners) {
    const owners = p.sessionOwners;
    gauge('mongoplex.auth.session_owners', 'Logical sessions whose owning user the proxy remembers (auth.maxSessions)', () => [[owners.size]]);
  }
  if (p.userPools) {
    const userPools = p.userPools;
    gauge('mongoplex.auth.passthrough.users', "Users with upstream pools of their own (auth.mode passthrough)", () => [[userPools.size]]);
    gauge('mongoplex.auth.passthrough.connections', "Upstream connections of all users' pools, against auth.passthrough.maxConnections", () => [[userPools.budget.inUse]]);
  }
  gauge('mongoplex.pool.waiting', 'Requests waiting for a pooled connection', () =>
    p.servers.all().map((pool) => [pool.stats().waiting, { server: pool.address.toString() }]));
return offs;
}
