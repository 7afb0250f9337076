import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export async function terminate(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** How a process ended, in words: "exited with code 1", "was killed by SIGKILL". */
export function howItEnded(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

/**
 * Calls `listener` if the child ends on its own, not through `stop` (which sets `stopping`).
 * For supervisors: the dev stack reports a process that died.
 */
export function onUnexpectedExit(child: ChildProcess, stopping: () => boolean, listener: (how: string) => void): void {
  child.once('exit', (code, signal) => {
    if (!stopping()) listener(howItEnded(code, signal));
  });
}

/** The last `n` non-empty lines of a log, indented, for a terminal report. */
export function logTail(text: string, n = 5): string {
  return text.split('\n').filter((l) => l.trim() !== '').slice(-n).map((l) => `    ${l}`).join('\n');
}

/**
 * The first line of the child's stdout that `matches`, parsed as JSON (a "listening" line).
 * Rejects with `onExit`'s message if the child ends first and, with `deadlineMs`, when no such
 * line came in time.
 */
export function firstJsonLine<T>(
  child: ChildProcess,
  matches: (line: string) => boolean,
  onExit: (code: number | null, signal: NodeJS.Signals | null) => string,
  deadline?: { ms: number; message: string },
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = deadline && setTimeout(() => reject(new Error(deadline.message)), deadline.ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(onExit(code, signal)));
    });
    let found = false;
    // Read on after the match, so a child that keeps writing never blocks on a full pipe.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (found || !matches(line)) return;
      found = true;
      clearTimeout(timer);
      resolve(JSON.parse(line) as T);
    });
  });
}
