import { metrics, ValueType, type Attributes, type HrTime } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType, type CollectionResult, type HistogramMetricData, type MetricProducer } from '@opentelemetry/sdk-metrics';

/**
 * Every metric mongoplex exports, declared in one place. Each instrument reports through
 * `@opentelemetry/api` (a no-op until an SDK is installed) and also keeps a local value so the
 * admin endpoint and tests can read it without an exporter.
 */

/**
 * Instruments are created on first use, not at import: the metrics API is not a proxy, so an
 * instrument made before the SDK is registered would stay a no-op forever.
 */
const meter = (): ReturnType<typeof metrics.getMeter> => metrics.getMeter('mongoplex');

function attributesKey(attrs: Attributes): string {
  return Object.keys(attrs).sort().map((k) => `${k}=${String(attrs[k])}`).join(',');
}

/** Keys of attribute objects seen before: hot paths pass the same constant objects every time. */
const keys = new WeakMap<Attributes, string>();

function key(attrs?: Attributes): string {
  if (!attrs) return '';
  let k = keys.get(attrs);
  if (k === undefined) {
    k = attributesKey(attrs);
    if (Object.isFrozen(attrs)) keys.set(attrs, k);
  }
  return k;
}

/**
 * A monotonic counter kept locally (a map update per `add`) and exported as an OpenTelemetry
 * observable counter that reports the local values at collection: on the hot path this costs
 * no attribute hashing inside the SDK, and exporters see the same cumulative series a
 * synchronous counter would give. Pass frozen attribute objects on hot paths (see `attrs`).
 */
export class Counter {
  private registered = false;
  private readonly values = new Map<string, { attrs: Attributes | undefined; n: number }>();
  constructor(readonly name: string, private readonly description: string) {}
  add(n = 1, attrs?: Attributes): void {
    if (!this.registered) this.register();
    const k = key(attrs);
    const v = this.values.get(k);
    if (v) v.n += n;
    else this.values.set(k, { attrs: attrs && { ...attrs }, n });
  }
  private register(): void {
    this.registered = true;
    meter().createObservableCounter(this.name, { description: this.description }).addCallback((r) => {
      for (const v of this.values.values()) r.observe(v.n, v.attrs);
    });
  }
  /** Sum over all attribute sets, or the value for one set. */
  value(attrs?: Attributes): number {
    if (attrs) return this.values.get(key(attrs))?.n ?? 0;
    let s = 0;
    for (const v of this.values.values()) s += v.n;
    return s;
  }
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.values].map(([k, v]) => [k, v.n]));
  }
}

/** A constant attribute set for a hot path: frozen, so counters remember its key. */
export function attrs<T extends Attributes>(a: T): Readonly<T> {
  return Object.freeze(a);
}

/** Bucket bounds for latencies in milliseconds: from a quarter millisecond to a minute. */
export const LATENCY_BUCKETS_MS = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];

/** The bucket a value falls in: the first whose bound it does not exceed (bounds are inclusive upper bounds, as OpenTelemetry's); `bounds.length` past the last. */
export function bucketOf(bounds: readonly number[], v: number): number {
  let i = 0;
  while (i < bounds.length && v > bounds[i]!) i++;
  return i;
}

/** One attribute set's distribution. */
interface HistogramSeries {
  readonly attrs: Attributes;
  readonly counts: number[];
  sum: number;
  count: number;
  min: number;
  max: number;
}

function hrNow(): HrTime {
  const ms = Date.now();
  return [Math.floor(ms / 1000), (ms % 1000) * 1e6];
}

/** Every histogram, for the one producer the metric readers collect them through. */
const histograms: Histogram[] = [];

/**
 * An explicit-bucket histogram aggregated here (bucket counts, sum, min, max per attribute
 * set: a map lookup and a few additions per value) and handed to the metric readers at
 * collection time through `localHistograms`, so recording calls nothing in the SDK. Pass
 * frozen attribute objects (see `attrs`, `commandAttrs`): their key is remembered.
 */
export class Histogram {
  private readonly series = new Map<string, HistogramSeries>();
  private readonly startTime = hrNow();
  constructor(readonly name: string, private readonly description: string, private readonly unit: string, private readonly buckets = LATENCY_BUCKETS_MS) {
    histograms.push(this);
  }

  record(v: number, attrs?: Attributes): void {
    const k = key(attrs);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { attrs: attrs ? { ...attrs } : {}, counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0, min: Infinity, max: -Infinity }));
    s.counts[bucketOf(this.buckets, v)]!++;
    s.sum += v;
    s.count++;
    if (v < s.min) s.min = v;
    if (v > s.max) s.max = v;
  }

  /** Cumulative since start, as the SDK's own histogram aggregation reports it. */
  data(endTime: HrTime): HistogramMetricData {
    return {
      descriptor: { name: this.name, description: this.description, unit: this.unit, valueType: ValueType.DOUBLE },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: [...this.series.values()].map((s) => ({
        startTime: this.startTime, endTime, attributes: s.attrs,
        value: { buckets: { boundaries: [...this.buckets], counts: [...s.counts] }, sum: s.sum, count: s.count, min: s.min, max: s.max },
      })),
    };
  }
}

/** The readers' source of the histograms (add it to every MetricReader's `metricProducers`). */
export const localHistograms: MetricProducer = {
  collect(): Promise<CollectionResult> {
    const now = hrNow();
    // The readers use their SDK's resource, not this one.
    return Promise.resolve({ resourceMetrics: { resource: resourceFromAttributes({}), scopeMetrics: [{ scope: { name: 'mongoplex' }, metrics: histograms.map((h) => h.data(now)) }] }, errors: [] });
  },
};

/** Command names given an attribute set of their own; later names share `_other` (clients choose names). */
const MAX_COMMAND_NAMES = 500;
const commandSets = new Map<string, Readonly<Attributes>>();
const OTHER_COMMAND = attrs({ command: '_other' });

/** `{command: name}`, one frozen object per command name (bounded), for per-command instruments on the hot path. */
export function commandAttrs(name: string): Readonly<Attributes> {
  let a = commandSets.get(name);
  if (a) return a;
  if (commandSets.size >= MAX_COMMAND_NAMES) return OTHER_COMMAND;
  commandSets.set(name, (a = attrs({ command: name })));
  return a;
}

/**
 * Gauges are read on demand from whoever owns the value (pools, maps, sessions). Returns the
 * function that stops reading (the owner is gone).
 */
export function observeGauge(name: string, description: string, read: () => Array<[number, Attributes?]>): () => void {
  const gauge = meter().createObservableGauge(name, { description });
  const callback = (r: { observe(v: number, a?: Attributes): void }): void => {
    for (const [v, a] of read()) r.observe(v, a);
  };
  gauge.addCallback(callback);
  return () => gauge.removeCallback(callback);
}

export const Metrics = {
  clientConnectionsAccepted: new Counter('mongoplex.client.connections.accepted', 'Client connections accepted'),
  clientConnectionsRejected: new Counter('mongoplex.client.connections.rejected', 'Client connections refused (limit reached)'),
  clientConnectionsClosed: new Counter('mongoplex.client.connections.closed', 'Client connections closed, by reason'),
  clientProtocolErrors: new Counter('mongoplex.client.protocol_errors', 'Client messages refused as malformed, by reason'),
  clientCompressedMessages: new Counter('mongoplex.client.compressed_messages', 'Client messages that arrived as OP_COMPRESSED, by compressor'),
  memoryReclaims: new Counter('mongoplex.memory.reclaims', 'Garbage collections run to return the memory of large client messages that were let go (client.maxTotalBufferedBytes budget)'),
  clientCleanup: new Counter('mongoplex.client.cleanup', 'Cursors killed and transactions aborted for load-balanced clients that disconnected, by kind and result'),
  commands: new Counter('mongoplex.commands', 'Commands handled, by how (forwarded, answered, refused)'),
  commandErrors: new Counter('mongoplex.command.errors', 'Error replies emitted by the proxy itself, by code name'),
  commandDuration: new Histogram('mongoplex.command.duration', 'Time from a client request to its reply', 'ms'),
  upstreamConnectionsOpened: new Counter('mongoplex.upstream.connections.opened', 'Upstream connections established'),
  upstreamConnectionsClosed: new Counter('mongoplex.upstream.connections.closed', 'Upstream connections closed, by reason'),
  upstreamConnectFailures: new Counter('mongoplex.upstream.connect_failures', 'Upstream connection attempts that failed'),
  clientLogins: new Counter('mongoplex.auth.client_logins', 'Client logins verified by the proxy (auth.mode proxy or passthrough), by result and mechanism'),
  foreignCursorRefusals: new Counter('mongoplex.auth.foreign_cursor_refusals', "getMore/killCursors refused because another user opened the cursor (auth.mode proxy or passthrough)"),
  foreignSessionRefusals: new Counter('mongoplex.auth.foreign_session_refusals', 'Commands refused because their logical session (lsid), or a session they end or kill, belongs to another user, by command'),
  sessionOwnersEvicted: new Counter('mongoplex.auth.session_owners.evicted', 'Session owners forgotten, by reason: size_limit (auth.maxSessions), idle_ttl (30 idle minutes)'),
  userPools: new Counter('mongoplex.auth.user_pools', "Users' upstream pool sets (auth.mode passthrough), by event: created, dropped (unused), secret_changed, login_refused"),
  userQueries: new Counter('mongoplex.auth.user_queries', 'usersInfo lookups of client users on the server (auth.userSource upstream), by result: found, not_found, failed'),
  usersFileLoads: new Counter('mongoplex.auth.users_file.loads', 'Reloads of auth.usersFile after it changed, by result'),
  tlsReloads: new Counter('mongoplex.tls.reloads', 'Reloads of listen.tls files after they changed, by result'),
  tlsHandshakeFailures: new Counter('mongoplex.tls.handshake_failures', "Client TLS handshakes that failed on the TCP ingress (no or untrusted client certificate, protocol mismatch)"),
  upstreamLogins: new Counter('mongoplex.upstream.logins', "Logins of mongoplex's own upstream connections (upstream.auth), by result and mechanism"),
  upstreamStrayReplies: new Counter('mongoplex.upstream.stray_replies', 'Replies to fire-and-forget requests, dropped (non-conforming servers send them)'),
  poolWaitTimeouts: new Counter('mongoplex.pool.wait_timeouts', 'Checkouts that timed out in the wait queue'),
  poolWaitQueueFull: new Counter('mongoplex.pool.wait_queue_full', 'Checkouts refused because the wait queue was full'),
  poolCheckoutDuration: new Histogram('mongoplex.pool.checkout.duration', 'Time to obtain a pooled connection', 'ms'),
  transactionRoutesEvicted: new Counter('mongoplex.transaction_routes.evicted', 'Transaction pins dropped by the size bound or TTL, by reason'),
  primaryChanges: new Counter('mongoplex.topology.primary_changes', 'Times the monitored primary changed (elections, step-downs, a primary lost)'),
  lastErrorPinsReclaimed: new Counter('mongoplex.last_error_pins.reclaimed', 'getLastError pins ended early so their connection could serve others (outcome read and kept), by reason'),
  cursorRoutesEvicted: new Counter('mongoplex.cursor_routes.evicted', 'Cursor routes dropped by the size bound or TTL, by reason'),
  captureRecords: new Counter('mongoplex.capture.records', 'Commands offered to a running capture: recorded, or dropped by reason (queue_full, write_failed, ...)'),
  accessLogLines: new Counter('mongoplex.access_log.lines', 'Access-log lines by result (written, sampled_out, rate_limited, dropped_buffer_full)'),
  pausedCommands: new Counter('mongoplex.paused_commands', 'Commands held by a pause before they were forwarded'),
  reloads: new Counter('mongoplex.config.reloads', 'Configuration reloads, by result (applied, unchanged, failed)'),
  mirrorRequests: new Counter('mongoplex.mirror.requests', 'Reads mirrored to the shadow upstream, by result (matched, differed, dropped_queue_full, dropped_timeout, dropped_error)'),
} as const;
