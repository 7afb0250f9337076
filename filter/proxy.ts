import type { Config } from './config';
import type { Logger } from './log';
import { Janitor } from './janitor';
import { CursorRoutes } from './routing/cursor-routes';
import { Router } from './routing/router';
import { ClientSession } from './session/client-session';
import type { ClientTransport } from './session/transport';
import { observeGauge, Metrics } from './telemetry/metrics';
import { ServerSet } from './topology/server-set';
import type { UpstreamConnection } from './upstream/connection';
import { ServerAddress } from './upstream/address';

/**
 * The proxy engine shared by every ingress: owns the upstream pools, the routing state and
 * the live client sessions. Ingresses hand it transports; it hands back sessions.
 */
export class Proxy {
  readonly servers: ServerSet;
  readonly cursors: CursorRoutes;
  readonly router: Router;
  private readonly sessions = new Set<ClientSession>();
  private readonly janitor: Janitor;

  constructor(readonly config: Config, readonly log: Logger) {
    const up = config.upstream;
    this.servers = new ServerSet(up.servers, {
      ...up,
      via: up.via ? ServerAddress.parse(up.via) : undefined,
      maxMessageSizeBytes: 48_000_000,
    });
    this.cursors = new CursorRoutes(config.cursors.maxRoutes, config.cursors.idleTtlMs);
    this.router = new Router(this.servers, this.cursors);
    for (const pool of this.servers.all()) {
      pool.on('connectionClosed', (conn: UpstreamConnection, reason: string) => {
        this.cursors.forgetConnection(conn);
        log.debug({ server: pool.address.toString(), connection: conn.id, reason }, 'upstream connection closed');
      });
      pool.on('connectFailed', (err: Error) => log.warn({ server: pool.address.toString(), err: err.message }, 'upstream connect failed'));
    }
    this.janitor = new Janitor(1000, (task, err) => log.error({ task, err }, 'janitor task failed'));
    this.janitor.every('pools', (now) => this.servers.sweep(now));
    this.janitor.every('cursor-routes', (now) => this.cursors.sweep(now));
    this.janitor.every('idle-clients', (now) => this.closeIdleClients(now));
    observeGauge('mongoplex.client.connections', 'Open client connections', () => [[this.sessions.size]]);
    observeGauge('mongoplex.client.buffered_bytes', 'Bytes held for clients, not yet processed', () => [[this.bufferedBytes()]]);
    observeGauge('mongoplex.cursor_routes', 'Cursor routes remembered', () => [[this.cursors.size]]);
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
    this.janitor.start();
    this.janitor.tick();
  }

  get clientCount(): number {
    return this.sessions.size;
  }

  /** A new client connection, or undefined when the client limit is reached (the caller closes it). */
  openSession(transport: ClientTransport): ClientSession | undefined {
    if (this.sessions.size >= this.config.listen.maxClientConnections) {
      Metrics.clientConnectionsRejected.add(1, { reason: 'max_client_connections' });
      this.log.warn({ remote: transport.remote, limit: this.config.listen.maxClientConnections }, 'refusing client connection: limit reached');
      return undefined;
    }
    const session = new ClientSession(transport, { config: this.config, router: this.router, cursors: this.cursors, servers: this.servers, log: this.log });
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
      counters: Object.fromEntries(Object.values(Metrics).filter((m) => 'snapshot' in m).map((m) => [m.name, (m as { snapshot(): Record<string, number> }).snapshot()])),
    };
  }

  async stop(): Promise<void> {
    this.janitor.stop();
    for (const s of [...this.sessions]) s.close('shutdown');
    this.sessions.clear();
    this.servers.close();
  }
}
