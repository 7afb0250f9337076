import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

/** One sample of a metric family, as the Prometheus text format carries it. */
export interface PromSample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

export interface PromFamily {
  readonly name: string;
  /** counter, gauge, histogram, … */
  readonly type: string;
  readonly samples: PromSample[];
}

const ROOT = path.resolve(__dirname, '..', '..', '..');

/** Reads the exposition with the Prometheus project's own parser (prometheus_client, from install-drivers.sh). */
const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
json.dump(out, sys.stdout)
`;

/** Parses Prometheus text exposition; throws (the parser's error) when it is not valid. */
export function parsePrometheus(text: string): Map<string, PromFamily> {
  const python = execFileSync('bash', [path.join(ROOT, 'scripts', 'install-drivers.sh')], { encoding: 'utf8' }).trim().split(' ')[0]!;
  const json = execFileSync(python, ['-c', PARSE], { input: text, encoding: 'utf8' });
  return new Map((JSON.parse(json) as PromFamily[]).map((f) => [f.name, f]));
}

/** The value of the first sample named `sample` whose labels include `labels`. */
export function sampleValue(families: Map<string, PromFamily>, family: string, sample: string, labels: Record<string, string>): number | undefined {
  return families.get(family)?.samples.find((s) => s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/** The sum of a counter's samples whose labels contain `label` (e.g. `reason="budget"`), from a mongoplex admin's /metrics. */
export async function counterTotal(adminPort: number, name: string, label: string): Promise<number> {
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return [...metrics.matchAll(new RegExp(`^${name}\\{[^}]*${label}[^}]*\\} (\\d+)`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
}
