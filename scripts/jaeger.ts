import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { freePort, waitFor } from './ports';
import { onUnexpectedExit, terminate } from './process';

const ROOT = path.resolve(__dirname, '..', '..');

/** Path of the Jaeger v2 binary the project's install script builds (building it if needed). */
export function jaegerBinary(): string {
  return execFileSync('bash', [path.join(ROOT, 'scripts', 'install-jaeger.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

/** An OTLP attribute value as Jaeger's API returns it (the OTLP JSON mapping). */
type AnyValue = { stringValue?: string; intValue?: string; boolValue?: boolean; doubleValue?: number };
interface KeyValue { key: string; value: AnyValue }

/** One span read back from Jaeger, with its resource's attributes beside it. */
export interface StoredSpan {
  readonly name: string;
  /** OTLP's SpanKind number (3: CLIENT). */
  readonly kind: number;
  /** OTLP's status code number (2: ERROR) and message. */
  readonly status: { code?: number; message?: string };
  readonly attributes: Record<string, string | number | boolean>;
  readonly resource: Record<string, string | number | boolean>;
}

function flatten(kvs: KeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of kvs ?? []) {
    out[key] = value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : value.boolValue ?? value.doubleValue ?? '');
  }
  return out;
}

/**
 * A real Jaeger v2 (an OpenTelemetry Collector distribution) on loopback ports: an OTLP/HTTP
 * receiver, in-memory storage, and the query service whose HTTP API the spans are read back from.
 * Its configuration is written here, the collector's own format.
 */
export class Jaeger {
  readonly host = '127.0.0.1';
  private stopping = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    /** The OTLP/HTTP receiver: OTEL_EXPORTER_OTLP_ENDPOINT. */
    readonly otlpEndpoint: string,
    /** The query service (HTTP API, and where the UI would be). */
    readonly queryUrl: string,
  ) {}

  /**
   * Free loopback ports unless given. `uiAssets`: a directory holding a jaeger-ui build
   * (the query service's `ui.assets_path`); without it the query service's pages are Jaeger's
   * placeholder, the API is the same.
   */
  static async start(options: { otlp?: number; query?: number; uiAssets?: string } = {}): Promise<Jaeger> {
    const bin = jaegerBinary();
    const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-jaeger-'));
    const otlp = options.otlp ?? (await freePort());
    const query = options.query ?? (await freePort());
    const queryGrpc = await freePort();
    const host = '127.0.0.1';
    const config = {
      service: {
        extensions: ['jaeger_storage', 'jaeger_query'],
        pipelines: { traces: { receivers: ['otlp'], exporters: ['jaeger_storage_exporter'] } },
        // No internal metrics endpoint (it would take port 8888 on every interface).
        telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } },
      },
      extensions: {
        jaeger_storage: { backends: { memstore: { memory: { max_traces: 10_000 } } } },
        jaeger_query: {
          storage: { traces: 'memstore' },
          http: { endpoint: `${host}:${query}` },
          grpc: { endpoint: `${host}:${queryGrpc}` },
          ...(options.uiAssets ? { ui: { assets_path: options.uiAssets } } : {}),
        },
      },
      receivers: { otlp: { protocols: { http: { endpoint: `${host}:${otlp}` } } } },
      exporters: { jaeger_storage_exporter: { trace_storage: 'memstore' } },
    };
    const file = path.join(dir, 'jaeger.yaml');
    writeFileSync(file, stringify(config));
    const log = createWriteStream(path.join(dir, 'jaeger.log'));
    const child = spawn(bin, ['--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const jaeger = new Jaeger(child, dir, `http://${host}:${otlp}`, `http://${host}:${query}`);
    await waitFor('Jaeger readiness (its query API answers)', async () => {
      if (child.exitCode !== null) throw new Error(`Jaeger exited with ${child.exitCode} (log: ${dir}/jaeger.log)`);
      const r = await fetch(`${jaeger.queryUrl}/api/v3/services`).catch(() => undefined);
      return r?.ok ? true : undefined;
    }, 30_000);
    return jaeger;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Called when the process ends on its own (crashed, killed), not through `stop()`. */
  onUnexpectedExit(listener: (how: string) => void): void {
    onUnexpectedExit(this.child, () => this.stopping, listener);
  }

  get logFile(): string {
    return path.join(this.dir, 'jaeger.log');
  }

  /** The spans Jaeger stored for a service in the last hour, through its API v3 (OTLP JSON). */
  async spans(service: string): Promise<StoredSpan[]> {
    const now = Date.now();
    const q = new URLSearchParams({
      'query.service_name': service,
      'query.start_time_min': new Date(now - 3_600_000).toISOString(),
      'query.start_time_max': new Date(now + 60_000).toISOString(),
      'query.num_traces': '1000',
    });
    const r = await fetch(`${this.queryUrl}/api/v3/traces?${q}`);
    // Nothing stored yet for the service: 404 with "trace not found".
    if (r.status === 404) return [];
    if (!r.ok) throw new Error(`Jaeger /api/v3/traces: ${r.status} ${await r.text()}`);
    const body = (await r.json()) as { result?: { resourceSpans?: Array<{ resource?: { attributes?: KeyValue[] }; scopeSpans?: Array<{ spans?: Array<{ name: string; kind?: number; status?: { code?: number; message?: string }; attributes?: KeyValue[] }> }> }> } };
    const out: StoredSpan[] = [];
    for (const rs of body.result?.resourceSpans ?? []) {
      const resource = flatten(rs.resource?.attributes);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) out.push({ name: s.name, kind: s.kind ?? 0, status: s.status ?? {}, attributes: flatten(s.attributes), resource });
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await terminate(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
