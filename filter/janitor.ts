/**
 * Owns the proxy's periodic work (as PgBouncer's janitor does): reaping idle pooled
 * connections, forgetting stale cursor routes, closing idle clients. One timer for all.
 */
export class Janitor {
  private timer: NodeJS.Timeout | undefined;
  private readonly tasks: Array<{ name: string; run: (now: number) => void }> = [];

  constructor(private readonly intervalMs: number, private readonly onError: (task: string, err: unknown) => void) {}

  every(name: string, run: (now: number) => void): void {
    this.tasks.push({ name, run });
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  tick(now = Date.now()): void {
    for (const t of this.tasks) {
      try {
        t.run(now);
      } catch (err) {
        this.onError(t.name, err);
      }
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
