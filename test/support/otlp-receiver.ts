import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A minimal OTLP/HTTP receiver (JSON encoding) standing in for an OpenTelemetry collector,
 * which cannot be installed here. Collects spans and metric names as they arrive.
 */
export interface ReceivedSpan {
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  serviceName: string | undefined;
  /** The exporting process's resource attributes. */
  resource: Record<string, unknown>;
}

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
type KeyValue = { key: string; value: AnyValue };

function plain(v: AnyValue): string | number | boolean {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return v.boolValue ?? '';
}

function attrs(list: KeyValue[] | undefined): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, plain(kv.value)]));
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly metricNames = new Set<string>();
  private readonly server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (req.url === '/v1/traces') this.takeTraces(body);
        else if (req.url === '/v1/metrics') this.takeMetrics(body);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      } catch {
        res.writeHead(400);
        res.end();
      }
    });
  });

  private takeTraces(body: { resourceSpans?: Array<{ resource?: { attributes?: KeyValue[] }; scopeSpans?: Array<{ spans?: Array<{ name: string; kind: number; attributes?: KeyValue[] }> }> }> }): void {
    for (const rs of body.resourceSpans ?? []) {
      const resource = attrs(rs.resource?.attributes);
      const serviceName = resource['service.name'] as string | undefined;
      for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) this.spans.push({ name: s.name, kind: s.kind, attributes: attrs(s.attributes), serviceName, resource });
    }
  }

  private takeMetrics(body: { resourceMetrics?: Array<{ scopeMetrics?: Array<{ metrics?: Array<{ name: string }> }> }> }): void {
    for (const rm of body.resourceMetrics ?? []) for (const sm of rm.scopeMetrics ?? []) for (const m of sm.metrics ?? []) this.metricNames.add(m.name);
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}
