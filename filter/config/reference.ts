import { z } from 'zod';
import { ConfigSchema, envName } from './index';

/**
 * The configuration reference, from the schema alone: each setting's description, default and
 * bounds are written once, on the schema (`.describe()`), and `docs/configuration.md`
 * (`npm run docs`) and `mongoplex --print-env` are rendered from it.
 */

/** One leaf setting as the reference shows it. */
export interface SettingReference {
  /** `section.key` (or a top-level `key`). */
  readonly setting: string;
  readonly env: string;
  readonly default: unknown;
  /** What values it takes, from the schema's types and bounds. */
  readonly accepts: string;
  readonly description: string;
}

type JsonSchema = {
  type?: string;
  properties?: Record<string, JsonSchema>;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  minItems?: number;
  pattern?: string;
  items?: JsonSchema | false;
  prefixItems?: JsonSchema[];
  propertyNames?: JsonSchema;
  additionalProperties?: JsonSchema | boolean;
  default?: unknown;
  description?: string;
};

const code = (v: unknown): string => `\`${typeof v === 'string' ? v : JSON.stringify(v)}\``;

/** What a schema accepts, in a few words (bounds at their JSON Schema values). */
function accepts(s: JsonSchema): string {
  if (s.anyOf) return s.anyOf.map(accepts).join(' or ');
  if (s.const !== undefined) return code(s.const);
  if (s.enum) return s.enum.map(code).join(' ');
  const range = (): string => {
    const min = s.minimum;
    const max = s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER ? s.maximum : undefined;
    if (min !== undefined && max !== undefined) return ` ${min}–${max}`;
    if (min !== undefined) return ` ≥ ${min}`;
    return max !== undefined ? ` ≤ ${max}` : '';
  };
  switch (s.type) {
    case 'null':
      return '`null`';
    case 'boolean':
      return '`true` `false`';
    case 'integer':
      return `integer${range()}`;
    case 'number':
      return `number${range()}`;
    case 'string':
      if (s.pattern?.includes('unix')) return '`host:port` or `unix:/path`';
      if (s.pattern) return '`host:port`';
      return s.minLength !== undefined && s.minLength > 1 ? `string of ≥ ${s.minLength} characters` : 'string';
    case 'array':
      if (s.prefixItems) return `[${s.prefixItems.map(accepts).join(', ')}]`;
      return `list of ${s.items ? accepts(s.items) : 'values'}${s.minItems ? ` (at least ${s.minItems})` : ''}`;
    case 'object':
      return `map of ${s.propertyNames ? accepts(s.propertyNames) : 'string'} → ${typeof s.additionalProperties === 'object' ? accepts(s.additionalProperties) : 'value'}`;
    default:
      return 'value';
  }
}

/** Every leaf setting, in the schema's order. */
export function settingsReference(): SettingReference[] {
  const root = z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out: SettingReference[] = [];
  const walk = (s: JsonSchema, path: string[]): void => {
    if (s.type === 'object' && s.properties) {
      for (const [k, v] of Object.entries(s.properties)) walk(v, [...path, k]);
      return;
    }
    const setting = path.join('.');
    if (!s.description) throw new Error(`config schema: ${setting} has no description (add .describe() to it)`);
    out.push({ setting, env: envName(path), default: s.default, accepts: accepts(s), description: s.description });
  };
  walk(root, []);
  return out;
}

const PAGE_HEAD = `# Configuration

Every setting: its environment variable, default, the values it accepts, and what it does.
Generated from the configuration schema (\`filter/config/\`, one file per area) by \`npm run docs\`: edit the
schema's \`.describe()\` texts, not this page.

One YAML or JSON file (\`mongoplex --config FILE\`, or \`MONGOPLEX_CONFIG=FILE\`), validated at
start; every setting can be overridden by an environment variable named after its path
(\`upstream.maxPoolSize\` → \`MONGOPLEX_UPSTREAM_MAX_POOL_SIZE\`). Values that look like JSON
(numbers, booleans, arrays) are parsed as JSON; list settings also take \`a,b,c\`. An invalid
value, an unknown key or an unknown \`MONGOPLEX_*\` variable stops the start with a message
naming it:

\`\`\`
$ MONGOPLEX_LISTEN_PORT=99999 node dist/filter/main.js
mongoplex: invalid configuration:
  listen.port (from MONGOPLEX_LISTEN_PORT): Too big: expected number to be <=65535
\`\`\`

\`mongoplex --print-env\` lists every variable with its setting and default. Example file:

\`\`\`yaml
listen: { host: 0.0.0.0, port: 27016 }
upstream:
  servers: ["mongo-0.internal:27017"]
  maxPoolSize: 32
\`\`\`

| setting | environment variable | default | accepts | meaning |
| --- | --- | --- | --- | --- |
`;

/** docs/configuration.md. */
export function configurationPage(): string {
  const rows = settingsReference().map((r) => `| \`${r.setting}\` | \`${r.env}\` | ${code(r.default)} | ${r.accepts} | ${r.description} |`);
  return `${PAGE_HEAD}${rows.join('\n')}\n`;
}
