import type { Document } from 'bson';
import { clientCausedLogs, type Logger } from '../log';
import type { Route, RoutedRequest } from '../routing/router';
import { attrs, commandAttrs, Metrics } from '../telemetry/metrics';
import { commandSpansOn, endCommandSpan, endSpanWithError, startCommandSpan } from '../telemetry/tracing';
import type { UpstreamConnection } from '../upstream/connection';
import { CheckoutError } from '../upstream/pool';
import { isCompressible } from '../wire/compression';
import { ErrorCode, type KnownError } from '../wire/errors';
import type { WireMessage } from '../wire/header';
import { errorDocument, failureLabels } from './error-reply';

/** What to send where. */
export interface ForwardRequest {
  readonly req: RoutedRequest;
  readonly route: Route;
  /** The bytes to send (the client's message, exhaustAllowed cleared); renumbered in place. */
  readonly bytes: Buffer;
}

/** How a forwarded request ended. */
export type ForwardOutcome =
  /** The server answered; `conn` carried the request (the observer remembers cursors by it). */
  | { readonly kind: 'reply'; readonly reply: WireMessage; readonly conn: UpstreamConnection }
  /** A fire-and-forget request: sent, or dropped with a log line and a metric (no reply is possible). */
  | { readonly kind: 'no_reply' }
  /** The proxy answers with this error; `abandoned`: it gave up on the request (never sent, or no reply in time). */
  | { readonly kind: 'failed'; readonly error: Document; readonly abandoned: boolean };

/** How long a forwarded request may wait for its reply. */
export interface ReplyDeadlines {
  /** `upstream.socketTimeoutMs` (0: none). */
  readonly socketTimeoutMs: number;
  /** Added to a command's own maxTimeMS (`upstream.maxTimeGraceMs`). */
  readonly maxTimeGraceMs: number;
}

const forwarded = new Map<Route['reason'], Readonly<{ handling: string; route: string }>>();
/** `{handling: forwarded, route}`, one constant object per route reason (counted per request). */
function forwardedAttrs(route: Route['reason']): Readonly<{ handling: string; route: string }> {
  let a = forwarded.get(route);
  if (!a) forwarded.set(route, (a = attrs({ handling: 'forwarded', route })));
  return a;
}

/** The nearer of the two deadlines that apply to a request, and which it is. */
function replyDeadline(req: RoutedRequest, d: ReplyDeadlines): { ms: number; kind: 'max_time' | 'socket' } | undefined {
  const maxTime = req.cmd?.maxTimeMS === undefined ? undefined : req.cmd.maxTimeMS + d.maxTimeGraceMs;
  const socket = d.socketTimeoutMs > 0 ? d.socketTimeoutMs : undefined;
  if (maxTime !== undefined && (socket === undefined || maxTime <= socket)) return { ms: maxTime, kind: 'max_time' };
  return socket === undefined ? undefined : { ms: socket, kind: 'socket' };
}

/**
 * Sends one request over a pooled connection and reads its reply: checks a connection out (or
 * uses the one routing holds), sends, hands the connection back through the route, and turns
 * every failure into the Mongo error a driver expects (labels included). One span per request.
 */
export class Forwarder {
  constructor(private readonly sessionId: number, private readonly deadlines: ReplyDeadlines, private readonly log: Logger) {}

  async forward({ req, route, bytes }: ForwardRequest): Promise<ForwardOutcome> {
    const started = performance.now();
    const { cmd, name } = req;
    const span = commandSpansOn() ? startCommandSpan({
      command: name,
      db: cmd?.db,
      collection: cmd?.collection ?? cmd?.cursorCollection,
      server: route.pool.address,
      route: route.reason,
      sessionId: this.sessionId,
    }) : undefined;
    let conn: UpstreamConnection;
    try {
      conn = route.connection ?? await route.pool.checkOut(route.checkout);
    } catch (err) {
      const e = err as CheckoutError;
      const kind = CHECKOUT_ERRORS[e.reason];
      const labels = e.reason === 'queue_full' ? ['SystemOverloadedError', 'RetryableError'] : failureLabels(cmd);
      endSpanWithError(span, kind.code, e.message);
      return this.failed(req, kind, e.message, labels, true);
    }
    let reply: WireMessage | undefined;
    // A stalled server must not hold the client forever: past the deadline the connection is
    // discarded (a late reply could no longer be matched) and the client gets the error.
    const deadline = req.moreToCome ? undefined : replyDeadline(req, this.deadlines);
    let expired = false;
    const timer = deadline && setTimeout(() => {
      expired = true;
      conn.close('timeout', `no reply within ${deadline.ms} ms`);
    }, deadline.ms);
    try {
      reply = await conn.request(bytes, { compressible: isCompressible(name), moreToCome: req.moreToCome });
    } catch (err) {
      route.pool.checkIn(conn); // closed by its failure: the pool drops it
      if (expired && deadline) {
        const server = route.pool.address.toString();
        const [kind, message, labels] = deadline.kind === 'max_time'
          ? [ErrorCode.MaxTimeMSExpired, `${server} did not answer within maxTimeMS ${cmd?.maxTimeMS} ms + ${this.deadlines.maxTimeGraceMs} ms (upstream.maxTimeGraceMs); the connection was discarded`, []]
          : [ErrorCode.NetworkTimeout, `${server} did not answer within ${deadline.ms} ms (upstream.socketTimeoutMs); the connection was discarded`, failureLabels(cmd)];
        endSpanWithError(span, kind.code, message);
        return this.failed(req, kind, message, labels, true);
      }
      const message = (err as Error).message;
      endSpanWithError(span, ErrorCode.HostUnreachable.code, message);
      return this.failed(req, ErrorCode.HostUnreachable, message, failureLabels(cmd), false);
    } finally {
      if (timer) clearTimeout(timer);
    }
    route.release(conn);
    Metrics.commands.add(1, forwardedAttrs(route.reason));
    Metrics.commandDuration.record(performance.now() - started, commandAttrs(name));
    if (span) endCommandSpan(span, reply);
    return reply ? { kind: 'reply', reply, conn } : { kind: 'no_reply' };
  }

  private failed(req: RoutedRequest, kind: KnownError, message: string, labels: readonly string[], abandoned: boolean): ForwardOutcome {
    if (req.moreToCome) {
      Metrics.commandErrors.add(1, { code: 'unacknowledged_dropped' });
      if (clientCausedLogs.allow(this.log, 'unacknowledged_dropped')) this.log.warn({ command: req.name, err: message }, 'fire-and-forget (moreToCome) request could not be delivered');
      return { kind: 'no_reply' };
    }
    return { kind: 'failed', error: errorDocument(kind, `mongoplex: ${message}`, labels), abandoned };
  }
}

const CHECKOUT_ERRORS: Record<CheckoutError['reason'], KnownError> = {
  timeout: ErrorCode.NetworkInterfaceExceededTimeLimit,
  queue_full: ErrorCode.IngressRequestRateLimitExceeded,
  connect_failed: ErrorCode.HostUnreachable,
  closed: ErrorCode.HostUnreachable,
  revoked: ErrorCode.ReauthenticationRequired,
};
