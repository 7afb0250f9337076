import { EventEmitter } from 'node:events';
import { attrs, Metrics } from '../telemetry/metrics';
import type { ServerAddress } from './address';
import type { BudgetedPool, ConnectionBudget } from './connection-budget';
import { UpstreamConnection, type CloseReason, type ConnectOptions } from './connection';
import type { ServerDescription } from './server-description';

export interface PoolOptions extends ConnectOptions {
  readonly maxPoolSize: number;
  readonly minPoolSize: number;
  readonly maxConnecting: number;
  readonly maxIdleTimeMs: number;
  readonly waitQueueTimeoutMs: number;
  readonly maxWaitQueueSize: number;
  /** A cap on connections shared with other pools (auth.mode passthrough's per-user pools). */
  readonly budget?: ConnectionBudget | undefined;
}

/** Why a checkout did not produce a connection. */
export class CheckoutError extends Error {
  override name = 'CheckoutError';
  constructor(message: string, readonly reason: 'timeout' | 'queue_full' | 'connect_failed' | 'closed' | 'revoked', readonly address: ServerAddress) {
    super(message);
  }
}

/**
 * What a checkout is for. A continuation (getMore, killCursors, a transaction's later
 * statements) finishes work the server already holds resources for; new work starts more.
 */
export type CheckoutKind = 'new' | 'continuation';

interface Waiter {
  readonly kind: CheckoutKind;
  readonly resolve: (c: UpstreamConnection) => void;
  readonly reject: (e: Error) => void;
  readonly enqueuedAt: number;
  /** waitQueueTimeoutMs when it queued (0: no limit), and when that runs out. */
  readonly timeoutMs: number;
  readonly deadline: number;
}

export interface PoolStats {
  address: string;
  total: number;
  idle: number;
  inUse: number;
  connecting: number;
  waiting: number;
  holdingCursors: number;
}

/** What a pool tells its listeners (the seam for logs, metrics and routing state). */
export interface PoolEvents {
  connectionCreated: [conn: UpstreamConnection];
  connectionClosed: [conn: UpstreamConnection, reason: CloseReason, detail: string];
  connectFailed: [err: Error];
  /** A request joined the wait queue with every connection taken and no room to open another. */
  exhausted: [];
}

/**
 * A bounded pool of connections to one server (modelled on the drivers' CMAP): at most
 * `maxPoolSize` connections, at most `maxConnecting` being opened at once, a wait queue
 * bounded in length and in time, idle connections reaped unless they hold open cursors.
 *
 * Continuations go first: they wait ahead of new work, and while the pool's connections have
 * cursors open, new work may hold at most `maxPoolSize - 1` connections (pools of 2 or more),
 * so one is always left for them. Without that, a server whose new queries wait for resources only open cursors free (FerretDB's
 * SQLite connections, a storage engine's tickets) deadlocks: every pooled connection waits in
 * a new query, and the getMores that would free the cursors wait for a pooled connection.
 */
export class UpstreamPool extends EventEmitter<PoolEvents> implements BudgetedPool {
  /** Idle connections, most recently used last (LIFO keeps the warm set small). */
  private readonly idle: UpstreamConnection[] = [];
  /** Connections checked out, and for what. */
  private readonly inUse = new Map<UpstreamConnection, CheckoutKind>();
  private newInUse = 0;
  /** Waiters by kind, each oldest first (continuations are served first; no scans of the queue). */
  private readonly queues: Record<CheckoutKind, Waiter[]> = { continuation: [], new: [] };
  /** The waiters' one deadline timer, and the deadline it is armed for (Infinity: none). */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;
  private connecting = 0;
  private closed = false;
  private lastDescription: ServerDescription | undefined;
  /** `{server}` of this pool's metrics (recorded per checkout). */
  private readonly serverAttrs: Readonly<{ server: string }>;

  constructor(readonly address: ServerAddress, private readonly options: PoolOptions) {
    super();
    this.serverAttrs = attrs({ server: address.toString() });
    options.budget?.join(this);
  }

  get description(): ServerDescription | undefined {
    return this.lastDescription;
  }

  get size(): number {
    return this.idle.length + this.inUse.size + this.connecting;
  }

  stats(): PoolStats {
    let holdingCursors = 0;
    for (const c of [...this.idle, ...this.inUse.keys()]) if (c.holdsCursors) holdingCursors++;
    return {
      address: this.address.toString(),
      total: this.size,
      idle: this.idle.length,
      inUse: this.inUse.size,
      connecting: this.connecting,
      waiting: this.waiting,
      holdingCursors,
    };
  }

  private get waiting(): number {
    return this.queues.continuation.length + this.queues.new.length;
  }

  /** How long the longest-waiting request has waited (0: none waits). */
  oldestWaitMs(now = Date.now()): number {
    const oldest = Math.min(this.queues.continuation[0]?.enqueuedAt ?? Infinity, this.queues.new[0]?.enqueuedAt ?? Infinity);
    return oldest === Infinity ? 0 : now - oldest;
  }

  get maxSize(): number {
    return this.options.maxPoolSize;
  }

  /** Connections new work may hold at once: while cursors are open, all but one, kept for continuations. */
  private get newLimit(): number {
    const max = this.options.maxPoolSize;
    return max >= 2 && this.holdsCursors() ? max - 1 : max;
  }

  private holdsCursors(): boolean {
    for (const c of this.idle) if (c.holdsCursors) return true;
    for (const c of this.inUse.keys()) if (c.holdsCursors) return true;
    return false;
  }

  private mayServe(kind: CheckoutKind): boolean {
    if (kind === 'continuation' || this.newInUse < this.options.maxPoolSize - 1) return true;
    return this.newInUse < this.newLimit; // the last connection: look for open cursors only now
  }

  /** Resolves with a connection for exclusive use; give it back with `checkIn`. */
  checkOut(kind: CheckoutKind = 'new'): Promise<UpstreamConnection> {
    if (this.closed) return Promise.reject(new CheckoutError(`pool for ${this.address} is closed`, 'closed', this.address));
    // Nobody of the same or higher priority may be passed in the queue.
    const queuedAhead = kind === 'continuation' ? this.queues.continuation.length > 0 : this.waiting > 0;
    const conn = !queuedAhead && this.mayServe(kind) ? this.popIdle() : undefined;
    if (conn) {
      this.lend(conn, kind);
      return Promise.resolve(conn);
    }
    if (this.waiting >= this.options.maxWaitQueueSize) {
      Metrics.poolWaitQueueFull.add(1, this.serverAttrs);
      return Promise.reject(new CheckoutError(`wait queue for ${this.address} is full (${this.options.maxWaitQueueSize} waiting)`, 'queue_full', this.address));
    }
    return new Promise<UpstreamConnection>((resolve, reject) => {
      const enqueuedAt = Date.now();
      const timeoutMs = this.options.waitQueueTimeoutMs;
      const deadline = timeoutMs > 0 ? enqueuedAt + timeoutMs : Infinity;
      this.queues[kind].push({ kind, enqueuedAt, resolve, reject, timeoutMs, deadline });
      if (deadline < this.armedFor) this.armDeadline(deadline);
      this.pump();
      if (this.waiting > this.connecting && this.size >= this.options.maxPoolSize) this.emit('exhausted');
    });
  }

  /** Returns a connection after its reply was fully read. Closed connections are dropped. */
  checkIn(conn: UpstreamConnection): void {
    if (!this.giveBack(conn)) return;
    // (`size` no longer counts this connection: keeping it makes size + 1.)
    if (conn.closed || conn.busy || this.closed || this.size >= this.options.maxPoolSize) {
      if (!conn.closed) conn.close(this.closed ? 'pool_closed' : conn.busy ? 'checked_in_busy' : 'pool_shrunk');
      this.pump();
      return;
    }
    if (!conn.holdsCursors && this.options.budget?.shouldYield(this, this.size + 1)) {
      // Another pool sharing the budget waits with fewer connections: the slot goes to it.
      conn.close('budget', 'connection given up to a pool waiting with fewer connections (auth.passthrough.maxConnections)');
      return;
    }
    conn.lastUsedAt = Date.now();
    this.idle.push(conn);
    this.pump();
  }

  /** Connects once if the pool has never described its server (for the first client hello). */
  async describe(): Promise<ServerDescription> {
    if (this.lastDescription) return this.lastDescription;
    const c = await this.checkOut();
    this.checkIn(c);
    return c.description;
  }

  private popIdle(): UpstreamConnection | undefined {
    while (this.idle.length > 0) {
      const c = this.idle.pop()!;
      if (!c.closed) return c;
    }
    return undefined;
  }

  private lend(conn: UpstreamConnection, kind: CheckoutKind): void {
    this.inUse.set(conn, kind);
    if (kind === 'new') this.newInUse++;
  }

  /** Takes a connection back from whoever held it; false if it was not lent. */
  private giveBack(conn: UpstreamConnection): boolean {
    const kind = this.inUse.get(conn);
    if (kind === undefined) return false;
    this.inUse.delete(conn);
    if (kind === 'new') this.newInUse--;
    return true;
  }

  /** The queue to serve next: the oldest continuation, else the oldest new request if new work may have another connection. */
  private nextQueue(): Waiter[] | undefined {
    if (this.queues.continuation.length > 0) return this.queues.continuation;
    return this.queues.new.length > 0 && this.mayServe('new') ? this.queues.new : undefined;
  }

  /** Waiters a new connection could serve now. */
  private servableWaiters(): number {
    const news = this.queues.new.length;
    return this.queues.continuation.length + (news === 0 ? 0 : Math.min(news, Math.max(0, this.newLimit - this.newInUse)));
  }

  /** Hands idle connections to waiters and opens new ones while there is room. */
  private pump(): void {
    for (let q = this.nextQueue(); q; q = this.nextQueue()) {
      const c = this.popIdle();
      if (!c) break;
      this.give(q.shift()!, c);
    }
    while (
      !this.closed &&
      this.servableWaiters() > this.connecting &&
      this.size < this.options.maxPoolSize &&
      this.connecting < this.options.maxConnecting &&
      this.takeSlot()
    ) {
      this.open();
    }
  }

  /** A slot in the shared connection budget, if the pool has one (taken last: only when a connection will open). */
  private takeSlot(): boolean {
    return this.options.budget?.take(this) ?? true;
  }

  oldestIdleAt(): number | undefined {
    return this.idle.find((c) => !c.holdsCursors && !c.closed)?.lastUsedAt;
  }

  closeOldestIdle(): boolean {
    const c = this.idle.find((x) => !x.holdsCursors && !x.closed);
    c?.close('budget', 'idle connection closed to make room for another user\'s pool (auth.passthrough.maxConnections)');
    return c !== undefined;
  }

  budgetFreed(): void {
    this.pump();
  }

  wantsConnection(): boolean {
    return !this.closed && this.servableWaiters() > this.connecting && this.size < this.options.maxPoolSize;
  }

  /**
   * One timer for every waiter's deadline (not one per checkout): it is armed for the nearest
   * one; when it fires, the waiters whose time ran out are failed and it is armed for the next.
   */
  private armDeadline(at: number): void {
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.armedFor = at;
    this.deadlineTimer = setTimeout(() => this.expireWaiters(), Math.max(0, at - Date.now()));
    this.deadlineTimer.unref();
  }

  private expireWaiters(): void {
    this.deadlineTimer = undefined;
    this.armedFor = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const kind of ['continuation', 'new'] as const) {
      const kept: Waiter[] = [];
      for (const w of this.queues[kind]) {
        if (w.deadline > now) {
          kept.push(w);
          if (w.deadline < next) next = w.deadline;
          continue;
        }
        Metrics.poolWaitTimeouts.add(1, this.serverAttrs);
        w.reject(new CheckoutError(`timed out after ${w.timeoutMs} ms waiting for a connection to ${this.address} (pool size ${this.options.maxPoolSize})`, 'timeout', this.address));
      }
      this.queues[kind] = kept;
    }
    if (next < Infinity) this.armDeadline(next);
  }

  private give(w: Waiter, conn: UpstreamConnection): void {
    this.lend(conn, w.kind);
    Metrics.poolCheckoutDuration.record(Date.now() - w.enqueuedAt, this.serverAttrs);
    w.resolve(conn);
  }

  private open(): void {
    this.connecting++;
    UpstreamConnection.connect(this.address, this.options).then(
      (conn) => {
        this.connecting--;
        Metrics.upstreamConnectionsOpened.add(1, this.serverAttrs);
        this.lastDescription = conn.description;
        this.emit('connectionCreated', conn);
        conn.onClose((reason, detail) => {
          const i = this.idle.indexOf(conn);
          if (i >= 0) this.idle.splice(i, 1);
          this.giveBack(conn);
          Metrics.upstreamConnectionsClosed.add(1, { server: this.address.toString(), reason });
          this.emit('connectionClosed', conn, reason, detail);
          this.pump();
          this.options.budget?.give();
        });
        if (this.closed) {
          conn.close('pool_closed');
          return;
        }
        this.idle.push(conn);
        this.pump();
      },
      (err: Error) => {
        this.connecting--;
        this.options.budget?.give();
        Metrics.upstreamConnectFailures.add(1, this.serverAttrs);
        this.emit('connectFailed', err);
        // With no connection left to serve them, waiters beyond what is still being opened
        // would only sit out their timeout: fail them now so clients can retry elsewhere.
        if (this.idle.length + this.inUse.size === 0) {
          while (this.waiting > this.connecting) {
            const w = (this.queues.new.length > 0 ? this.queues.new : this.queues.continuation).pop()!;
            w.reject(new CheckoutError(err.message, 'connect_failed', this.address));
          }
        }
        this.pump();
      },
    );
  }

  /** The pool's settings changed: close idle connections beyond a smaller size, serve waiters a larger one allows. */
  resized(): void {
    while (this.size > this.options.maxPoolSize && this.idle.length > 0) this.idle.shift()!.close('pool_shrunk');
    this.pump();
    this.sweep();
  }

  /** Closes connections idle past maxIdleTimeMs (never one holding open cursors) and refills minPoolSize. */
  sweep(now = Date.now()): void {
    const { maxIdleTimeMs, minPoolSize } = this.options;
    if (maxIdleTimeMs > 0) {
      for (const c of [...this.idle]) {
        if (this.size <= minPoolSize) break;
        if (c.holdsCursors || now - c.lastUsedAt < maxIdleTimeMs) continue;
        c.close('idle');
      }
    }
    while (!this.closed && this.size < minPoolSize && this.connecting < this.options.maxConnecting && this.takeSlot()) this.open();
  }

  /**
   * Closes every connection and fails every waiter. `revoked` (auth.mode passthrough): the
   * user's secret changed: waiters are told to log in again rather than that the server is
   * gone, and requests already running finish (their connections close as they come back).
   */
  close(why: 'closed' | 'revoked' = 'closed'): void {
    this.closed = true;
    const message = why === 'revoked' ? `the login this client's pool to ${this.address} used is no longer valid (the user's secret changed); log in again` : `pool for ${this.address} is closed`;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    for (const w of [...this.queues.continuation.splice(0), ...this.queues.new.splice(0)]) {
      w.reject(new CheckoutError(message, why, this.address));
    }
    // Revoked: requests already running finish, their connections close as they come back.
    for (const c of why === 'revoked' ? [...this.idle] : [...this.idle, ...this.inUse.keys()]) c.close('pool_closed');
    this.idle.length = 0;
    this.options.budget?.leave(this);
  }
}

