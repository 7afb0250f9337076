import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, loadConfig } from '../filter/config';
import { createLogger } from '../filter/log';
import { startServer } from '../filter/server';
import { buildBootstrap } from '../filter/envoy/bootstrap';
import { startTelemetry } from '../filter/telemetry/sdk';
import { Envoy } from './envoy';
import { FerretDB } from './ferretdb';
import { Jaeger } from './jaeger';
import { portInUse } from './ports';
import { logTail } from './process';

/**
 * The dev stack (`npm run dev`): an embedded FerretDB (data kept in .cache/dev/), mongoplex, and
 * a real Envoy whose listener streams client connections to mongoplex over network ext_proc.
 * Prints the connection string; Ctrl-C stops everything. It supervises what it started: if
 * FerretDB, Envoy or mongoplex dies, it says which one and how (with the end of its log), stops
 * the others and exits 1. mongoplex's readiness changes are printed as they happen.
 * MONGOPLEX_UPSTREAM_SERVERS=host:port puts the stack in front of your own MongoDB instead.
 */
const ROOT = path.resolve(__dirname, '..', '..');
/** The dev stack's ports, each with the environment variable that moves it. */
const PORTS = {
  envoy: devPort('DEV_ENVOY_PORT', 27017),
  envoyAdmin: devPort('DEV_ENVOY_ADMIN_PORT', 9902),
  ferretdb: devPort('DEV_FERRETDB_PORT', 27018),
  grpc: devPort('DEV_GRPC_PORT', 50051),
  admin: devPort('DEV_ADMIN_PORT', 9901),
  jaegerOtlp: devPort('DEV_JAEGER_OTLP_PORT', 4318),
  jaeger: devPort('DEV_JAEGER_PORT', 16686),
};

/** `npm run dev -- --traces`: also a Jaeger v2 that mongoplex sends its spans to. */
const TRACES = process.argv.slice(2).includes('--traces');
for (const a of process.argv.slice(2)) {
  if (a !== '--traces') {
    console.error(`dev stack: unknown option ${a} (the one option is --traces)`);
    process.exit(2);
  }
}

function devPort(variable: string, fallback: number): { variable: string; port: number } {
  const raw = process.env[variable];
  const port = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(`dev stack: ${variable}=${raw} is not a port number (1-65535)`);
    process.exit(2);
  }
  return { variable, port };
}

/**
 * Checks every port the stack will listen on before anything starts, so a port already taken
 * (a local mongod on 27017, say) is reported by name instead of as a readiness time-out.
 */
async function takenPorts(wanted: Array<{ variable: string; port: number }>): Promise<string[]> {
  const taken: string[] = [];
  for (const { variable, port } of wanted) {
    if (await portInUse(port)) taken.push(`port ${port} (${variable}) is already in use on 127.0.0.1: set ${variable} to a free port`);
  }
  return taken;
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function main(): Promise<void> {
  const ownUpstream = process.env.MONGOPLEX_UPSTREAM_SERVERS;
  const cleanups: Array<() => Promise<void>> = [];
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  /** One of the stack's processes ended by itself: say so, stop the rest, exit 1. */
  const died = (what: string, how: string, log: string): void => {
    if (stopping) return;
    console.error(`\ndev stack: ${what} ${how}; stopping the rest of the stack.`);
    const tail = logTail(log);
    if (tail) console.error(`  last lines of its log:\n${tail}`);
    void stopAll().then(() => process.exit(1));
  };
  const crashed = (err: unknown): void => {
    died('mongoplex', `failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`, '');
  };
  process.on('uncaughtException', crashed);
  process.on('unhandledRejection', crashed);
  try {
    const embedded = ownUpstream ? undefined : new FerretDB({ dir: process.env.DEV_DATA_DIR ?? path.join(ROOT, '.cache', 'dev', 'ferretdb'), port: PORTS.ferretdb.port });
    const config = loadConfig({
      file: process.env.MONGOPLEX_CONFIG,
      overrides: {
        listen: { grpc: `127.0.0.1:${PORTS.grpc.port}` },
        admin: { port: PORTS.admin.port },
        ...(embedded ? { upstream: { servers: [`${embedded.host}:${PORTS.ferretdb.port}`] } } : {}),
      },
    });
    const wanted = [PORTS.envoy, PORTS.envoyAdmin, PORTS.grpc, PORTS.admin, ...(embedded ? [PORTS.ferretdb] : []), ...(TRACES ? [PORTS.jaegerOtlp, PORTS.jaeger] : [])];
    if (config.listen.port) wanted.push({ variable: 'MONGOPLEX_LISTEN_PORT', port: config.listen.port });
    const taken = await takenPorts(wanted);
    if (taken.length > 0) {
      for (const t of taken) console.error(`dev stack: ${t}`);
      process.exit(2);
    }
    if (embedded) {
      await embedded.start();
      cleanups.push(() => embedded.stop());
      embedded.onUnexpectedExit((how) => died('FerretDB', how, readLog(embedded.logFile)));
    }
    let jaeger: Jaeger | undefined;
    if (TRACES) {
      jaeger = await Jaeger.start({ otlp: PORTS.jaegerOtlp.port, query: PORTS.jaeger.port, ...(process.env.DEV_JAEGER_UI_ASSETS ? { uiAssets: process.env.DEV_JAEGER_UI_ASSETS } : {}) });
      const j = jaeger;
      cleanups.push(() => j.stop());
      j.onUnexpectedExit((how) => died('Jaeger', how, readLog(j.logFile)));
      process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??= `${j.otlpEndpoint}/v1/traces`;
      process.env.OTEL_SERVICE_NAME ??= 'mongoplex';
    }
    const log = createLogger(config.log.level);
    const stopTelemetry = await startTelemetry(log);
    if (stopTelemetry) cleanups.push(stopTelemetry);
    const server = await startServer(config, log);
    cleanups.push(() => server.stop());
    const envoy = await Envoy.start(buildBootstrap({
      admin: { host: '127.0.0.1', port: PORTS.envoyAdmin.port },
      listeners: [{ name: 'main', host: '127.0.0.1', port: PORTS.envoy.port }],
      ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: PORTS.grpc.port }, filterAdmin: { host: '127.0.0.1', port: PORTS.admin.port } },
    }), PORTS.envoyAdmin.port);
    cleanups.push(() => envoy.stop());
    envoy.onUnexpectedExit((how) => died('Envoy', how, envoy.log()));
    watchReadiness(() => server.proxy.readiness.check(), () => stopping);
    console.log('');
    console.log(`  upstream:        ${config.upstream.servers.join(', ')}${embedded ? ` (embedded FerretDB, pid ${embedded.pid}, data in ${embedded.dir})` : ''}`);
    console.log(`  mongoplex:       ext_proc gRPC 127.0.0.1:${PORTS.grpc.port}${server.tcp ? `, TCP ${server.tcp.address}:${server.tcp.port}` : ''}, admin http://127.0.0.1:${PORTS.admin.port}/stats and /readyz (pid ${process.pid})`);
    if (jaeger) {
      console.log(`  jaeger:          OTLP ${jaeger.otlpEndpoint}, query ${jaeger.queryUrl}/ (pid ${jaeger.pid}); spans of service ${process.env.OTEL_SERVICE_NAME}:`);
      console.log(`                   ${jaeger.queryUrl}/api/traces?service=${encodeURIComponent(process.env.OTEL_SERVICE_NAME ?? 'mongoplex')}&limit=20${process.env.DEV_JAEGER_UI_ASSETS ? '' : ' (no UI assets: see docs/observability.md)'}`);
    }
    console.log(`  envoy:           listener 127.0.0.1:${PORTS.envoy.port} (network ext_proc), admin http://127.0.0.1:${PORTS.envoyAdmin.port}/ (pid ${envoy.pid})`);
    console.log('');
    console.log('  connect with:');
    console.log(`    mongodb://127.0.0.1:${PORTS.envoy.port}/`);
    console.log('');
    console.log('  Ctrl-C stops the stack.');
  } catch (err) {
    await stopAll();
    if (err instanceof ConfigError) {
      console.error(`mongoplex: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const stop = (): void => {
    void stopAll().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

/** Prints mongoplex's readiness when it changes (e.g. the upstream went away), checked every second. */
function watchReadiness(check: () => { ready: boolean; reasons: string[] }, stopping: () => boolean): void {
  let last = '';
  const timer = setInterval(() => {
    if (stopping()) return clearInterval(timer);
    const r = check();
    const now = r.ready ? 'ready' : `not ready: ${r.reasons.join('; ')}`;
    if (now !== last) console.log(`dev stack: mongoplex is ${now}`);
    last = now;
  }, 1000);
  timer.unref();
}

main().catch((err) => {
  console.error('dev stack failed:', err);
  process.exit(1);
});
