import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Proxy } from '../proxy';

/** Read-only admin endpoint: GET /healthz (liveness) and GET /stats (pools, clients, routes, counters as JSON). */
export class AdminServer {
  private readonly server: http.Server;

  constructor(private readonly proxy: Proxy) {
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
    };
    if (req.method !== 'GET') return send(405, { error: 'only GET is supported' });
    if (req.url === '/healthz') return send(200, { ok: true });
    if (req.url === '/stats') return send(200, this.proxy.stats());
    send(404, { error: `no such endpoint ${req.url}; try /healthz or /stats` });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
