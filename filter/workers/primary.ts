import type { Config } from '../config';
import type { Logger } from '../log';
import { refuseUnprotectedListeners } from '../ingress/exposure';
import { WorkersAdmin } from './admin';
import { WorkerStartError, WorkerSupervisor, type WorkerListening } from './supervisor';

/** Beyond the workers' own drain deadline: how long they get to close before they are killed. */
const STOP_GRACE_MS = 10_000;

/**
 * Workers mode, the primary process: it serves no client itself. It forks the workers (they
 * share the TCP ingress port; each has its own ext_proc address), serves the admin endpoint
 * with their figures added up, replaces a worker that dies, and passes SIGHUP (reload) and
 * SIGTERM/SIGINT (drain, then stop) on to them.
 */
export async function runPrimary(config: Config, count: number, log: Logger, rereadWorkers: () => number): Promise<void> {
  await refuseUnprotectedListeners(config);
  const supervisor = new WorkerSupervisor(config, count, log);
  let listening: WorkerListening[];
  try {
    listening = await supervisor.start();
  } catch (err) {
    if (!(err instanceof WorkerStartError)) throw err;
    console.error(`mongoplex: ${err.message}`);
    process.exit(err.exitCode);
  }
  const admin = config.admin.port !== null ? new WorkersAdmin(() => supervisor.workers, () => supervisor.restarts) : undefined;
  const adminAddress = admin ? await admin.listen(config.admin.host, config.admin.port!) : undefined;
  const first = listening[0]!;
  log.info({ workers: count, tcp: first.tcp, grpcPorts: listening.map((l) => l.grpcPort), admin: adminAddress && `${adminAddress.address}:${adminAddress.port}` }, 'mongoplex listening (workers mode)');
  // The same line as one process prints, plus every worker's ext_proc port.
  console.log(JSON.stringify({ event: 'listening', tcp: first.tcp, grpcPort: first.grpcPort, grpcPorts: listening.map((l) => l.grpcPort), admin: adminAddress ? `${adminAddress.address}:${adminAddress.port}` : null, workers: count }));
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: stopping the workers without waiting for clients');
      supervisor.kill();
      process.exit(1);
    }
    stopping = true;
    const timeoutMs = config.listen.drainDelayMs + config.listen.drainTimeoutMs + STOP_GRACE_MS;
    log.info({ signal, workers: count }, 'draining: every worker stops accepting and closes its clients once their requests are answered');
    supervisor.stop(timeoutMs)
      .then(async (inTime) => {
        if (!inTime) log.warn({ timeoutMs }, 'workers still running at the deadline were killed');
        await admin?.close();
        process.exit(inTime ? 0 : 1);
      }, () => process.exit(1));
  };
  process.on('SIGHUP', () => {
    log.info('SIGHUP: every worker re-reads the configuration');
    supervisor.reload();
    // The workers apply their shares; how many workers there are is the primary's to say.
    try {
      const wanted = rereadWorkers();
      if (wanted !== count) log.warn({ setting: 'workers', running: count, configured: wanted }, 'SIGHUP: the number of workers changes only with a restart');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'SIGHUP: the configuration does not load (each worker keeps its running one)');
    }
  });
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}
