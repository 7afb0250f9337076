import { execFile, execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';

const ROOT = path.resolve(__dirname, '..', '..');
const run = promisify(execFile);

/** Debian's chromium, headless, as scripts/install-chromium.sh installs it. */
function chromium(): string {
  return execFileSync('bash', [path.join(ROOT, 'scripts', 'install-chromium.sh')], { encoding: 'utf8' }).trim();
}

/**
 * Flags for a throwaway headless browser: no sandbox (root in CI), no GPU, its own profile, and
 * `budgetMs` of virtual time for the page's scripts (network waits pause the budget).
 */
function flags(profile: string, budgetMs: number): string[] {
  return ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', `--user-data-dir=${profile}`, `--virtual-time-budget=${budgetMs}`];
}

/** The page's DOM after its scripts ran for `budgetMs` of virtual time. */
export async function renderedDom(url: string, profile: string, budgetMs = 3000): Promise<string> {
  const { stdout } = await run(chromium(), [...flags(profile, budgetMs), '--dump-dom', url], { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 });
  return stdout;
}

/** A PNG screenshot of the page after its scripts ran. */
export async function screenshot(url: string, file: string, profile: string, budgetMs = 3000, size = '1400,1150'): Promise<void> {
  await run(chromium(), [...flags(profile, budgetMs), '--hide-scrollbars', `--window-size=${size}`, `--screenshot=${file}`, url], { timeout: 60_000 });
}

/** The text of the element with `id` in a dumped DOM (undefined when absent). */
export function textById(dom: string, id: string): string | undefined {
  const m = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(dom);
  return m?.[1];
}

/** The rows (cell texts) of the table with `id` in a dumped DOM. */
export function tableRows(dom: string, id: string): string[][] {
  const start = dom.indexOf(`id="${id}"`);
  if (start < 0) return [];
  const table = dom.slice(start, dom.indexOf('</table>', start));
  const body = table.slice(table.indexOf('<tbody>'));
  return [...body.matchAll(/<tr>(.*?)<\/tr>/g)].map((r) => [...r[1]!.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map((c) => c[1]!));
}
