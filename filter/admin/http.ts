import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Proxy } from '../proxy';

/**
 * Read-only admin endpoint: GET /livez (the process serves), GET /readyz (it can serve new
 * clients: 200 or 503 with the reasons) and GET /stats (pools, clients, routes, counters).
 * Query strings are ignored; HEAD is answered like GET without a body.
 */
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
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: 'only GET and HEAD are supported' });
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://admin').pathname;
    } catch {
      return send(400, { error: 'malformed request target' });
    }
    switch (path) {
      case '/livez':
        return send(200, { live: true });
      case '/readyz': {
        const report = this.proxy.readiness.check();
        return send(report.ready ? 200 : 503, report);
      }
      case '/stats':
        return send(200, this.proxy.stats());
      default:
        send(404, { error: `no such endpoint ${path}; try /livez, /readyz or /stats` });
    }
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
