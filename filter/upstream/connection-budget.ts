/** What a budget needs from a pool that shares it. */
export interface BudgetedPool {
  /** Closes this pool's longest-idle connection that holds no cursors; false when it has none. */
  closeOldestIdle(): boolean;
  /** When that connection was last used (undefined: no such connection). */
  oldestIdleAt(): number | undefined;
  /** Room was freed: open connections for waiters if the pool has any. */
  budgetFreed(): void;
  /** Connections the pool holds (open and opening). */
  readonly size: number;
  /** Whether the pool has waiters a new connection would serve, and room under its own maximum. */
  wantsConnection(): boolean;
}

/**
 * A cap on upstream connections shared by many pools (auth.mode passthrough: one pool per user
 * and server, all together at most `auth.passthrough.maxConnections`). A pool takes a slot
 * before it opens a connection and gives it back when the connection closes or fails to open.
 * When the budget is spent, the connection idle longest in another pool is closed to make room
 * (users that are busy take connections from users that are not); when none is idle, the pool's
 * request waits in its own queue, with its own deadline, until a slot comes back. Slots come
 * back to the pools holding fewest first, and a pool holding two more than one that waits gives
 * a connection up as it is returned (`shouldYield`), so one busy user cannot starve the others.
 */
export class ConnectionBudget {
  private used = 0;
  private readonly pools = new Set<BudgetedPool>();
  /** Closing a connection to make room: its slot goes to the pool that asked, not to the others. */
  private evicting = false;

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  join(pool: BudgetedPool): void {
    this.pools.add(pool);
  }

  leave(pool: BudgetedPool): void {
    this.pools.delete(pool);
  }

  /** A slot for one new connection of `pool`: free, or made by closing another pool's idle connection. */
  take(pool: BudgetedPool): boolean {
    if (this.used >= this.limit) this.evictFor(pool);
    if (this.used >= this.limit) return false;
    this.used++;
    return true;
  }

  give(): void {
    this.used--;
    if (this.evicting || this.used >= this.limit) return;
    const wanting = [...this.pools].filter((p) => p.wantsConnection()).sort((a, b) => a.size - b.size);
    for (const p of wanting) {
      if (this.used >= this.limit) break;
      p.budgetFreed();
    }
  }

  /**
   * Whether `pool`, holding `held` connections with one coming back, should close that one:
   * the budget is spent and a pool that waits holds at least two fewer.
   */
  shouldYield(pool: BudgetedPool, held: number): boolean {
    if (this.used < this.limit) return false;
    for (const p of this.pools) if (p !== pool && p.size + 1 < held && p.wantsConnection()) return true;
    return false;
  }

  /** Closes the connection idle longest in any pool but `pool` (closing it gives its slot back). */
  private evictFor(pool: BudgetedPool): void {
    let victim: BudgetedPool | undefined;
    let oldest = Number.POSITIVE_INFINITY;
    for (const p of this.pools) {
      if (p === pool) continue;
      const at = p.oldestIdleAt();
      if (at !== undefined && at < oldest) {
        oldest = at;
        victim = p;
      }
    }
    if (!victim) return;
    this.evicting = true;
    try {
      victim.closeOldestIdle();
    } finally {
      this.evicting = false;
    }
  }
}
