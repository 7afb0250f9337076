import type { Document } from 'bson';
import type { Logger } from '../log';
import type { Route, RoutedRequest } from '../routing/router';
import { Metrics } from '../telemetry/metrics';
import { endSpanWithError, startCommandSpan } from '../telemetry/tracing';
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
  /** The proxy answers with this error; `delivered`: whether the request may have reached the server. */
  | { readonly kind: 'failed'; readonly error: Document; readonly delivered: boolean };

/**
 * Sends one request over a pooled connection and reads its reply: checks a connection out (or
 * uses the one routing holds), sends, hands the connection back through the route, and turns
 * every failure into the Mongo error a driver expects (labels included). One span per request.
 */
export class Forwarder {
  constructor(private readonly sessionId: number, private readonly log: Logger) {}

  async forward({ req, route, bytes }: ForwardRequest): Promise<ForwardOutcome> {
    const started = performance.now();
    const { cmd, name } = req;
    const span = startCommandSpan({
      command: name,
      db: cmd?.db,
      collection: cmd?.collection ?? cmd?.cursorCollection,
      server: route.pool.address,
      route: route.reason,
      sessionId: this.sessionId,
    });
    let conn: UpstreamConnection;
    try {
      conn = route.connection ?? await route.pool.checkOut();
    } catch (err) {
      const e = err as CheckoutError;
      const kind = CHECKOUT_ERRORS[e.reason];
      const labels = e.reason === 'queue_full' ? ['SystemOverloadedError', 'RetryableError'] : failureLabels(cmd);
      endSpanWithError(span, kind.code, e.message);
      return this.failed(req, kind, e.message, labels, false);
    }
    let reply: WireMessage | undefined;
    try {
      reply = await conn.request(bytes, { compressible: isCompressible(name), moreToCome: req.moreToCome });
    } catch (err) {
      route.pool.checkIn(conn); // closed by its failure: the pool drops it
      const message = (err as Error).message;
      endSpanWithError(span, ErrorCode.HostUnreachable.code, message);
      return this.failed(req, ErrorCode.HostUnreachable, message, failureLabels(cmd), true);
    }
    route.release(conn);
    Metrics.commands.add(1, { handling: 'forwarded', route: route.reason });
    Metrics.commandDuration.record(performance.now() - started, { command: name });
    span.end();
    return reply ? { kind: 'reply', reply, conn } : { kind: 'no_reply' };
  }

  private failed(req: RoutedRequest, kind: KnownError, message: string, labels: readonly string[], delivered: boolean): ForwardOutcome {
    if (req.moreToCome) {
      Metrics.commandErrors.add(1, { code: 'unacknowledged_dropped' });
      this.log.warn({ command: req.name, err: message }, 'fire-and-forget (moreToCome) request could not be delivered');
      return { kind: 'no_reply' };
    }
    return { kind: 'failed', error: errorDocument(kind, `mongoplex: ${message}`, labels), delivered };
  }
}

const CHECKOUT_ERRORS: Record<CheckoutError['reason'], KnownError> = {
  timeout: ErrorCode.NetworkInterfaceExceededTimeLimit,
  queue_full: ErrorCode.IngressRequestRateLimitExceeded,
  connect_failed: ErrorCode.HostUnreachable,
  closed: ErrorCode.HostUnreachable,
};
