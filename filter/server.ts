import type { AddressInfo } from 'node:net';
import type { Config } from './config';
import { createLogger, type Logger } from './log';
import { Proxy } from './proxy';
import { TcpIngress } from './ingress/tcp';
import { AdminServer } from './admin/http';

/** A running mongoplex: the engine, its TCP ingress and its admin endpoint. */
export interface RunningServer {
  readonly proxy: Proxy;
  readonly tcp: AddressInfo;
  readonly admin: AddressInfo | undefined;
  stop(): Promise<void>;
}

export async function startServer(config: Config, log: Logger = createLogger(config.log.level)): Promise<RunningServer> {
  const proxy = new Proxy(config, log);
  proxy.start();
  const ingress = new TcpIngress(proxy);
  const tcp = await ingress.listen(config.listen.host, config.listen.port);
  let admin: AdminServer | undefined;
  let adminAddress: AddressInfo | undefined;
  if (config.admin.port !== null) {
    admin = new AdminServer(proxy);
    adminAddress = await admin.listen(config.admin.host, config.admin.port);
  }
  log.info({ tcp: `${tcp.address}:${tcp.port}`, admin: adminAddress && `${adminAddress.address}:${adminAddress.port}`, upstream: config.upstream.servers }, 'mongoplex listening');
  return {
    proxy,
    tcp,
    admin: adminAddress,
    async stop() {
      await Promise.all([ingress.close(), admin?.close(), proxy.stop()]);
    },
  };
}
