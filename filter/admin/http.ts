import { timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { z } from 'zod';
import { CaptureStartSchema, ConfigError } from '../config';
import type { Proxy } from '../proxy';
import { CaptureError } from '../traffic/recorder';
import { SORT_KEYS, type SortKey } from '../traffic/command-stats';
import type { ReloadResult } from './reload';
import { clientList, poolList, proxyStats, serverList } from './views';
import { STATUS_PAGE } from './status-page';

/** Control requests carry small JSON bodies. */
const MAX_BODY_BYTES = 64 * 1024;

export type Send = (status: number, body: unknown) => void;

/** What the admin endpoint controls beyond the engine: the listeners and the configuration source. */
export interface AdminControls {
  /** Stops accepting and closes clients between commands; resolves with the clients left at the deadline. */
  drain(timeoutMs: number): Promise<number>;
  /** Re-reads the configuration and applies it (ConfigError: invalid, nothing applied). */
  reload(): ReloadResult;
}

/** Most rows an inspection request returns. */
const MAX_ROWS = 10_000;
const METHODS = 'only GET, HEAD and POST (control endpoints) are supported';

const PauseSchema = z.strictObject({ timeoutMs: z.number().int().min(1).optional() });
const DrainSchema = z.strictObject({ timeoutMs: z.number().int().min(0).optional() });

/** The endpoints, for the 404 messages (and the manifest tests: probes and hooks name real ones). */
export const GET_ENDPOINTS = ['/', '/livez', '/readyz', '/metrics', '/stats', '/stats/history', '/clients', '/pools', '/servers', '/cursors', '/transactions', '/commands', '/capture'];
export const CONTROL_ENDPOINTS = ['/pause', '/resume', '/drain', '/reload', '/capture/start', '/capture/stop'];

/**
 * Admin endpoint. Reads (GET): the status page (/), /livez, /readyz, /metrics (Prometheus),
 * /stats, /stats/history, and the inspection set /clients, /pools, /servers, /cursors,
 * /transactions, /commands, /capture (`?limit=` bounds rows). Control (POST): /pause, /resume,
 * /drain, /reload, /capture/start, /capture/stop, which need `admin.token` (as
 * `Authorization: Bearer …`) when one is set (a non-loopback admin address needs one: start
 * refuses it otherwise, `ingress/exposure.ts`), and are refused when a web page sent them
 * (browserRefusal). HEAD is answered like GET without a body.
 */
export class AdminServer {
  private readonly server: http.Server;
  /** The address listened on (for the Host check of control requests). */
  private boundHost = '127.0.0.1';

  constructor(
    private readonly proxy: Proxy,
    private readonly token: string | null = null,
    private readonly metrics?: PrometheusExporter,
    private readonly controls?: AdminControls,
  ) {
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const request = adminRequest(req, res);
    if (!request) return;
    const { send, url } = request;
    const path = url.pathname;
    if (req.method === 'POST') return this.control(req, path, send);
    if (req.method !== 'GET' && req.method !== 'HEAD') return request.badMethod();
    const limit = rowLimit(url);
    switch (path) {
      case '/':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        return void res.end(STATUS_PAGE);
      case '/livez':
        return send(200, { live: true });
      case '/readyz': {
        const report = this.proxy.readiness.check();
        return send(report.ready ? 200 : 503, report);
      }
      case '/stats':
        return send(200, proxyStats(this.proxy));
      case '/stats/history':
        return send(200, { samples: this.proxy.history.since(Number(url.searchParams.get('since') ?? 0) || 0) });
      case '/clients':
        return send(200, clientList(this.proxy, limit));
      case '/pools':
        return send(200, { pools: poolList(this.proxy) });
      case '/servers':
        return send(200, { servers: serverList(this.proxy) });
      case '/cursors':
        return send(200, { total: this.proxy.cursors.size, cursors: this.proxy.cursors.list(limit) });
      case '/transactions':
        return send(200, { total: this.proxy.transactions.size, transactions: this.proxy.transactions.list(limit) });
      case '/commands': {
        const sort = url.searchParams.get('sort') ?? 'count';
        if (!SORT_KEYS.includes(sort as SortKey)) return send(400, { error: `sort must be one of ${SORT_KEYS.join(', ')}` });
        return send(200, { enabled: this.proxy.commandStats.active, ...this.proxy.commandStats.top(limit, sort as SortKey) });
      }
      case '/capture':
        return send(200, this.proxy.recorder.status());
      case '/metrics':
        if (!this.metrics) return send(404, { error: 'no Prometheus reader in this process' });
        return this.metrics.getMetricsRequestHandler(req, res);
      default:
        send(404, { error: `no such endpoint ${path}; try ${GET_ENDPOINTS.join(', ')}` });
    }
  }

  /** POST: control requests, authorized first, then read (bounded) and acted on. */
  private control(req: http.IncomingMessage, path: string, send: Send): void {
    if (!CONTROL_ENDPOINTS.includes(path)) {
      req.resume();
      return send(404, { error: `no such control endpoint ${path}; try POST ${CONTROL_ENDPOINTS.join(', ')}` });
    }
    const fromPage = browserRefusal(req, this.boundHost);
    const refusal = fromPage ? { status: 403, error: fromPage } : this.authorize(req);
    if (refusal) {
      req.resume();
      return send(refusal.status, { error: refusal.error });
    }
    readBody(req, send).then((raw) => {
      if (raw === undefined) return;
      let body: unknown = {};
      const text = raw.trim();
      try {
        if (text) body = JSON.parse(text);
      } catch {
        return send(400, { error: 'the body must be JSON' });
      }
      this.act(path, body, send);
    }, () => undefined);
  }

  /** Validates a control request's body against `schema`; undefined (and a 400 sent) when it does not fit. */
  private body<T extends z.ZodType>(schema: T, body: unknown, send: Send, what: string): z.infer<T> | undefined {
    const parsed = schema.safeParse(body);
    if (parsed.success) return parsed.data;
    send(400, { error: `invalid ${what}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}` });
    return undefined;
  }

  private act(path: string, body: unknown, send: Send): void {
    const proxy = this.proxy;
    switch (path) {
      case '/pause': {
        const p = this.body(PauseSchema, body, send, 'pause settings');
        if (!p) return;
        const maxMs = proxy.config.admin.maxPauseMs;
        const timeoutMs = Math.min(p.timeoutMs ?? maxMs, maxMs);
        proxy.gate.pause(timeoutMs);
        proxy.log.warn({ timeoutMs }, 'paused by POST /pause: commands wait before they are forwarded');
        return send(200, proxy.gate.status());
      }
      case '/resume': {
        const resumed = proxy.gate.resume('resumed');
        return send(200, { resumed, ...proxy.gate.status() });
      }
      case '/drain': {
        const d = this.body(DrainSchema, body, send, 'drain settings');
        if (!d) return;
        if (!this.controls) return send(409, { error: 'this mongoplex cannot drain from the admin endpoint' });
        const timeoutMs = d.timeoutMs ?? proxy.config.listen.drainTimeoutMs;
        const clients = proxy.clientCount;
        proxy.log.warn({ timeoutMs, clients }, 'draining by POST /drain: no new clients; open ones close between commands');
        this.controls.drain(timeoutMs).then(
          (left) => proxy.log.info({ left }, left > 0 ? 'drain deadline reached: the remaining clients stay open' : 'drained: every client closed between commands'),
          (err: Error) => proxy.log.error({ err: err.message }, 'drain failed'),
        );
        return send(202, { draining: true, clients, timeoutMs });
      }
      case '/reload': {
        if (!this.controls) return send(409, { error: 'this mongoplex cannot reload from the admin endpoint' });
        try {
          const result = this.controls.reload();
          proxy.log.info({ applied: result.applied.map((c) => c.setting), needsRestart: result.needsRestart.map((c) => c.setting) }, 'configuration reloaded');
          return send(200, result);
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          return send(400, { error: err.message });
        }
      }
      case '/capture/stop':
        proxy.recorder.stop('stopped by POST /capture/stop').then((s) => send(200, s), (err: Error) => send(500, { error: err.message }));
        return;
      case '/capture/start': {
        const c = this.body(CaptureStartSchema, body, send, 'capture settings');
        if (!c) return;
        const overrides = Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined));
        try {
          send(200, proxy.recorder.start(overrides));
        } catch (err) {
          if (!(err instanceof CaptureError)) throw err;
          send(409, { error: err.message });
        }
      }
    }
  }

  private authorize(req: http.IncomingMessage): { status: number; error: string } | undefined {
    // Without a token the admin endpoint is on loopback: start refuses anything else.
    if (this.token === null) return undefined;
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const a = Buffer.from(given);
    const b = Buffer.from(this.token);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return { status: 401, error: 'control endpoints need Authorization: Bearer <admin.token>' };
    return undefined;
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    this.boundHost = host;
    return listenHttp(this.server, host, port);
  }

  close(): Promise<void> {
    return closeHttp(this.server);
  }
}

/**
 * Listens on host:port. exclusive: in a cluster worker the port is the worker's own (not
 * shared through the primary), so each worker's admin endpoint has one the primary can ask.
 */
export function listenHttp(server: http.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

export function closeHttp(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * A control request's body as text. Past MAX_BODY_BYTES, `send` answers 413 and the request is
 * destroyed (in that order, so the answer goes out); the promise then resolves undefined.
 */
export function readBody(req: http.IncomingMessage, send: Send): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        send(413, { error: `request body over ${MAX_BODY_BYTES} bytes` });
        req.destroy();
        resolve(undefined);
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}


/** Host names a loopback admin endpoint answers to (its own bound address is added). */
const LOOPBACK_NAMES: ReadonlySet<string> = new Set(['localhost', '127.0.0.1', '[::1]']);
const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '::', '[::]']);

/**
 * Why a control request is refused as one a web page made (403), or undefined. A browser on
 * the admin host can reach a loopback endpoint: a cross-site page sends a "simple" POST (a
 * form, or fetch with a text/plain body: no CORS preflight) with its `Origin`, and a DNS
 * rebinding page does so under its own `Host`. Tools (curl, scripts, the workers' primary)
 * send neither, and JSON or no body at all.
 */
export function browserRefusal(req: http.IncomingMessage, boundHost: string): string | undefined {
  if (req.headers.origin !== undefined) return `control requests from a web page are refused (Origin: ${req.headers.origin.slice(0, 100)})`;
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) return `control requests take a JSON body with Content-Type: application/json, or none (this one says ${type.slice(0, 100)}; with curl: -H 'content-type: application/json')`;
  if (WILDCARD_HOSTS.has(boundHost)) return undefined;
  const name = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
  const bound = boundHost.includes(':') && !boundHost.startsWith('[') ? `[${boundHost}]` : boundHost;
  if (!LOOPBACK_NAMES.has(name) && name !== bound.toLowerCase()) return `control requests must name this endpoint (${boundHost} or localhost) as their Host, not ${name.slice(0, 100) || '(none)'}`;
  return undefined;
}

/**
 * An admin request's JSON responder and target; undefined (and 400 sent) when the target does
 * not parse. Bigints (cursor ids) are written as strings.
 */
export function adminRequest(req: http.IncomingMessage, res: http.ServerResponse): { send: Send; url: URL; badMethod: () => void } | undefined {
  const send: Send = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
  };
  try {
    return { send, url: new URL(req.url ?? '/', 'http://admin'), badMethod: () => send(405, { error: METHODS }) };
  } catch {
    send(400, { error: 'malformed request target' });
    return undefined;
  }
}

/** Rows an inspection request asks for (`?limit=`, default 1000, at most MAX_ROWS). */
export function rowLimit(url: URL): number {
  return Math.min(MAX_ROWS, Math.max(1, Number(url.searchParams.get('limit') ?? 1000) || 1000));
}
