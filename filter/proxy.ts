import type { Config } from './config';
import type { Logger } from './log';
import { Janitor } from './janitor';
import { CursorRoutes } from './routing/cursor-routes';
import { Router, type Selection } from './routing/router';
import { TransactionRoutes } from './routing/transaction-routes';
import { ClientSession } from './session/client-session';
import type { ClientTransport } from './session/transport';
import { observeGauge, Metrics } from './telemetry/metrics';
import { ServerSet } from './topology/server-set';
import type { UpstreamConnection } from './upstream/connection';
import { ServerAddress } from './upstream/address';
import { TopologyMonitor } from './topology/monitor';
import { AddressMap } from './topology/address-map';
import { MongosPresentation, ReplicaSetPresentation, type Presentation } from './topology/presentation';

/**
 * The proxy engine shared by every ingress: owns the upstream pools, the routing state and
 * the live client sessions. Ingresses hand it transports; it hands back sessions.
 */
export class Proxy {
  readonly servers: ServerSet;
  readonly cursors: CursorRoutes;
  readonly router: Router;
  readonly transactions: TransactionRoutes;
  /** What clients of a plain listener are told (a mongos). */
  readonly presentation: Presentation;
  /** replset mode: what clients of a member's proxy address are told. */
  readonly memberPresentation: Presentation | undefined;
  /** Replset mode: the monitored deployment and the members' proxy addresses. */
  readonly monitor: TopologyMonitor | undefined;
  readonly addresses: AddressMap | undefined;
  private readonly sessions = new Set<ClientSession>();
  private readonly janitor: Janitor;

  constructor(readonly config: Config, readonly log: Logger) {
    const up = config.upstream;
    const via = up.via ? ServerAddress.parse(up.via) : undefined;
    this.servers = new ServerSet(up.servers, { ...up, via, maxMessageSizeBytes: 48_000_000 });
    this.cursors = new CursorRoutes(config.cursors.maxRoutes, config.cursors.idleTtlMs);
    this.transactions = new TransactionRoutes(config.cursors.maxRoutes, 2 * 60_000);
    this.servers.eachPool((pool) => {
      pool.on('connectionClosed', (conn: UpstreamConnection, reason: string) => {
        this.cursors.forgetConnection(conn);
        log.debug({ server: pool.address.toString(), connection: conn.id, reason }, 'upstream connection closed');
      });
      pool.on('connectFailed', (err: Error) => log.warn({ server: pool.address.toString(), err: err.message }, 'upstream connect failed'));
    });
    let selection: Selection | undefined;
    if (config.topology.mode !== 'single') {
      const t = config.topology;
      const monitor = new TopologyMonitor(up.servers.map((s) => ServerAddress.parse(s)), {
        heartbeatMs: t.heartbeatMs,
        connectTimeoutMs: up.connectTimeoutMs,
        appName: `${up.appName}-monitor`,
        compressors: [],
        maxMessageSizeBytes: 48_000_000,
        via,
      }, log);
      monitor.on('memberAdded', (a: ServerAddress) => this.servers.add(a));
      monitor.on('memberRemoved', (a: ServerAddress) => this.servers.remove(a));
      this.servers.followPrimary(() => monitor.primary()?.address);
      this.monitor = monitor;
      // The mode is chosen per listener: member addresses get the replica-set view, any other
      // listener the mongos view with the proxy selecting servers.
      selection = { monitor, heartbeatMs: t.heartbeatMs };
      this.presentation = new MongosPresentation(this.servers, monitor);
      if (t.mode === 'replset') {
        this.addresses = new AddressMap(t.advertiseHost, t.memberPorts[0], t.memberPorts[1], t.advertise);
        this.memberPresentation = new ReplicaSetPresentation(monitor, this.addresses);
      }
    } else {
      this.presentation = new MongosPresentation(this.servers);
    }
    this.router = new Router(this.servers, this.cursors, this.transactions, selection);
    this.janitor = new Janitor(1000, (task, err) => log.error({ task, err }, 'janitor task failed'));
    this.janitor.every('pools', (now) => this.servers.sweep(now));
    this.janitor.every('cursor-routes', (now) => this.cursors.sweep(now));
    this.janitor.every('transaction-routes', (now) => this.transactions.sweep(now));
    this.janitor.every('idle-clients', (now) => this.closeIdleClients(now));
    observeGauge('mongoplex.client.connections', 'Open client connections', () => [[this.sessions.size]]);
    observeGauge('mongoplex.client.buffered_bytes', 'Bytes held for clients, not yet processed', () => [[this.bufferedBytes()]]);
    observeGauge('mongoplex.cursor_routes', 'Cursor routes remembered', () => [[this.cursors.size]]);
    observeGauge('mongoplex.transaction_routes', 'Transactions pinned to a server', () => [[this.transactions.size]]);
    observeGauge('mongoplex.pool.connections', 'Pooled upstream connections by state', () =>
      this.servers.all().flatMap((p) => {
        const s = p.stats();
        return [
          [s.idle, { server: s.address, state: 'idle' }],
          [s.inUse, { server: s.address, state: 'in_use' }],
          [s.connecting, { server: s.address, state: 'connecting' }],
        ] as Array<[number, Record<string, string>]>;
      }));
    observeGauge('mongoplex.pool.waiting', 'Requests waiting for a pooled connection', () =>
      this.servers.all().map((p) => [p.stats().waiting, { server: p.address.toString() }]));
  }

  start(): void {
    this.monitor?.start();
    this.janitor.start();
    this.janitor.tick();
  }

  get clientCount(): number {
    return this.sessions.size;
  }

  /** A new client connection, or undefined when the client limit is reached (the caller closes it). */
  openSession(transport: ClientTransport, member?: ServerAddress): ClientSession | undefined {
    if (this.sessions.size >= this.config.listen.maxClientConnections) {
      Metrics.clientConnectionsRejected.add(1, { reason: 'max_client_connections' });
      this.log.warn({ remote: transport.remote, limit: this.config.listen.maxClientConnections }, 'refusing client connection: limit reached');
      return undefined;
    }
    const session = new ClientSession(transport, {
      config: this.config, router: this.router, cursors: this.cursors, servers: this.servers,
      presentation: member ? (this.memberPresentation ?? this.presentation) : this.presentation, log: this.log,
    }, member);
    this.sessions.add(session);
    Metrics.clientConnectionsAccepted.add(1);
    return session;
  }

  endSession(session: ClientSession, reason: string): void {
    if (!this.sessions.delete(session)) return;
    session.transportClosed(reason);
  }

  private bufferedBytes(): number {
    let n = 0;
    for (const s of this.sessions) n += s.bufferedBytes;
    return n;
  }

  private closeIdleClients(now: number): void {
    const idle = this.config.client.idleTimeoutMs;
    if (idle <= 0) return;
    for (const s of this.sessions) if (now - s.lastActivityAt > idle) s.close('idle_timeout');
  }

  stats(): Record<string, unknown> {
    return {
      clients: this.sessions.size,
      clientBufferedBytes: this.bufferedBytes(),
      pools: this.servers.all().map((p) => p.stats()),
      cursorRoutes: this.cursors.size,
      transactionRoutes: this.transactions.size,
      ...(this.monitor ? {
        topology: this.monitor.members().map((m) => ({ member: m.address.toString(), type: m.type, rttMs: m.rttMs, error: m.error, proxyAddress: this.addresses?.proxyAddressOf(m.address.toString()) })),
      } : {}),
      counters: Object.fromEntries(Object.values(Metrics).filter((m) => 'snapshot' in m).map((m) => [m.name, (m as { snapshot(): Record<string, number> }).snapshot()])),
    };
  }

  async stop(): Promise<void> {
    this.janitor.stop();
    this.monitor?.stop();
    for (const s of [...this.sessions]) s.close('shutdown');
    this.sessions.clear();
    this.servers.close();
  }
}
