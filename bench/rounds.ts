import type { Result } from './pool';
import { cpuTime, processTree } from './processes';

/**
 * Running several configurations of one workload side by side in one invocation: rounds in
 * alternating order (so drift on the shared machine does not favour one mode), each measuring
 * the mongoplex process's CPU time per operation; figures are the mean of the rounds.
 */

/** The command-line options of a side-by-side benchmark (its modes, rounds and the shared workload), for `parseArgs`. */
export function sideBySideOptions(modes: readonly string[]) {
  return {
    clients: { type: 'string', default: '200' },
    busy: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '5' },
    'pool-size': { type: 'string', default: '8' },
    mix: { type: 'string', default: 'small-reads' },
    modes: { type: 'string', default: modes.join(',') },
    rounds: { type: 'string', default: '2' },
  } as const;
}

/** CPU time (user + system) a process and its child processes have used, ms, from /proc/PID/stat. */
export function cpuMs(pid: number): number {
  const t = cpuTime(processTree(pid));
  return t.userMs + t.systemMs;
}

/** CPU µs per operation, from a CPU-time difference in ms. */
export function perOp(cpuMsUsed: number, ops: number): number {
  return ops ? Number(((cpuMsUsed * 1000) / ops).toFixed(1)) : 0;
}

/** One mode's result in one round: the workload's figures, mongoplex's CPU per op, and what the mode counted. */
export interface ModeResult extends Result {
  mongoplexCpuUsPerOp: number;
  /** Mode-specific figures (what a capture or the access log counted, …), one entry per round after `mean`. */
  details: unknown;
}

/** The mean of one mode's rounds (sums for counts). */
export function mean<R extends ModeResult>(results: R[]): R {
  const avg = (f: (r: R) => number, digits = 2): number => Number((results.reduce((s, r) => s + f(r), 0) / results.length).toFixed(digits));
  const last = results[results.length - 1]!;
  const out: R = {
    ...last,
    ops: results.reduce((s, r) => s + r.ops, 0),
    opsPerSec: avg((r) => r.opsPerSec, 0),
    p50Ms: avg((r) => r.p50Ms),
    p99Ms: avg((r) => r.p99Ms),
    errors: results.reduce((s, r) => s + r.errors, 0),
    mongoplexCpuUsPerOp: avg((r) => r.mongoplexCpuUsPerOp, 1),
    details: results.map((r) => r.details),
  };
  // Other numeric figures a mode adds are averaged too.
  for (const [k, v] of Object.entries(last)) {
    if (typeof v === 'number' && !(k in { ops: 1, opsPerSec: 1, p50Ms: 1, p99Ms: 1, errors: 1, mongoplexCpuUsPerOp: 1, clients: 1, busy: 1, seconds: 1 })) {
      (out as Record<string, unknown>)[k] = avg((r) => (r as Record<string, unknown>)[k] as number, 1);
    }
  }
  return out;
}

/** Runs every mode `rounds` times, in reverse order every other round; the mean per mode, in `modes` order. */
export async function runRounds<M extends string, R extends ModeResult>(modes: readonly M[], rounds: number, run: (mode: M, round: number) => Promise<R>): Promise<R[]> {
  if (!(Number.isInteger(rounds) && rounds > 0)) throw new Error('--rounds must be a positive integer');
  const byMode = new Map<M, R[]>(modes.map((m) => [m, []]));
  for (let round = 0; round < rounds; round++) {
    for (const mode of round % 2 === 0 ? modes : [...modes].reverse()) byMode.get(mode)!.push(await run(mode, round));
  }
  return modes.map((m) => mean(byMode.get(m)!));
}
