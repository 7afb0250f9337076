#!/usr/bin/env node
import cluster from 'node:cluster';
import { mkdirSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, WORKER_INDEX_VARIABLE, type Config } from './config';
import { settingsReference } from './config/reference';
import { planWorkers, workerConfig } from './workers/plan';
import { runPrimary } from './workers/primary';
import type { FromWorker, ToWorker } from './workers/supervisor';
import { usersCommand } from './auth/users-command';
import { createLogger } from './log';
import { startServer } from './server';
import { startTelemetry } from './telemetry/sdk';
import { envoyConfigCommand, ENVOY_CONFIG_USAGE } from './envoy/cli';
import { formatReport, progressPrinter, replay, replayTarget, writeJsonReport } from './traffic/replay';

const USAGE = `usage: mongoplex [--config FILE] [--print-env]
       mongoplex envoy-config --help
       mongoplex replay --help
       mongoplex users add --help

  --config FILE   YAML or JSON configuration (default: $MONGOPLEX_CONFIG, else built-in defaults)
  --print-env     list every MONGOPLEX_* environment setting, the config path it overrides and its default`;

async function main(): Promise<void> {
  if (process.argv[2] === 'envoy-config') {
    if (process.argv.includes('--help')) {
      console.log(ENVOY_CONFIG_USAGE);
      return;
    }
    try {
      process.stdout.write(envoyConfigCommand(process.argv.slice(3)));
    } catch (err) {
      console.error(`mongoplex envoy-config: ${(err as Error).message}\n${ENVOY_CONFIG_USAGE}`);
      process.exit(2);
    }
    return;
  }
  if (process.argv[2] === 'replay') return replayCommand(process.argv.slice(3));
  if (process.argv[2] === 'users') return usersCommand(process.argv.slice(3));
  let args;
  try {
    args = parseArgs({ options: { config: { type: 'string' }, 'print-env': { type: 'boolean' }, help: { type: 'boolean' } } }).values;
  } catch (err) {
    console.error(`mongoplex: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }
  if (args['print-env']) {
    for (const r of settingsReference()) console.log(`${r.env}\t${r.setting}\t${JSON.stringify(r.default)}`);
    return;
  }
  let config;
  const configFile = args.config ?? process.env.MONGOPLEX_CONFIG;
  // A worker of workers mode: the primary said which one (index/count).
  const worker = cluster.isWorker ? parseWorkerIndex(process.env[WORKER_INDEX_VARIABLE]) : undefined;
  const readConfig = (): Config => {
    const c = loadConfig({ file: configFile });
    return worker ? workerConfig(c, worker.index, worker.count) : c;
  };
  let plan;
  try {
    config = readConfig();
    if (!worker) plan = planWorkers(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`mongoplex: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const log = worker ? createLogger(config.log.level).child({ worker: worker.index }) : createLogger(config.log.level);
  if (plan && plan.count > 1) {
    try {
      return await runPrimary(config, plan.count, log, () => planWorkers(loadConfig({ file: configFile })).count);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      console.error(`mongoplex: ${err.message}`);
      process.exit(2);
    }
  }
  if (plan?.limitedBy) log.info({ setting: 'workers', cores: availableParallelism() }, `workers auto: one process, because ${plan.limitedBy}`);
  if (worker && config.capture.dir !== null) mkdirSync(config.capture.dir, { recursive: true, mode: 0o700 });
  // Each worker exports its own series: its resource says which worker it is.
  const stopTelemetry = await startTelemetry(log, process.env, worker ? { 'mongoplex.worker': worker.index, 'service.instance.id': `${hostname()}/worker-${worker.index}` } : {});
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(config, log, { reloadConfig: readConfig });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`mongoplex: ${err.message}`);
    process.exit(2);
  }
  const listening = { tcp: server.tcp ? `${server.tcp.address}:${server.tcp.port}` : null, grpcPort: server.grpcPort ?? null, admin: server.admin ? `${server.admin.address}:${server.admin.port}` : null };
  if (worker) {
    const message: FromWorker = { type: 'listening', listening: { ...listening, admin: server.admin ? { host: server.admin.address, port: server.admin.port } : null } };
    process.send!(message);
  } else {
    // One line on stdout that scripts can wait for.
    console.log(JSON.stringify({ event: 'listening', ...listening }));
  }
  let stopping = false;
  // First signal: drain (clients get the replies to what they sent), then stop. A second one stops at once.
  const stop = (signal: string): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: stopping without waiting for clients');
      process.exit(1);
    }
    stopping = true;
    const timeoutMs = config.listen.drainTimeoutMs;
    log.info({ signal, clients: server.proxy.clientCount, timeoutMs }, 'draining: no new clients; open ones are closed once their requests are answered');
    server.drain(timeoutMs)
      .then((left) => {
        if (left > 0) log.warn({ clients: left }, 'drain deadline reached: closing the remaining clients');
        else log.info('drained: every client closed between requests');
        return server.stop();
      })
      .then(() => stopTelemetry?.())
      .then(() => process.exit(0), () => process.exit(1));
  };
  // SIGHUP: re-read the configuration (the file and the environment), apply what can change live.
  const reload = (): void => {
    try {
      const { applied, needsRestart } = server.reload();
      log.info({ applied: applied.map((c) => c.setting), needsRestart: needsRestart.map((c) => c.setting) }, 'SIGHUP: configuration reloaded');
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      log.error({ err: err.message }, 'SIGHUP: configuration not reloaded (the running one stays)');
    }
  };
  if (worker) {
    // The primary passes signals on as messages; a terminal's SIGINT or SIGHUP reaches the
    // whole process group, and only the primary's counts. SIGTERM to one worker stops that
    // worker (the primary replaces it).
    process.on('SIGINT', () => undefined);
    process.on('SIGHUP', () => undefined);
    process.on('message', (m: ToWorker) => {
      if (m?.type === 'stop') stop('primary: stop');
      else if (m?.type === 'reload') reload();
    });
  } else {
    process.on('SIGHUP', reload);
    process.on('SIGINT', () => stop('SIGINT'));
  }
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** MONGOPLEX_WORKER_INDEX, `index/count`, as the primary sets it. */
function parseWorkerIndex(value: string | undefined): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(value ?? '');
  if (!m || Number(m[1]) >= Number(m[2])) throw new Error(`mongoplex worker: ${WORKER_INDEX_VARIABLE} must be index/count (got ${value ?? 'nothing'})`);
  return { index: Number(m[1]), count: Number(m[2]) };
}

const REPLAY_USAGE = `usage: mongoplex replay FILE... --target mongodb://HOST:PORT [options]

  Sends the commands of capture files (from capture.dir) to another server, one connection per
  recorded client connection, in each connection's recorded order, and reports what differed.

  --target URI            the server to replay against (mongodb://host:port, no credentials)
  --speed N               N times the recorded pace (default 1: the recorded timing)
  --as-fast-as-possible   each connection sends its next command as soon as the last is answered
  --reads-only            skip writes (transactions' reads run outside their transaction)
  --json FILE             also write the report as JSON (- for stdout, instead of the table)
  --connect-timeout-ms N  (default 10000)
  --no-progress           no progress bar on stderr`;

async function replayCommand(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        target: { type: 'string' }, speed: { type: 'string' }, 'as-fast-as-possible': { type: 'boolean' }, 'reads-only': { type: 'boolean' },
        json: { type: 'string' }, 'connect-timeout-ms': { type: 'string' }, 'no-progress': { type: 'boolean' }, help: { type: 'boolean' },
      },
    });
  } catch (err) {
    console.error(`mongoplex replay: ${(err as Error).message}\n${REPLAY_USAGE}`);
    process.exit(2);
  }
  const { values: v, positionals: files } = parsed;
  if (v.help) {
    console.log(REPLAY_USAGE);
    return;
  }
  const fail = (message: string): never => {
    console.error(`mongoplex replay: ${message}\n${REPLAY_USAGE}`);
    process.exit(2);
  };
  if (files.length === 0) fail('name at least one capture file');
  if (!v.target) fail('--target is required');
  if (v.speed !== undefined && v['as-fast-as-possible']) fail('give --speed or --as-fast-as-possible, not both');
  const speed = v['as-fast-as-possible'] ? Infinity : Number(v.speed ?? '1');
  if (!(speed > 0)) fail(`--speed must be a positive number (got ${v.speed})`);
  const connectTimeoutMs = Number(v['connect-timeout-ms'] ?? '10000');
  if (!(connectTimeoutMs > 0)) fail('--connect-timeout-ms must be a positive number');
  let target = '';
  try {
    target = replayTarget(v.target!);
  } catch (err) {
    fail((err as Error).message);
  }
  let report;
  try {
    report = await replay({
      files, target, speed, readsOnly: v['reads-only'] ?? false, connectTimeoutMs,
      onProgress: v['no-progress'] ? undefined : progressPrinter(process.stderr),
    });
  } catch (err) {
    console.error(`mongoplex replay: ${(err as Error).message}`);
    process.exit(1);
  }
  if (v.json) writeJsonReport(v.json, report);
  if (v.json !== '-') console.log(formatReport(report));
}

main().catch((err) => {
  console.error('mongoplex: fatal:', err);
  process.exit(1);
});
