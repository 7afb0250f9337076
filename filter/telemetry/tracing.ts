import { SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { OpCode, type WireMessage } from '../wire/header';
import { parseOpMsg } from '../wire/opmsg';
import { readReply } from '../wire/peek';

const tracer = trace.getTracer('mongoplex');

/**
 * Whether forwarded commands get spans: only once the SDK runs with a trace exporter
 * (startTelemetry). Off, a forwarded message builds no span, name or attributes at all.
 */
let commandSpans = false;

export function enableCommandSpans(on = true): void {
  commandSpans = on;
}

export function commandSpansOn(): boolean {
  return commandSpans;
}

export interface CommandSpanFacts {
  readonly command: string;
  readonly db: string | undefined;
  readonly collection: string | undefined;
  readonly server: { host: string; port: number };
  readonly route: string;
  readonly sessionId: number;
}

/** One span per forwarded command (OpenTelemetry database semantic conventions). */
export function startCommandSpan(f: CommandSpanFacts): Span {
  const span = tracer.startSpan(`${f.command}${f.collection ? ` ${f.db}.${f.collection}` : ''}`, {
    kind: SpanKind.CLIENT,
    attributes: {
      'db.system': 'mongodb',
      'db.system.name': 'mongodb',
      'db.namespace': f.db ?? '',
      'db.operation.name': f.command,
      'server.address': f.server.host,
      'server.port': f.server.port,
      'mongoplex.route': f.route,
      'mongoplex.client_connection_id': f.sessionId,
    },
  });
  if (f.collection) span.setAttribute('db.collection.name', f.collection);
  return span;
}

export function endSpanWithError(span: Span | undefined, code: number | undefined, message: string): void {
  if (!span) return;
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  if (code !== undefined) span.setAttribute('db.response.status_code', String(code));
  span.end();
}

/**
 * Ends a forwarded command's span with what the server answered: a reply with `ok: 0` marks the
 * span as an error with the server's code (`db.response.status_code`). Only runs with spans on.
 */
export function endCommandSpan(span: Span, reply: WireMessage | undefined): void {
  if (reply?.header.opCode === OpCode.MSG) {
    let info;
    try {
      info = readReply(parseOpMsg(reply).body);
    } catch {
      info = undefined; // the client gets the bytes as they are; the span says nothing of them
    }
    if (info && !info.ok) return endSpanWithError(span, info.code, `the server answered ok: 0${info.code === undefined ? '' : ` (code ${info.code})`}`);
  }
  span.end();
}
