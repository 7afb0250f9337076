import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ConsoleMetricExporter, MeterProvider, PeriodicExportingMetricReader, type IMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { Logger } from '../log';
import { localHistograms } from './metrics';
import { enableCommandSpans } from './tracing';

/**
 * The metric readers of this process. The Prometheus reader (served at the admin endpoint's
 * /metrics) always exists; OTLP export is added when the standard OTEL_* environment asks for
 * it. The first of `startTelemetry` / `prometheusMetrics` to run installs the meter provider,
 * and must run before any instrument is used (an instrument made earlier stays a no-op).
 */
let prometheus: PrometheusExporter | undefined;

function prometheusReader(): PrometheusExporter {
  // The admin endpoint serves it; the exporter's own HTTP server never starts.
  return (prometheus ??= new PrometheusExporter({ preventServerStart: true, metricProducers: [localHistograms] }));
}

/**
 * The Prometheus reader behind /metrics, installing a meter provider that feeds only it when
 * `startTelemetry` installed none (tests, OTel export off).
 */
export function prometheusMetrics(): PrometheusExporter {
  if (!prometheus) {
    const resource = resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME ?? 'mongoplex' });
    metrics.setGlobalMeterProvider(new MeterProvider({ resource, readers: [prometheusReader()] }));
  }
  return prometheus!;
}

/**
 * Starts the OpenTelemetry SDK when the standard OTEL_* environment asks for an exporter
 * (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_TRACES_EXPORTER or
 * OTEL_METRICS_EXPORTER); off otherwise, and always off with OTEL_SDK_DISABLED=true (the admin
 * /metrics endpoint works either way). Everything else (protocol, headers, sampling, batch
 * delays, export interval) is the SDK's own OTEL_* configuration. Returns the shutdown
 * function that flushes what is pending. `attributes` add to the resource (workers mode: each
 * worker's `mongoplex.worker` and `service.instance.id`, so their series stay apart).
 */
export async function startTelemetry(log: Logger, env: NodeJS.ProcessEnv = process.env, attributes: Record<string, string | number> = {}): Promise<(() => Promise<void>) | undefined> {
  if (env.OTEL_SDK_DISABLED === 'true') return undefined;
  const wanted = env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_TRACES_EXPORTER || env.OTEL_METRICS_EXPORTER;
  if (!wanted) return undefined;
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  // `attributes` (a worker's identity) under what OTEL_RESOURCE_ATTRIBUTES says: the SDK's detected resource wins.
  const sdk = new NodeSDK({ serviceName: env.OTEL_SERVICE_NAME ?? 'mongoplex', resource: resourceFromAttributes(attributes), instrumentations: [], metricReaders: [prometheusReader(), ...await exportReaders(log, env)] });
  sdk.start();
  // The SDK exports spans (to OTLP by default) unless told not to (OTEL_TRACES_EXPORTER=none).
  enableCommandSpans((env.OTEL_TRACES_EXPORTER ?? 'otlp').split(',').some((n) => n.trim() !== 'none' && n.trim() !== ''));
  log.info({ endpoint: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT, protocol: env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf' }, 'OpenTelemetry export on');
  return () => sdk.shutdown();
}

/**
 * The exporting metric readers OTEL_METRICS_EXPORTER names (otlp, console; none), as the SDK
 * would build them. The SDK drops its own env-based choice once it is given readers, so this
 * makes the same choice; with no OTEL_METRICS_EXPORTER, metrics go to the OTLP endpoint when
 * one is set.
 */
async function exportReaders(log: Logger, env: NodeJS.ProcessEnv): Promise<IMetricReader[]> {
  const names = (env.OTEL_METRICS_EXPORTER ?? (env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT ? 'otlp' : 'none'))
    .split(',').map((s) => s.trim()).filter(Boolean);
  if (names.includes('none')) return [];
  // The SDK's own env helpers (interval, timeout, protocol → exporter package); pinned with sdk-node.
  const utils = await import('@opentelemetry/sdk-node/build/src/utils');
  const readers: IMetricReader[] = [];
  for (const name of new Set(names)) {
    if (name === 'otlp') readers.push(periodicReader(utils.getOtlpMetricExporterFromEnv(), env));
    else if (name === 'console') readers.push(periodicReader(new ConsoleMetricExporter(), env));
    else if (name === 'prometheus') log.info('OTEL_METRICS_EXPORTER=prometheus: served on the admin endpoint at /metrics (no separate port)');
    else log.warn({ exporter: name }, 'unsupported OTEL_METRICS_EXPORTER value ignored (supported: otlp, console, prometheus, none)');
  }
  return readers;
}

/**
 * A reader that exports every OTEL_METRIC_EXPORT_INTERVAL ms (default 60 s) within
 * OTEL_METRIC_EXPORT_TIMEOUT (default 30 s, at most the interval), as the SDK builds it from the
 * environment, with mongoplex's own histograms added (`localHistograms`).
 */
function periodicReader(exporter: PushMetricExporter, env: NodeJS.ProcessEnv): PeriodicExportingMetricReader {
  const ms = (v: string | undefined, d: number): number => (v !== undefined && v.trim() !== '' && Number(v) >= 0 ? Number(v) : d);
  const exportIntervalMillis = ms(env.OTEL_METRIC_EXPORT_INTERVAL, 60_000);
  const exportTimeoutMillis = Math.min(ms(env.OTEL_METRIC_EXPORT_TIMEOUT, 30_000), exportIntervalMillis);
  return new PeriodicExportingMetricReader({ exporter, exportIntervalMillis, exportTimeoutMillis, metricProducers: [localHistograms] });
}
