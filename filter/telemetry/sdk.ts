import type { Logger } from '../log';

/**
 * Starts the OpenTelemetry SDK when the standard OTEL_* environment asks for an exporter
 * (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_TRACES_EXPORTER or
 * OTEL_METRICS_EXPORTER); off otherwise, and always off with OTEL_SDK_DISABLED=true. Everything
 * else (protocol, headers, sampling, batch delays) is the SDK's own OTEL_* configuration.
 * Returns the shutdown function that flushes what is pending.
 */
export async function startTelemetry(log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<(() => Promise<void>) | undefined> {
  if (env.OTEL_SDK_DISABLED === 'true') return undefined;
  const wanted = env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_TRACES_EXPORTER || env.OTEL_METRICS_EXPORTER;
  if (!wanted) return undefined;
  if (!env.OTEL_METRICS_EXPORTER && (env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)) {
    // The SDK exports no metrics unless told to; with an OTLP endpoint, send them there too.
    process.env.OTEL_METRICS_EXPORTER = 'otlp';
  }
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({ serviceName: env.OTEL_SERVICE_NAME ?? 'mongoplex', instrumentations: [] });
  sdk.start();
  log.info({ endpoint: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT, protocol: env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf' }, 'OpenTelemetry export on');
  return () => sdk.shutdown();
}
