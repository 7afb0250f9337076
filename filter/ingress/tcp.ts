import * as net from 'node:net';
import type { Proxy } from '../proxy';
import type { ClientTransport } from '../session/transport';
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

  constructor(private readonly proxy: Proxy) {
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.on('error', (err) => proxy.log.error({ err }, 'tcp ingress error'));
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const session = this.proxy.openSession(new SocketTransport(socket));
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
    socket.on('close', () => this.proxy.endSession(session, reason));
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

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
