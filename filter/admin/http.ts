import { timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { CaptureStartSchema } from '../config';
import type { Proxy } from '../proxy';
import { CaptureError } from '../traffic/recorder';

/** Control requests carry small JSON bodies. */
const MAX_BODY_BYTES = 64 * 1024;

type Send = (status: number, body: unknown) => void;

/**
 * Admin endpoint: GET /livez (the process serves), GET /readyz (it can serve new clients: 200
 * or 503 with the reasons), GET /stats (pools, clients, routes, counters), GET /capture; and
 * the control requests POST /capture/start and POST /capture/stop, which need `admin.token`
 * (as `Authorization: Bearer …`) when one is set, and are refused on a non-loopback address
 * without one. Query strings are ignored; HEAD is answered like GET without a body.
 */
export class AdminServer {
  private readonly server: http.Server;
  private loopback = true;

  constructor(private readonly proxy: Proxy, private readonly token: string | null = null) {
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const send: Send = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
    };
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://admin').pathname;
    } catch {
      return send(400, { error: 'malformed request target' });
    }
    if (req.method === 'POST') return this.control(req, path, send);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: 'only GET, HEAD and POST (control endpoints) are supported' });
    switch (path) {
      case '/livez':
        return send(200, { live: true });
      case '/readyz': {
        const report = this.proxy.readiness.check();
        return send(report.ready ? 200 : 503, report);
      }
      case '/stats':
        return send(200, this.proxy.stats());
      case '/capture':
        return send(200, this.proxy.recorder.status());
      default:
        send(404, { error: `no such endpoint ${path}; try /livez, /readyz, /stats or /capture` });
    }
  }

  /** POST: control requests, authorized first, then read (bounded) and acted on. */
  private control(req: http.IncomingMessage, path: string, send: Send): void {
    if (path !== '/capture/start' && path !== '/capture/stop') {
      req.resume();
      return send(404, { error: `no such control endpoint ${path}; try POST /capture/start or /capture/stop` });
    }
    const refusal = this.authorize(req);
    if (refusal) {
      req.resume();
      return send(refusal.status, { error: refusal.error });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        send(413, { error: `request body over ${MAX_BODY_BYTES} bytes` });
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) return;
      if (path === '/capture/stop') {
        this.proxy.recorder.stop('stopped by POST /capture/stop').then((s) => send(200, s), (err: Error) => send(500, { error: err.message }));
        return;
      }
      let body: unknown = {};
      const text = Buffer.concat(chunks).toString('utf8').trim();
      try {
        if (text) body = JSON.parse(text);
      } catch {
        return send(400, { error: 'the body must be JSON' });
      }
      const parsed = CaptureStartSchema.safeParse(body);
      if (!parsed.success) return send(400, { error: `invalid capture settings: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}` });
      const overrides = Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined));
      try {
        send(200, this.proxy.recorder.start(overrides));
      } catch (err) {
        if (!(err instanceof CaptureError)) throw err;
        send(409, { error: err.message });
      }
    });
  }

  private authorize(req: http.IncomingMessage): { status: number; error: string } | undefined {
    if (this.token === null) {
      return this.loopback ? undefined : { status: 403, error: 'control endpoints on a non-loopback admin address need admin.token' };
    }
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const a = Buffer.from(given);
    const b = Buffer.from(this.token);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return { status: 401, error: 'control endpoints need Authorization: Bearer <admin.token>' };
    return undefined;
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        const address = this.server.address() as AddressInfo;
        this.loopback = isLoopback(address.address);
        resolve(address);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function isLoopback(address: string): boolean {
  if (address === '::1') return true;
  if (address.startsWith('::ffff:')) return isLoopback(address.slice(7));
  return isIP(address) === 4 && address.startsWith('127.');
}
