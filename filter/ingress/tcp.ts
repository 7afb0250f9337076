import * as net from 'node:net';
import type { Proxy } from '../proxy';
import type { ClientTransport } from '../session/transport';
import type { ServerAddress } from '../upstream/address';
import { whenDrained } from './drain';

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

/** Plain TCP ingress: each accepted socket becomes one client session of the engine. */
export class TcpIngress {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  /** `member`: in replset mode, the replica-set member this listener is the proxy address of. */
  constructor(private readonly proxy: Proxy, private readonly member?: ServerAddress) {
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.on('error', (err) => proxy.log.error({ err }, 'tcp ingress error'));
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const session = this.proxy.openSession(new SocketTransport(socket), this.member);
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
    if (dropClients) for (const s of this.sockets) s.destroy();
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
