import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { accessLog, log, stats } from './telemetry';
import { admin, readiness } from './admin';
import { auth, checkAuth } from './auth';
import { ConfigError } from './kit';
import { checkListen, client, listen, workers } from './listen';
import { cursors, topology, transactions } from './topology';
import { capture, checkCapture, mirror } from './traffic';
import { applyUpstreamUri, checkUpstream, upstream } from './upstream';

/**
 * mongoplex configuration: one YAML/JSON file, validated at start, with every leaf setting
 * overridable by an environment variable named after its path (`upstream.maxPoolSize` →
 * `MONGOPLEX_UPSTREAM_MAX_POOL_SIZE`). Anything unknown or invalid is refused by name. Each
 * area's settings (with their descriptions, the configuration reference's one source) and the
 * checks across them live in the file of that area; this one puts them together and reads
 * the file and the environment.
 */

export { ConfigError, readSettingFile } from './kit';
export { listenerAuthModes, type AuthMode, type ListenerKind } from './auth';
export { CaptureStartSchema } from './traffic';

/** Settings whose values never leave the process (logs, /stats, reload results, errors). */
export const SECRET_SETTINGS: ReadonlySet<string> = new Set(['admin.token', 'upstream.auth.password', 'upstream.uri']);

export const ConfigSchema = z.strictObject({ workers, listen, upstream, client, topology, cursors, transactions, readiness, auth, admin, stats, accessLog, capture, mirror, log });

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

const ENV_PREFIX = 'MONGOPLEX_';
/** Set by the primary in each worker's environment: which worker it is (not a setting). */
export const WORKER_INDEX_VARIABLE = 'MONGOPLEX_WORKER_INDEX';

export function envName(path: readonly string[]): string {
  return ENV_PREFIX + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

/** Every leaf setting path, from the schema's defaults. */
function leafPaths(obj: Record<string, unknown>, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(obj)) {
    // A nested section recurses; an empty mapping by default is a map-valued setting (a leaf).
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) out.push(...leafPaths(v as Record<string, unknown>, [...prefix, k]));
    else out.push([...prefix, k]);
  }
  return out;
}

/** Environment variable name → setting path, for documentation and overrides. */
export function environmentVariables(): Map<string, string[]> {
  const defaults = ConfigSchema.parse({}) as unknown as Record<string, unknown>;
  return new Map(leafPaths(defaults).map((p) => [envName(p), p]));
}

function parseEnvValue(raw: string): unknown {
  const t = raw.trim();
  if (t === '') return raw;
  if (t === 'null' || t === 'true' || t === 'false' || /^-?\d+(\.\d+)?$/.test(t) || t.startsWith('[') || t.startsWith('{')) {
    try {
      return JSON.parse(t);
    } catch {
      return raw;
    }
  }
  return raw;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === undefined || next === null || typeof next !== 'object') node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function describeIssues(error: z.ZodError, origin: (path: string) => string): string {
  return error.issues
    .map((i) => {
      const path = i.path.join('.') || '(root)';
      const keys = i.code === 'unrecognized_keys' ? ` ${i.keys.map((k) => (i.path.length ? `${path}.${k}` : k)).join(', ')}` : '';
      return `  ${path}${origin(path)}: ${i.message}${keys}`;
    })
    .join('\n');
}

/**
 * Builds the configuration from an optional file plus environment overrides.
 * Environment values are parsed as JSON when they look like JSON (numbers, booleans, arrays),
 * and as strings otherwise; `MONGOPLEX_UPSTREAM_SERVERS` also takes a comma-separated list.
 */
export function loadConfig(options: { file?: string | undefined; env?: NodeJS.ProcessEnv; overrides?: ConfigInput } = {}): Config {
  const env = options.env ?? process.env;
  let raw: Record<string, unknown> = {};
  if (options.file) {
    let text: string;
    try {
      text = readFileSync(options.file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${options.file}: ${(err as Error).message}`);
    }
    try {
      raw = (parseYaml(text) as Record<string, unknown> | null) ?? {};
    } catch (err) {
      throw new ConfigError(`config file ${options.file} is not valid YAML: ${(err as Error).message}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config file ${options.file} must hold a mapping`);
  }
  if (options.overrides) raw = mergeDeep(raw, options.overrides as Record<string, unknown>);
  const known = environmentVariables();
  const fromEnv = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue;
    if (name === 'MONGOPLEX_CONFIG' || name === WORKER_INDEX_VARIABLE) continue;
    const path = known.get(name);
    if (!path) throw new ConfigError(`unknown environment setting ${name} (known: ${[...known.keys()].join(', ')})`);
    let parsed = parseEnvValue(value);
    if (name === 'MONGOPLEX_UPSTREAM_SERVERS' && typeof parsed === 'string') parsed = parsed.split(',').map((s) => s.trim()).filter(Boolean);
    if (/(COMPRESSORS|NAMESPACES)$/.test(name) && typeof parsed === 'string') parsed = parsed.split(',').map((s) => s.trim()).filter(Boolean);
    setPath(raw, path, parsed);
    fromEnv.set(path.join('.'), name);
  }
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const origin = (p: string): string => {
      const e = fromEnv.get(p);
      return e ? ` (from ${e})` : options.file ? ` (in ${options.file})` : '';
    };
    throw new ConfigError(`invalid configuration:\n${describeIssues(result.error, origin)}`);
  }
  const cfg = result.data;
  if (cfg.upstream.uri !== null) applyUpstreamUri(cfg.upstream, raw.upstream as Record<string, unknown> | undefined);
  checkListen(cfg.listen, cfg.client);
  checkUpstream(cfg.upstream);
  checkAuth(cfg.auth, cfg.upstream.auth.username);
  checkCapture(cfg.capture);
  return cfg;
}

function mergeDeep(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)) {
      out[k] = mergeDeep(cur as Record<string, unknown>, v as Record<string, unknown>);
    } else out[k] = v;
  }
  return out;
}
