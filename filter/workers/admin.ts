import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { STATUS_PAGE } from '../admin/status-page';
import { adminRequest, browserRefusal, closeHttp, listenHttp, readBody, rowLimit } from '../admin/http';
import type { SortKey } from '../traffic/command-stats';
import { mergeCommandRows, mergeHistory, mergeJson, mergePrometheus, mergeReadiness, type Json } from './merge';
import type { WorkerState } from './supervisor';

/** A worker that has not answered the primary's question in this long is reported as not answering. */
const WORKER_TIMEOUT_MS = 5000;
/** Lists the workers' answers are joined into are cut to `limit` rows (default as the workers'). */
const LISTS = ['clients', 'cursors', 'transactions'];

interface Answer {
  readonly worker: number;
  readonly status: number;
  readonly body: string;
  readonly error?: string;
}

/**
 * The admin endpoint of the primary in workers mode: the address configured in admin.host and
 * admin.port, answering with the workers' figures added up. Each request is asked of every
 * worker's own admin endpoint (loopback, a port of its own) and the answers merged: /metrics
 * sums series, /readyz is ready when every worker is, /stats and the inspection lists add up
 * counts and join lists (each row says its `worker`); a worker that does not answer (being
 * replaced) is left out and named in `unanswered`. Control requests (POST) go to every worker
 * with the caller's Authorization header, which each worker checks; the answer lists each
 * worker's. /livez and the status page are the primary's own.
 */
export class WorkersAdmin {
  private readonly server: http.Server;
  /** The address listened on (for the Host check of control requests). */
  private boundHost = '127.0.0.1';

  constructor(private readonly workers: () => WorkerState[], private readonly restarts: () => number) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: `admin: ${err.message}` }));
      });
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const request = adminRequest(req, res);
    if (!request) return;
    const { send, url } = request;
    const path = url.pathname;
    if (req.method === 'POST') {
      const fromPage = browserRefusal(req, this.boundHost);
      if (fromPage) {
        req.resume();
        return send(403, { error: fromPage });
      }
      const body = await readBody(req, send);
      if (body === undefined) return;
      const answers = await this.ask('POST', url, req.headers.authorization, body);
      const failed = answers.find((a) => a.status < 200 || a.status >= 300);
      return send(failed ? failed.status : answers[0]?.status ?? 503, { workers: answers.map((a) => ({ worker: a.worker, status: a.status, ...(a.error ? { error: a.error } : { body: parse(a.body) }) })) });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return request.badMethod();
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return void res.end(STATUS_PAGE);
    }
    if (path === '/livez') return send(200, { live: true, workers: this.summary() });
    const answers = await this.ask('GET', url);
    if (path === '/readyz') {
      const merged = mergeReadiness(answers.map((a) => ({ worker: a.worker, body: a.error ? undefined : parse(a.body), ...(a.error ? { error: a.error } : {}) })));
      return send(merged.ready ? 200 : 503, merged);
    }
    const answered = answers.filter((a) => a.error === undefined && a.status === 200);
    const unanswered = answers.filter((a) => !answered.includes(a)).map((a) => ({ worker: a.worker, error: a.error ?? `status ${a.status}` }));
    if (answered.length === 0) {
      // The request itself was wrong (every worker says the same): pass the answer on.
      const first = answers[0];
      if (first && first.error === undefined && answers.every((a) => a.status === first.status)) {
        res.writeHead(first.status, { 'content-type': 'application/json' });
        return void res.end(first.body);
      }
      return send(503, { error: `no worker answered ${path}`, unanswered });
    }
    // A worker being replaced is left out (and named): the others' figures still count.
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      return void res.end(mergePrometheus([...answered.map((a) => a.body), this.ownMetrics()]));
    }
    const workers = answered.map((a) => a.worker);
    const bodies = answered.map((a) => parse(a.body));
    if (path === '/stats/history') {
      return send(200, { samples: mergeHistory(bodies.map((b) => ((b as { samples?: Json[] }).samples ?? []))), ...(unanswered.length > 0 ? { unanswered } : {}) });
    }
    const merged = mergeJson(bodies, workers) as { [key: string]: Json };
    const limit = rowLimit(url);
    for (const list of LISTS) if (Array.isArray(merged[list])) merged[list] = merged[list].slice(0, limit);
    // Command statistics: one row per command, not one per worker.
    const commands = path === '/stats' ? merged.commandStats : path === '/commands' ? merged : undefined;
    if (commands && typeof commands === 'object' && !Array.isArray(commands)) {
      for (const table of ['collections', 'callsites']) if (Array.isArray(commands[table])) commands[table] = mergeCommandRows(commands[table], path === '/commands' ? (url.searchParams.get('sort') ?? 'count') as SortKey : 'count').slice(0, path === '/stats' ? 10 : limit);
    }
    if (path === '/stats') merged.workers = this.summary();
    if (unanswered.length > 0) merged.unanswered = unanswered;
    return send(200, merged);
  }

  /** Each worker: its pid, whether it serves, how often it was replaced, and while a replacement waits, how long it was told to. */
  private summary(): Json[] {
    return this.workers().map(({ index, pid, up, restarts, restartDelayMs }) => ({ worker: index, pid: pid ?? null, up, restarts, ...(restartDelayMs !== null ? { restartDelayMs } : {}) }));
  }

  /** The primary's own series: workers running and replaced. */
  private ownMetrics(): string {
    const up = this.workers().filter((w) => w.up).length;
    return [
      '# HELP mongoplex_workers Worker processes serving clients',
      '# TYPE mongoplex_workers gauge',
      `mongoplex_workers ${up}`,
      '# HELP mongoplex_worker_restarts_total Workers replaced after they ended',
      '# TYPE mongoplex_worker_restarts_total counter',
      `mongoplex_worker_restarts_total ${this.restarts()}`,
      '',
    ].join('\n');
  }

  /** The same request of every worker's admin endpoint; a worker that is down or silent answers with `error`. */
  private ask(method: 'GET' | 'POST', url: URL, authorization?: string, body?: string): Promise<Answer[]> {
    return Promise.all(this.workers().map(async (w): Promise<Answer> => {
      if (!w.admin) return { worker: w.index, status: 503, body: '', error: 'not serving (being replaced)' };
      try {
        const r = await fetch(`http://${w.admin.host}:${w.admin.port}${url.pathname}${url.search}`, {
          method,
          headers: { ...(authorization ? { authorization } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body } : {}),
          signal: AbortSignal.timeout(WORKER_TIMEOUT_MS),
        });
        return { worker: w.index, status: r.status, body: await r.text() };
      } catch (err) {
        return { worker: w.index, status: 503, body: '', error: (err as Error).name === 'TimeoutError' ? `no answer in ${WORKER_TIMEOUT_MS} ms` : (err as Error).message };
      }
    }));
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    this.boundHost = host;
    return listenHttp(this.server, host, port);
  }

  close(): Promise<void> {
    return closeHttp(this.server);
  }
}

function parse(text: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    return text;
  }
}
