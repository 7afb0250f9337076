import { ConfigError, listenerAuthModes, type AuthMode, type Config, type ListenerKind } from './config';
import type { Logger } from './log';
import { Janitor } from './janitor';
import { Readiness } from './admin/readiness';
import { ClientRoutes } from './routing/client-routes';
import { LastErrorPins, lastErrorPinsPerServer } from './routing/last-error-pin';
import { CursorRoutes } from './routing/cursor-routes';
import { ReplyObserver } from './routing/reply-observer';
import { Router, type Selection } from './routing/router';
import { TransactionRoutes } from './routing/transaction-routes';
import { SessionOwners } from './routing/session-owners';
import { ByteBudget } from './session/byte-budget';
import { MemoryReclaimer } from './session/memory-reclaimer';
import { ClientSession } from './session/client-session';
import { CommandHandler, type HandlerDeps } from './session/command-handler';
import type { ClientTransport } from './session/transport';
import { Metrics } from './telemetry/metrics';
import { AddressMap } from './topology/address-map';
import { TopologyMonitor } from './topology/monitor';
import { ReplicaSetPresentation, SingleAddressPresentation, type Presentation } from './topology/presentation';
import { ServerSet } from './topology/server-set';
import { ServerAddress } from './upstream/address';
import { UpstreamAuthError, UpstreamConnection, type ConnectOptions } from './upstream/connection';
import { Mirror } from './traffic/mirror';
import { Recorder } from './traffic/recorder';
import { CommandStats } from './traffic/command-stats';
import { CommandLog } from './traffic/command-log';
import { PauseGate } from './session/pause-gate';
import { ShutdownNotice } from './session/shutdown-notice';
import { upstreamCredentials } from './upstream/login';
import { upstreamTls } from './upstream/tls';
import { loadUsers, type UserSource } from './auth/users';
import { UpstreamUserQuery } from './auth/user-query';
import { UserPools } from './auth/user-pools';
import { ClientInfo } from './session/client-info';
import { History } from './admin/history';
import { engineGauges, historySampler, type ClientEntry, type Inspectable } from './admin/views';

/**
 * The proxy engine shared by every ingress: owns the upstream pools, the routing state and
 * the live client sessions. Ingresses hand it transports; it hands back sessions.
 */
export class Proxy implements Inspectable {
  readonly servers: ServerSet;
  readonly cursors: CursorRoutes;
  readonly router: Router;
  readonly transactions: TransactionRoutes;
  readonly lastErrorPins: LastErrorPins;
  private readonly observer: ReplyObserver;
  /** What clients of a plain listener are told (a mongos, or a standalone over a standalone). */
  readonly presentation: Presentation;
  /** replset mode: what clients of a member's proxy address are told. */
  readonly memberPresentation: Presentation | undefined;
  /** The upstream servers' health, one heartbeat connection each; in mongos and replset modes, the whole deployment. */
  readonly monitor: TopologyMonitor;
  /** Replset mode: the members' proxy addresses. */
  readonly addresses: AddressMap | undefined;
  /** What /readyz answers. */
  readonly readiness: Readiness;
  /** Live client sessions, with what inspection shows about each. */
  private readonly sessions = new Map<ClientSession, ClientEntry & { readonly log: Logger }>();
  /** Child loggers made at start (a reload's log level reaches them too). */
  private readonly componentLogs: Logger[] = [];
  /** Client input held across all sessions (client.maxTotalBufferedBytes). */
  readonly inputBudget: ByteBudget;
  private readonly janitor: Janitor;
  private nextClientId = 1;
  /** Handler dependencies per kind of listener (handlerDeps). */
  private readonly sharedDeps = new Map<string, HandlerDeps>();
  private drainingNow = false;
  /** /readyz fails (a drain is announced) while clients are still accepted. */
  private unready = false;
  /** Records forwarded commands to capture files while a capture runs. */
  readonly recorder: Recorder;
  /** Copies a fraction of reads to a shadow server (mirror.target). */
  readonly mirror: Mirror;
  private readonly taps: readonly [Recorder, Mirror, CommandStats, CommandLog];
  /** Per-db/collection/command and per-callsite statistics. */
  readonly commandStats: CommandStats;
  /** The access log and the slow-command log. */
  readonly commandLog: CommandLog;
  /** PAUSE/RESUME: holds commands before they are forwarded. */
  readonly gate: PauseGate;
  private readonly shutdown = new ShutdownNotice();
  /** auth.mode proxy and passthrough: where clients' SCRAM secrets come from (the users file or the auth query). */
  private readonly users: UserSource | undefined;
  /** Each kind of listener's auth mode (auth.listeners, else auth.mode). */
  private readonly authModes: Record<ListenerKind, AuthMode>;
  /** auth.mode proxy and passthrough: which user each logical session belongs to. */
  readonly sessionOwners: SessionOwners | undefined;
  /** auth.mode passthrough: each user's own upstream pools, within one connection budget. */
  readonly userPools: UserPools | undefined;
  /** With upstream.auth: how the start-up login check connects (the pools' options). */
  private readonly loginCheck: ConnectOptions | undefined;
  /** The last ten minutes, one sample a second (the status page). */
  readonly history = new History(600);
  /** Unregisters this engine's gauges (stop). */
  private readonly gauges: Array<() => void>;

  constructor(readonly config: Config, readonly log: Logger) {
    const up = config.upstream;
    const via = up.via ? ServerAddress.parse(up.via) : undefined;
    const credentials = upstreamCredentials(up.auth);
    const tls = upstreamTls(up.tls);
    if (credentials) this.loginCheck = { connectTimeoutMs: up.connectTimeoutMs, appName: up.appName, compressors: [], via, credentials, tls };
    this.servers = new ServerSet(up.servers, { ...up, via, credentials, tls });
    const authLog = log.child({ component: 'auth' });
    this.authModes = listenerAuthModes(config);
    const modes = new Set(Object.values(this.authModes));
    const someLogIn = modes.has('proxy') || modes.has('passthrough');
    const query = someLogIn ? this.userQuery(authLog) : undefined;
    this.users = query ?? (modes.has('proxy') ? loadUsers(config.auth.usersFile!, authLog) : undefined);
    if (modes.has('passthrough')) this.userPools = new UserPools(this.servers, config.auth.passthrough, (db, user) => query?.forget(db, user), authLog);
    this.inputBudget = new ByteBudget(config.client.maxTotalBufferedBytes);
    this.cursors = new CursorRoutes(config.cursors.maxRoutes, config.cursors.idleTtlMs);
    this.transactions = new TransactionRoutes(config.transactions.maxPins, config.transactions.idleTimeoutMs);
    // getLastError pins may hold at most a quarter of a pool, and give way to any waiting request.
    this.lastErrorPins = new LastErrorPins(() => lastErrorPinsPerServer(up.maxPoolSize), config.client.lastErrorPinMs);
    this.servers.eachPool((pool) => {
      const server = pool.address.toString();
      pool.on('connectionCreated', (conn) => log.debug({ server, connection: conn.id }, 'upstream connection opened'));
      pool.on('connectionClosed', (conn, reason, detail) => {
        this.cursors.forgetConnection(conn);
        log.debug({ server, connection: conn.id, reason, detail }, 'upstream connection closed');
      });
      pool.on('connectFailed', (err) => log.warn({ server, err: err.message }, 'upstream connect failed'));
      pool.on('exhausted', () => this.lastErrorPins.reclaimOldest(pool, 'pool_waiting'));
    });
    // Every mode monitors its servers over their own connections (readiness needs it); mongos
    // and replset modes also follow the members a replica set reports and route by them.
    const t = config.topology;
    const monitored = t.mode !== 'single';
    const monitor = new TopologyMonitor(up.servers.map((s) => ServerAddress.parse(s)), {
      heartbeatMs: t.heartbeatMs,
      connectTimeoutMs: up.connectTimeoutMs,
      appName: `${up.appName}-monitor`,
      compressors: [],
      via,
      credentials,
      tls,
      discover: monitored,
    });
    this.monitor = monitor;
    let selection: Selection | undefined;
    if (monitored) {
      monitor.on('memberAdded', (a) => this.servers.add(a));
      monitor.on('memberRemoved', (a) => this.servers.remove(a));
      monitor.on('primaryChanged', (primary, previous) => {
        Metrics.primaryChanges.add(1);
        log.info({ primary: primary?.toString() ?? null, previous: previous?.toString() ?? null }, 'primary changed');
      });
      this.servers.followPrimary(() => monitor.primary()?.address);
      // The mode is chosen per listener: member addresses get the replica-set view, any other
      // listener the mongos view with the proxy selecting servers.
      selection = { monitor, heartbeatMs: t.heartbeatMs };
      if (t.mode === 'replset') {
        this.addresses = new AddressMap(t.advertiseHost, t.memberPorts[0], t.memberPorts[1], t.advertise);
        this.memberPresentation = new ReplicaSetPresentation(monitor, this.addresses);
      }
    }
    this.readiness = new Readiness(config.readiness, () => monitor.members(), () => this.servers.all(), () => this.unready || this.draining);
    const component = (name: string): Logger => {
      const child = log.child({ component: name });
      this.componentLogs.push(child);
      return child;
    };
    this.recorder = new Recorder(config.capture, component('capture'));
    this.mirror = new Mirror(config.mirror, config.upstream, component('mirror'));
    this.commandStats = new CommandStats(config.stats);
    this.commandLog = new CommandLog({ ...config.accessLog, slowMs: config.log.slowMs }, component('commands'));
    this.taps = [this.recorder, this.mirror, this.commandStats, this.commandLog];
    this.gate = new PauseGate((reason, heldMs) => log.info({ reason, heldMs }, 'commands flow again (pause ended)'));
    if (config.mirror.target) log.info({ target: config.mirror.target, fraction: config.mirror.fraction, namespaces: config.mirror.namespaces }, 'mirroring reads to a shadow server');
    this.presentation = new SingleAddressPresentation(this.servers, monitor, t.heartbeatMs);
    // Logical sessions live 30 idle minutes on mongod (localLogicalSessionTimeoutMinutes).
    if (this.users) this.sessionOwners = new SessionOwners(config.auth.maxSessions, 30 * 60_000);
    this.router = new Router(this.servers, this.cursors, this.transactions, selection, this.sessionOwners);
    this.observer = new ReplyObserver(this.cursors, monitored ? monitor : undefined, log);
    this.janitor = new Janitor(1000, (task, err) => log.error({ task, err }, 'janitor task failed'));
    this.janitor.every('pools', (now) => this.servers.sweep(now));
    this.janitor.every('cursor-routes', (now) => this.cursors.sweep(now));
    if (this.sessionOwners) this.janitor.every('session-owners', (now) => this.sessionOwners!.sweep(now));
    if (this.userPools) this.janitor.every('user-pools', () => this.userPools!.sweep());
    this.janitor.every('transaction-routes', (now) => this.transactions.sweep(now));
    this.janitor.every('idle-clients', (now) => this.closeIdleClients(now));
    this.janitor.every('stalled-senders', (now) => {
      for (const s of this.sessions.keys()) s.closeIfStalled(now);
    });
    const reclaimer = new MemoryReclaimer(this.inputBudget, log);
    this.janitor.every('memory', (now) => reclaimer.sweep(now));
    this.janitor.every('readiness', (now) => this.readiness.sample(now));
    this.janitor.every('history', historySampler(this, this.history));
    this.gauges = engineGauges(this);
  }

  start(): void {
    if (this.config.capture.enabled) this.recorder.start();
    this.monitor.start();
    this.janitor.start();
    this.janitor.tick();
  }

  get clientCount(): number {
    return this.sessions.size;
  }

  /** The live sessions, with what inspection shows about each (admin/views). */
  clients(): Iterable<[ClientSession, ClientEntry]> {
    return this.sessions.entries();
  }

  /**
   * A new client connection, or undefined when the client limit is reached (the caller closes
   * it). `member`: in replset mode, the member whose proxy address the client dialled.
   */
  openSession(transport: ClientTransport, member: ServerAddress | undefined, listener: ListenerKind): ClientSession | undefined {
    if (this.drainingNow) {
      Metrics.clientConnectionsRejected.add(1, { reason: 'draining' });
      return undefined;
    }
    if (this.sessions.size >= this.config.listen.maxClientConnections) {
      Metrics.clientConnectionsRejected.add(1, { reason: 'max_client_connections' });
      this.log.warn({ remote: transport.remote, limit: this.config.listen.maxClientConnections }, 'refusing client connection: limit reached');
      return undefined;
    }
    const id = this.nextClientId++;
    const log = this.log.child({ session: id, remote: transport.remote, ...(member ? { member: member.toString() } : {}) });
    const routes = new ClientRoutes(member, this.config.client.lastErrorPinMs, this.lastErrorPins);
    const info = new ClientInfo(id, transport.remote);
    const handler = new CommandHandler(this.handlerDeps(listener, member !== undefined), routes, info, log);
    const session = new ClientSession(id, transport, handler, this.config.client, this.inputBudget, log, () => routes.close(this.servers, log));
    this.sessions.set(session, { info, routes, log });
    Metrics.clientConnectionsAccepted.add(1);
    return session;
  }

  /** What the proxy knows about a live session's client (undefined once it ended). */
  clientInfo(session: ClientSession): ClientInfo | undefined {
    return this.sessions.get(session)?.info;
  }

  endSession(session: ClientSession, reason: string): void {
    if (!this.sessions.delete(session)) return;
    session.transportClosed(reason);
  }

  get draining(): boolean {
    return this.drainingNow;
  }

  /** What every client of one kind of listener shares (made once per kind, not per client). */
  private handlerDeps(listener: ListenerKind, member: boolean): HandlerDeps {
    const k = `${listener}${member ? ':member' : ''}`;
    let d = this.sharedDeps.get(k);
    if (!d) {
      const presentation = member ? (this.memberPresentation ?? this.presentation) : this.presentation;
      d = { config: this.config, router: this.router, observer: this.observer, presentation, taps: this.taps, gate: this.gate, shutdown: this.shutdown, ...this.identity(listener) };
      this.sharedDeps.set(k, d);
    }
    return d;
  }

  /** What a listener's clients log in against (nothing in auth.mode none), and passthrough's user pools. */
  private identity(listener: ListenerKind): Pick<HandlerDeps, 'users' | 'userPools'> {
    const mode = this.authModes[listener];
    return { users: mode === 'none' ? undefined : this.users, userPools: mode === 'passthrough' ? this.userPools : undefined };
  }

  /** auth.userSource upstream: the auth query (usersInfo on the writable server as the service identity). */
  private userQuery(log: Logger): UpstreamUserQuery | undefined {
    const a = this.config.auth;
    if (a.userSource !== 'upstream') return undefined;
    return new UpstreamUserQuery(async (db, command) => {
      const pool = this.servers.writable();
      const conn = await pool.checkOut();
      try {
        return await conn.command(db, command);
      } finally {
        pool.checkIn(conn);
      }
    }, { cacheTtlMs: a.cacheTtlMs, maxUsers: a.cacheMaxUsers, timeoutMs: this.config.upstream.connectTimeoutMs }, log);
  }

  /**
   * With upstream.auth: logs in once to the first server, so that wrong credentials stop the
   * start with a clear error instead of failing every client later. An unreachable server is
   * only logged (it may come up later).
   */
  async verifyUpstreamLogin(): Promise<void> {
    const options = this.loginCheck;
    if (!options?.credentials) return;
    const address = ServerAddress.parse(this.config.upstream.servers[0]!);
    try {
      const conn = await UpstreamConnection.connect(address, options);
      conn.close('pool_closed', 'login checked at start');
      this.log.info({ server: address.toString(), user: options.credentials.username, authSource: options.credentials.source }, 'upstream login works');
    } catch (err) {
      if (err instanceof UpstreamAuthError) throw new ConfigError(`upstream.auth: ${err.message}`);
      this.log.warn({ server: address.toString(), err: (err as Error).message }, 'could not check the upstream login at start (server unreachable); pooled connections will log in when they connect');
    }
  }

  /** First step of a drain: /readyz fails from now on, clients are still accepted. */
  announceDrain(): void {
    this.unready = true;
  }

  /**
   * Shutting down gracefully: new clients are refused and /readyz fails. First, for
   * `listen.drainNoticeMs`, drivers are asked to leave through their next heartbeat
   * (ShutdownNotice) while every request is still served; then the clients still here are
   * closed once the requests they already sent are answered. Resolves when no client is left,
   * or after `timeoutMs` with the count of clients still open (the caller then stops everything).
   */
  async drain(timeoutMs: number): Promise<number> {
    this.unready = true;
    this.drainingNow = true;
    const deadline = Date.now() + timeoutMs;
    const notice = Math.min(this.config.listen.drainNoticeMs, timeoutMs);
    if (notice > 0 && this.sessions.size > 0) {
      this.shutdown.given = true;
      this.log.info({ clients: this.sessions.size, noticeMs: notice }, 'draining: drivers are told at their next heartbeat');
      await this.whileClientsStay(Date.now() + notice);
      this.log.info({ clients: this.sessions.size }, 'draining: closing the clients still here between requests');
    }
    for (const s of [...this.sessions.keys()]) s.drain();
    await this.whileClientsStay(deadline);
    return this.sessions.size;
  }

  private async whileClientsStay(until: number): Promise<void> {
    while (this.sessions.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
  }

  private closeIdleClients(now: number): void {
    const idle = this.config.client.idleTimeoutMs;
    if (idle <= 0) return;
    for (const s of this.sessions.keys()) if (now - s.lastActivityAt > idle) s.close('idle_timeout');
  }

  setLogLevel(level: string): void {
    this.log.level = level;
    for (const l of this.componentLogs) l.level = level;
    for (const { log } of this.sessions.values()) log.level = level;
  }

  async stop(): Promise<void> {
    for (const off of this.gauges.splice(0)) off();
    this.janitor.stop();
    this.monitor.stop();
    this.gate.resume('stopped');
    for (const s of [...this.sessions.keys()]) s.close('shutdown');
    this.sessions.clear();
    this.servers.close();
    this.mirror.close();
    this.commandStats.close();
    await this.commandLog.close();
    await this.recorder.stop('mongoplex stopped');
  }
}
