import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { FerretDB } from '../scripts/ferretdb';
import { MongoplexProcess, ONE_PROCESS } from '../scripts/mongoplex-process';
import { freePort } from '../scripts/ports';
import { parseModes, printWithRatios, runMode, seedItems, workloadOptions, type Options } from './pool';
import { cpuMs, perOp, runRounds, sideBySideOptions, type ModeResult } from './rounds';

/**
 * `npm run bench -- traffic`: what recording and mirroring cost clients, in one invocation —
 * the same workload through mongoplex (TCP ingress) with both off, with a capture running
 * (plain, then redacted), mirroring 100% of reads to a shadow FerretDB, and mirroring to a
 * shadow that is stopped (SIGSTOP). Modes run in `--rounds` rounds, in reverse order every
 * other round (so drift in the shared machine does not favour one mode); figures are the mean
 * of the rounds. Prints one JSON object per mode (with mongoplex's and the shadow's CPU time
 * per operation, and what the capture or the mirror counted) and one per mode with its ratios
 * to `off`.
 */

interface TrafficResult extends ModeResult {
  shadowCpuUsPerOp: number;
}

const MODES = ['off', 'capture', 'capture-redacted', 'mirror-100', 'mirror-100-shadow-stopped'] as const;
type Mode = (typeof MODES)[number];

export async function runTrafficBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...sideBySideOptions(MODES),
    },
  });
  const o = workloadOptions(values);
  const modes = parseModes(values.modes, MODES);
  const primary = await FerretDB.start();
  const shadow = await FerretDB.start();
  const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-bench-capture-'));
  try {
    await seedItems(primary);
    await seedItems(shadow);
    const results = await runRounds(modes, Number(values.rounds), (mode, round) => runTrafficMode(mode, round, o, primary, shadow, dir));
    printWithRatios(results, 'off', (r, base) => ({ mongoplexCpuPerOpRatio: Number((r.mongoplexCpuUsPerOp / base.mongoplexCpuUsPerOp).toFixed(3)) }));
  } finally {
    await primary.stop();
    await shadow.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One mode, one round: its own mongoplex process, the workload, and what it counted. */
async function runTrafficMode(mode: Mode, round: number, o: Options, primary: FerretDB, shadow: FerretDB, dir: string): Promise<TrafficResult> {
  const admin = await freePort();
  const env: Record<string, string> = { MONGOPLEX_ADMIN_PORT: String(admin) };
  if (mode.startsWith('capture')) {
    Object.assign(env, { MONGOPLEX_CAPTURE_ENABLED: 'true', MONGOPLEX_CAPTURE_DIR: path.join(dir, `${mode}-${round}`), MONGOPLEX_CAPTURE_REDACT: String(mode === 'capture-redacted') });
  }
  if (mode.startsWith('mirror')) Object.assign(env, { MONGOPLEX_MIRROR_TARGET: shadow.address, MONGOPLEX_MIRROR_FRACTION: '1' });
  const { proxy, port: tcp } = await MongoplexProcess.pooling(primary.address, o.poolSize, { ...ONE_PROCESS, ...env });
  if (mode === 'mirror-100-shadow-stopped') process.kill(shadow.pid!, 'SIGSTOP');
  try {
    const cpu0 = cpuMs(proxy.pid!);
    const shadowCpu0 = cpuMs(shadow.pid!);
    const r = await runMode(mode, tcp, primary, o);
    const cpu = perOp(cpuMs(proxy.pid!) - cpu0, r.ops);
    const shadowCpu = perOp(cpuMs(shadow.pid!) - shadowCpu0, r.ops);
    const stats = (await (await fetch(`http://127.0.0.1:${admin}/stats`)).json()) as { capture: Record<string, unknown>; mirror?: Record<string, unknown> };
    const traffic = mode.startsWith('capture')
      ? { recorded: stats.capture.recorded, dropped: stats.capture.dropped, bytesWritten: stats.capture.bytesWritten }
      : mode.startsWith('mirror') ? { sent: stats.mirror?.sent, matched: stats.mirror?.matched, differed: stats.mirror?.differed, dropped: stats.mirror?.dropped } : {};
    return { ...r, mongoplexCpuUsPerOp: cpu, shadowCpuUsPerOp: shadowCpu, details: traffic };
  } finally {
    if (mode === 'mirror-100-shadow-stopped') process.kill(shadow.pid!, 'SIGCONT');
    await proxy.stop();
  }
}
