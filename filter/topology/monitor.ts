import { EventEmitter } from 'node:events';
import { UpstreamConnection, type ConnectOptions } from '../upstream/connection';
import { ServerAddress } from '../upstream/address';
import { describeMember, unknownMember, type MemberDescription } from './member';

export interface MonitorOptions extends ConnectOptions {
  readonly heartbeatMs: number;
  /** Follow the members a replica set reports (false: watch the seeds only, e.g. for readiness in single mode). */
  readonly discover?: boolean;
}

/** Heartbeats one server over its own connection (never a pooled one). */
class MemberMonitor {
  description: MemberDescription;
  private conn: UpstreamConnection | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private checking: Promise<void> | undefined;

  constructor(readonly address: ServerAddress, private readonly options: MonitorOptions, private readonly onHeartbeat: () => void) {
    this.description = unknownMember(address);
  }

  start(): void {
    void this.check();
  }

  /** Checks now (e.g. after a "not primary" error), unless a check is already running. */
  checkNow(): Promise<void> {
    return this.checking ?? this.check();
  }

  private check(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.checking = this.heartbeat().finally(() => {
      this.checking = undefined;
      if (!this.stopped) {
        this.timer = setTimeout(() => void this.check(), this.options.heartbeatMs);
        this.timer.unref();
      }
    });
    return this.checking;
  }

  private async heartbeat(): Promise<void> {
    let next: MemberDescription;
    try {
      const conn = (this.conn ??= await UpstreamConnection.connect(this.address, this.options));
      const started = performance.now();
      // A server that stops answering must not stall the monitor: clients wait on re-checks.
      const limit = this.options.connectTimeoutMs;
      const timer = setTimeout(() => conn.close('timeout', `heartbeat timed out after ${limit} ms`), limit);
      let hello;
      try {
        hello = await conn.command('admin', { hello: 1 });
      } finally {
        clearTimeout(timer);
      }
      next = describeMember(this.address, hello, performance.now() - started);
    } catch (err) {
      this.conn?.close('socket_error', 'heartbeat failed');
      this.conn = undefined;
      next = unknownMember(this.address, (err as Error).message);
    }
    if (this.stopped) return;
    this.description = next;
    this.onHeartbeat();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.conn?.close('monitor_stopped');
  }
}

/** What the monitor tells its listeners: membership (pools, member listeners) and elections (metrics). */
export interface TopologyEvents {
  memberAdded: [address: ServerAddress];
  memberRemoved: [address: ServerAddress];
  primaryChanged: [primary: ServerAddress | undefined, previous: ServerAddress | undefined];
}

/**
 * Discovers and monitors the upstream deployment from a seed list (the SDAM model): one
 * heartbeat connection per server; replica-set membership follows what the primary reports
 * (or, without a primary, the union of what members report).
 */
export class TopologyMonitor extends EventEmitter<TopologyEvents> {
  private readonly monitors = new Map<string, MemberMonitor>();
  private primaryKey: string | undefined;

  constructor(private readonly seeds: readonly ServerAddress[], private readonly options: MonitorOptions) {
    super();
  }

  start(): void {
    for (const s of this.seeds) this.add(s);
  }

  members(): MemberDescription[] {
    return [...this.monitors.values()].map((m) => m.description);
  }

  description(address: ServerAddress): MemberDescription | undefined {
    return this.monitors.get(address.toString())?.description;
  }

  primary(): MemberDescription | undefined {
    return this.primaryKey ? this.monitors.get(this.primaryKey)?.description : undefined;
  }

  /** Re-checks a server at once; resolves when its description is fresh. */
  async recheck(address: ServerAddress): Promise<void> {
    await this.monitors.get(address.toString())?.checkNow();
  }

  /** Resolves once every known server has been checked at least once. */
  async ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.members().every((m) => m.type !== 'Unknown' || m.error !== undefined)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * The configured servers changed (reload, single mode): monitor the new ones, stop the ones
   * no longer listed.
   */
  setServers(servers: readonly ServerAddress[]): void {
    const keep = new Set(servers.map((a) => a.toString()));
    for (const k of [...this.monitors.keys()]) if (!keep.has(k)) this.remove(k);
    for (const a of servers) this.add(a);
  }

  private add(address: ServerAddress): void {
    const key = address.toString();
    if (this.monitors.has(key)) return;
    const m = new MemberMonitor(address, this.options, () => this.reconcile());
    this.monitors.set(key, m);
    this.emit('memberAdded', address);
    m.start();
  }

  private remove(key: string): void {
    const m = this.monitors.get(key);
    if (!m) return;
    m.stop();
    this.monitors.delete(key);
    this.emit('memberRemoved', m.address);
  }

  /** After any heartbeat: who is primary now, and which members the set reports. */
  private reconcile(): void {
    const rs = this.members().filter((m) => m.type.startsWith('RS') && m.type !== 'RSGhost');
    const primaries = rs.filter((m) => m.type === 'RSPrimary');
    // Two members claiming primary: the newer election wins (higher setVersion/electionId).
    primaries.sort((a, b) => (b.setVersion ?? 0) - (a.setVersion ?? 0) || (b.electionId ?? '').localeCompare(a.electionId ?? ''));
    const primary = primaries[0];
    const key = primary?.address.toString();
    if (key !== this.primaryKey) {
      const previous = this.primaryKey === undefined ? undefined : ServerAddress.parse(this.primaryKey);
      this.primaryKey = key;
      this.emit('primaryChanged', primary?.address, previous);
    }
    if (rs.length === 0 || this.options.discover === false) return;
    const reported = primary ? primary.reportedMembers : rs.flatMap((m) => m.reportedMembers);
    for (const a of reported) this.add(a);
    if (primary) {
      const keep = new Set(reported.map((a) => a.toString()));
      for (const k of [...this.monitors.keys()]) if (!keep.has(k)) this.remove(k);
    }
  }

  stop(): void {
    for (const m of this.monitors.values()) m.stop();
    this.monitors.clear();
  }
}
