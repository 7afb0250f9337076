import { readdirSync, readFileSync } from 'node:fs';

/**
 * What a process and its descendants use, read from /proc: CPU time
 * split into user and kernel, and resident memory.
 */

/** `pid` and every process below it (children of all its threads), depth first. */
export function processTree(pid: number): number[] {
  const out = [pid];
  const read = <T>(f: () => T, gone: T): T => {
    try {
      return f();
    } catch {
      return gone; // exited meanwhile
    }
  };
  for (const tid of read(() => readdirSync(`/proc/${pid}/task`), [] as string[])) {
    const children = read(() => readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8'), '');
    for (const c of children.split(' ')) if (c.trim()) out.push(...processTree(Number(c)));
  }
  return out;
}

export interface CpuTime {
  readonly userMs: number;
  readonly systemMs: number;
}

/** User and kernel CPU time of the processes, ms (clock ticks of 10 ms). */
export function cpuTime(pids: readonly number[]): CpuTime {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      user += Number(fields[11]) * 10;
      system += Number(fields[12]) * 10;
    } catch {
      // exited between listing and reading
    }
  }
  return { userMs: user, systemMs: system };
}

/** CPU µs per operation and the kernel's share of it, between two readings. */
export function cpuPerOp(before: CpuTime, after: CpuTime, ops: number): { usPerOp: number; kernelShare: number } {
  const user = after.userMs - before.userMs;
  const system = after.systemMs - before.systemMs;
  return {
    usPerOp: ops ? Number((((user + system) * 1000) / ops).toFixed(1)) : 0,
    kernelShare: user + system ? Number((system / (user + system)).toFixed(3)) : 0,
  };
}

/** Resident memory of the processes, KB (VmRSS). */
export function rssKb(pids: readonly number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      kb += m ? Number(m[1]) : 0;
    } catch {
      // exited
    }
  }
  return kb;
}

/** One process's resident memory, MB (rounded). */
export function rssMb(pid: number): number {
  return Math.round(rssKb([pid]) / 1024);
}
