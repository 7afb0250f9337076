import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Proxy } from '../proxy';
import type { ClientTransport } from '../session/transport';
import type { ServerAddress } from '../upstream/address';
import { Metrics } from '../telemetry/metrics';
import { whenDrained } from './drain';
import type { ReloadingTlsFiles } from './tls-files';

/** A client's TCP socket as a session transport. */
class SocketTransport implements ClientTransport {
  readonly remote: string;
  constructor(private readonly socket: net.Socket) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
  }
  write(bytes: Buffer): boolean {
    if (this.socket.destroyed) return true;
    return this.socket.write(bytes);
  }
  waitForDrain(): Promise<void> {
    return whenDrained(this.socket);
  }
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }
  close(): void {
    this.socket.end();
    this.socket.destroySoon();
  }
}

/**
 * TCP ingress, plain or TLS (listen.tls): each accepted socket becomes one client session of
 * the engine. A TLS client becomes a session once its handshake completes.
 */
export class TcpIngress {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly stopReloading: (() => void) | undefined;

  /** `member`: in replset mode, the replica-set member this listener is the proxy address of. */
  constructor(private readonly proxy: Proxy, private readonly member?: ServerAddress, tlsFiles?: ReloadingTlsFiles) {
    if (tlsFiles) {
      const server = tls.createServer(tlsFiles.current, (socket) => this.accept(socket));
      this.stopReloading = tlsFiles.onChange((options) => server.setSecureContext(options));
      server.on('tlsClientError', (err) => {
        Metrics.tlsHandshakeFailures.add(1);
        proxy.log.debug({ err: err.message }, 'client TLS handshake failed');
      });
      this.server = server;
    } else {
      this.server = net.createServer((socket) => this.accept(socket));
    }
    this.server.on('error', (err) => proxy.log.error({ err }, 'tcp ingress error'));
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const session = this.proxy.openSession(new SocketTransport(socket), this.member, 'tcp');
    if (!session) {
      socket.destroy();
      return;
    }
    let reason = 'client_closed';
    socket.on('data', (chunk: Buffer) => session.receive(chunk));
    socket.on('error', (err) => {
      reason = 'client_error';
      this.proxy.log.debug({ err: err.message, session: session.id }, 'client socket error');
    });
    this.sockets.add(socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.proxy.endSession(session, reason);
    });
  }

  listen(host: string, port: number): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port, backlog: 4096 }, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  /** Stops accepting new connections; those already accepted carry on. */
  stopAccepting(): void {
    if (this.server.listening) this.server.close();
  }

  /** Stops accepting; with `dropClients`, also closes the connections it accepted. */
  close(dropClients = false): Promise<void> {
    this.stopReloading?.();
    if (dropClients) for (const s of this.sockets) s.destroy();
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
