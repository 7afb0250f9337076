import type { AddressInfo } from 'node:net';
import type { Config } from './config';
import { createLogger, type Logger } from './log';
import { Proxy } from './proxy';
import { TcpIngress } from './ingress/tcp';
import { ExtProcIngress } from './ingress/ext-proc';
import { MemberListeners } from './ingress/member-listeners';
import { AdminServer } from './admin/http';
import { prometheusMetrics } from './telemetry/sdk';
import { applyReload, type ReloadResult } from './admin/reload';
import { ConfigError, listenerAuthModes } from './config';
import { refuseUnprotectedListeners } from './ingress/exposure';
import { ReloadingTlsFiles } from './ingress/tls-files';
import { Metrics } from './telemetry/metrics';

/** A running mongoplex: the engine, its TCP ingress and its admin endpoint. */
export interface RunningServer {
  readonly proxy: Proxy;
  /** The TCP ingress address, when enabled. */
  readonly tcp: AddressInfo | undefined;
  /** The ext_proc gRPC ingress port, when enabled. */
  readonly grpcPort: number | undefined;
  readonly admin: AddressInfo | undefined;
  /**
   * Graceful shutdown, first half: stop accepting, fail /readyz, let every client's requests
   * already read finish and reach it, closing clients between requests. Resolves with how many
   * clients were still open at the deadline; `stop()` then ends everything. A second call
   * returns the first one's promise.
   */
  drain(timeoutMs: number): Promise<number>;
  /** Re-reads the configuration (ConfigError when invalid: nothing changes) and applies what can change live. */
  reload(): ReloadResult;
  stop(): Promise<void>;
}

export interface ServerOptions {
  /** Where a reload gets the configuration again (main: the file and the environment); without it, reload is refused. */
  readonly reloadConfig?: () => Config;
}

export async function startServer(config: Config, log: Logger = createLogger(config.log.level), options: ServerOptions = {}): Promise<RunningServer> {
  await refuseUnprotectedListeners(config);
  const tlsFiles = config.listen.tls.certFile !== null ? new ReloadingTlsFiles(config.listen.tls, log) : undefined;
  // Instruments made before a meter provider exists stay no-ops: install one first.
  const metrics = prometheusMetrics();
  const proxy = new Proxy(config, log);
  const unauthenticated = Object.entries(listenerAuthModes(config)).filter(([, mode]) => mode === 'none').map(([listener]) => listener);
  if (unauthenticated.length > 0) {
    log.warn({ setting: 'auth.mode', listeners: unauthenticated }, `auth.mode none (${unauthenticated.join(' and ')} listeners): clients are NOT authenticated; every client acts with mongoplex's own upstream identity. Use it only on an isolated network (auth.mode proxy verifies clients)`);
  }
  proxy.start();
  try {
    await proxy.verifyUpstreamLogin();
  } catch (err) {
    await proxy.stop();
    throw err;
  }
  let draining: Promise<number> | undefined;
  // One drain per process: a SIGTERM after POST /drain (a Kubernetes preStop hook, then the
  // kubelet's signal) waits for the drain already running, with its deadline.
  const drain = (timeoutMs: number): Promise<number> => (draining ??= drainOnce(timeoutMs));
  const drainOnce = async (timeoutMs: number): Promise<number> => {
    // Load balancers see /readyz fail and stop sending new clients before the listeners close.
    proxy.announceDrain();
    const delay = Math.min(config.listen.drainDelayMs, timeoutMs);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    ingress?.stopAccepting();
    extProc?.stopAccepting();
    await members?.stopAccepting();
    return proxy.drain(timeoutMs - delay);
  };
  const reload = (): ReloadResult => {
    try {
      if (!options.reloadConfig) throw new ConfigError('mongoplex was started without a configuration source to re-read');
      return applyReload(proxy, options.reloadConfig());
    } catch (err) {
      Metrics.reloads.add(1, { result: 'failed' });
      throw err;
    }
  };
  let ingress: TcpIngress | undefined;
  let tcp: AddressInfo | undefined;
  let members: MemberListeners | undefined;
  let extProc: ExtProcIngress | undefined;
  let grpcPort: number | undefined;
  let admin: AdminServer | undefined;
  let adminAddress: AddressInfo | undefined;
  try {
    if (config.topology.mode !== 'single') await proxy.monitor.ready(config.upstream.connectTimeoutMs);
    if (proxy.addresses) {
      // Replset mode: one listener per member (replica-set view)...
      members = new MemberListeners(proxy, proxy.monitor, proxy.addresses, config.listen.host, tlsFiles);
      await members.ready();
    }
    // ...and the plain listener, a mongos view of the same deployment.
    if (config.listen.port !== null) {
      ingress = new TcpIngress(proxy, undefined, tlsFiles);
      tcp = await ingress.listen(config.listen.host, config.listen.port);
    }
    if (config.listen.grpc !== null) {
      extProc = new ExtProcIngress(proxy);
      grpcPort = await extProc.listen(config.listen.grpc);
    }
    if (config.admin.port !== null) {
      admin = new AdminServer(proxy, config.admin.token, metrics, { drain, reload });
      adminAddress = await admin.listen(config.admin.host, config.admin.port);
    }
  } catch (err) {
    // A port or socket path in use, a TLS file missing: nothing opened so far stays behind.
    await Promise.all([ingress?.close(true), members?.close(), extProc?.close(), admin?.close(), proxy.stop()]);
    throw err;
  }
  log.info({ tcp: tcp && `${tcp.address}:${tcp.port}`, grpcPort, admin: adminAddress && `${adminAddress.address}:${adminAddress.port}`, upstream: config.upstream.servers }, 'mongoplex listening');
  return {
    proxy,
    tcp,
    grpcPort,
    admin: adminAddress,
    drain,
    reload,
    async stop() {
      await Promise.all([ingress?.close(), members?.close(), extProc?.close(), admin?.close(), proxy.stop()]);
    },
  };
}
