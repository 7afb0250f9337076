import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..');

/**
 * The other official drivers' scenario programs (test/drivers/), installed by
 * scripts/install-drivers.sh: the command line that runs each.
 */
export function driverPrograms(): { pymongo: string[]; go: string[] } {
  const [python, goBinary] = execFileSync('bash', [path.join(ROOT, 'scripts', 'install-drivers.sh')], { encoding: 'utf8' }).trim().split(' ');
  return { pymongo: [python!, path.join(ROOT, 'test', 'drivers', 'pymongo_scenarios.py')], go: [goBinary!] };
}

export interface DriverRun {
  code: number | null;
  /** One line per scenario that passed, as the program printed it. */
  lines: Array<Record<string, unknown>>;
  stderr: string;
}

/** Runs scenarios in a driver program; `onLine` sees each other JSON line and may answer on stdin. */
export function runDriverProgram(command: string[], uri: string, dbName: string, scenarios: string[], onLine?: (line: Record<string, unknown>, reply: () => void) => void): Promise<DriverRun> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, [...command.slice(1), uri, dbName, ...scenarios], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines: Array<Record<string, unknown>> = [];
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    createInterface({ input: child.stdout }).on('line', (l) => {
      const line = JSON.parse(l) as Record<string, unknown>;
      if (line.scenario) lines.push(line);
      else onLine?.(line, () => child.stdin.write('\n'));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, lines, stderr });
    });
  });
}
