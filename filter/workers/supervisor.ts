import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config';
import type { Logger } from '../log';
import { WORKER_INDEX_VARIABLE } from '../config';

/** What a worker tells the primary once its listeners are open. */
export interface WorkerListening {
  readonly tcp: string | null;
  readonly grpcPort: number | null;
  /** Its own admin endpoint (loopback), which the primary's admin endpoint asks; null without admin. */
  readonly admin: { readonly host: string; readonly port: number } | null;
}

/** Primary → worker. */
export type ToWorker = { readonly type: 'stop' } | { readonly type: 'reload' };
/** Worker → primary. */
export type FromWorker = { readonly type: 'listening'; readonly listening: WorkerListening };

/** A worker that ended before it was serving: the primary stops with its exit code. */
export class WorkerStartError extends Error {
  override name = 'WorkerStartError';
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/** One worker position; a worker that dies is replaced in the same slot (same ext_proc address). */
interface Slot {
  readonly index: number;
  worker?: Worker;
  listening?: WorkerListening;
  startedAt: number;
  /** Replacements so far. */
  restarts: number;
  /** Ends in a row that came soon after a start: each doubles the wait before the next. */
  quickFailures: number;
  timer?: NodeJS.Timeout;
  /** While a replacement waits to start: how long it was told to wait. */
  restartDelayMs?: number;
}

/** Public view of a slot, for /livez, /stats and the admin fan-out. */
export interface WorkerState {
  readonly index: number;
  readonly pid: number | undefined;
  readonly up: boolean;
  readonly restarts: number;
  readonly admin: WorkerListening['admin'];
  /** A replacement is scheduled after this wait (ms); null when none is pending. */
  readonly restartDelayMs: number | null;
}

/** A worker that ran less than this before it ended counts as failing quickly (backoff). */
const QUICK_FAILURE_MS = 10_000;
const MAX_RESTART_DELAY_MS = 30_000;

/** The wait before a replacement: none after a worker that ran a while, then 0.5 s doubling to 30 s. */
export function restartDelayMs(quickFailures: number): number {
  return quickFailures === 0 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 500 * 2 ** (quickFailures - 1));
}

/**
 * The primary's side of workers mode: forks `count` workers (this same program, told its index
 * through MONGOPLEX_WORKER_INDEX), waits until each serves, and replaces a worker that dies —
 * at once when it had run a while, after a doubling delay (up to 30 s) when it keeps dying
 * young. Only the clients connected to the dead worker lose their connections.
 */
export class WorkerSupervisor {
  private readonly slots: Slot[];
  private stopping = false;

  constructor(private readonly config: Config, readonly count: number, private readonly log: Logger) {
    this.slots = Array.from({ length: count }, (_, index) => ({ index, startedAt: 0, restarts: 0, quickFailures: 0 }));
  }

  /** Forks every worker; resolves with what each listens on, or rejects (all stopped) when one fails to start. */
  async start(): Promise<WorkerListening[]> {
    try {
      return await Promise.all(this.slots.map((s) => this.fork(s)));
    } catch (err) {
      this.stopping = true;
      for (const s of this.slots) s.worker?.process.kill('SIGKILL');
      throw err;
    }
  }

  get workers(): WorkerState[] {
    return this.slots.map((s) => ({ index: s.index, pid: s.worker?.process.pid, up: s.listening !== undefined, restarts: s.restarts, admin: s.listening?.admin ?? null, restartDelayMs: s.restartDelayMs ?? null }));
  }

  get restarts(): number {
    return this.slots.reduce((n, s) => n + s.restarts, 0);
  }

  /** Every worker re-reads the configuration (SIGHUP). */
  reload(): void {
    this.send({ type: 'reload' });
  }

  /**
   * Every worker drains and exits (the primary's SIGTERM); resolves true once all have, false
   * when some had to be killed at the deadline.
   */
  async stop(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    for (const s of this.slots) clearTimeout(s.timer);
    const running = this.slots.filter((s) => s.worker && !s.worker.isDead()).map((s) => s.worker!);
    const exited = Promise.all(running.map((w) => new Promise((r) => (w.isDead() ? r(undefined) : w.once('exit', r)))));
    this.send({ type: 'stop' });
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))]);
    clearTimeout(timer);
    if (!inTime) {
      for (const w of running) if (!w.isDead()) w.process.kill('SIGKILL');
      await exited;
    }
    return inTime;
  }

  /** Second signal: no waiting. */
  kill(): void {
    this.stopping = true;
    for (const s of this.slots) s.worker?.process.kill('SIGKILL');
  }

  private send(message: ToWorker): void {
    for (const s of this.slots) if (s.worker?.isConnected()) s.worker.send(message);
  }

  private fork(slot: Slot): Promise<WorkerListening> {
    const worker = cluster.fork({ [WORKER_INDEX_VARIABLE]: `${slot.index}/${this.count}` });
    slot.worker = worker;
    slot.listening = undefined;
    slot.startedAt = Date.now();
    const deadlineMs = this.config.upstream.connectTimeoutMs + 30_000;
    return new Promise<WorkerListening>((resolve, reject) => {
      const timer = setTimeout(() => {
        worker.process.kill('SIGKILL');
        reject(new WorkerStartError(`worker ${slot.index} was not serving after ${deadlineMs} ms`, 1));
      }, deadlineMs);
      worker.on('message', (m: FromWorker) => {
        if (m?.type !== 'listening') return;
        clearTimeout(timer);
        slot.listening = m.listening;
        this.log.info({ worker: slot.index, workerPid: worker.process.pid, ...m.listening }, 'worker serving');
        resolve(m.listening);
      });
      worker.once('exit', (code, signal) => {
        clearTimeout(timer);
        const wasServing = slot.listening !== undefined;
        slot.listening = undefined;
        // Not serving yet: start() (or the restart below) hears about it through the rejection.
        reject(new WorkerStartError(`worker ${slot.index} ${signal ? `was killed by ${signal}` : `exited with code ${code}`} before it was serving`, code || 1));
        this.ended(slot, worker, code, signal, wasServing);
      });
    });
  }

  private ended(slot: Slot, worker: Worker, code: number | null, signal: string | null, wasServing: boolean): void {
    if (this.stopping || slot.worker !== worker) return;
    if (!wasServing && slot.restarts === 0 && slot.quickFailures === 0) return; // the first start failed: start() rejects
    const ranMs = Date.now() - slot.startedAt;
    slot.quickFailures = ranMs < QUICK_FAILURE_MS ? slot.quickFailures + 1 : 0;
    const delayMs = restartDelayMs(slot.quickFailures);
    slot.restartDelayMs = delayMs;
    this.log.error({ worker: slot.index, workerPid: worker.process.pid, code, signal, ranMs, restartInMs: delayMs }, 'worker ended: its clients lost their connections; starting a replacement');
    slot.timer = setTimeout(() => {
      slot.restartDelayMs = undefined;
      if (this.stopping) return;
      slot.restarts++;
      this.fork(slot).catch((err: Error) => this.log.error({ worker: slot.index, err: err.message }, 'replacement worker failed to start'));
    }, delayMs);
  }
}
