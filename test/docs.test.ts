import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/**
 * The README and docs/ are read by people who follow their links and paste their commands:
 * every relative link and #anchor resolves, and every `npm run` / `mongoplex` command in a
 * shell block names a script, benchmark or subcommand that exists.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const PAGES = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** GitHub's heading anchors: lower case, punctuation other than `-` and `_` dropped, spaces to `-`, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = fenced ? null : /^#{1,6} (.+)$/.exec(line);
    if (!m) continue;
    const base = m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Markdown links outside code: [text](target). */
function links(markdown: string): string[] {
  const prose = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

/** The first lines of commands in ```sh blocks (continuations and comments skipped). */
function shellCommands(markdown: string): string[] {
  const out: string[] = [];
  for (const block of markdown.matchAll(/```(?:sh|bash)\n([\s\S]*?)```/g)) {
    let continued = false;
    for (const line of block[1]!.split('\n')) {
      const t = line.trim();
      if (!continued && t.length > 0 && !t.startsWith('#')) out.push(t);
      continued = t.endsWith('\\');
    }
  }
  return out;
}

function run(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('the README and docs/', () => {
  it('the README fits on a few screens (at most 250 lines)', () => {
    const lines = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n').length - 1;
    assert.ok(lines <= 250, `README.md has ${lines} lines`);
  });

  it('every relative link and #anchor resolves', () => {
    const broken: string[] = [];
    for (const page of PAGES) {
      for (const target of links(readFileSync(path.join(ROOT, page), 'utf8'))) {
        if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
        const [file, anchor] = target.split('#') as [string, string | undefined];
        const resolved = file === '' ? path.join(ROOT, page) : path.resolve(path.dirname(path.join(ROOT, page)), file);
        if (!existsSync(resolved)) broken.push(`${page}: ${target} (no such file)`);
        else if (anchor !== undefined && !anchors(readFileSync(resolved, 'utf8')).has(anchor)) broken.push(`${page}: ${target} (no such heading)`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it('every npm run and mongoplex command shown names a script, benchmark or subcommand that exists', () => {
    const scripts = Object.keys((JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
    const usage = run(['dist/bench/run.js']);
    const benchmarks = /<([^>]+)>/.exec(usage.out)?.[1]?.split('|') ?? [];
    assert.ok(benchmarks.includes('speed'), `the benchmark runner lists its benchmarks: ${usage.out}`);
    const wrong: string[] = [];
    let checked = 0;
    for (const page of PAGES) {
      for (const cmd of shellCommands(readFileSync(path.join(ROOT, page), 'utf8'))) {
        const npm = /^npm run ([\w:-]+)(?: -- ([\w-]+))?/.exec(cmd);
        const mongoplex = /^mongoplex(?: ([a-z][\w-]*))?(?: ([a-z][\w-]*))?/.exec(cmd);
        if (npm) {
          checked++;
          if (!scripts.includes(npm[1]!)) wrong.push(`${page}: ${cmd} (no script ${npm[1]})`);
          else if (npm[1] === 'bench' && npm[2] && !benchmarks.includes(npm[2])) wrong.push(`${page}: ${cmd} (no benchmark ${npm[2]})`);
        } else if (mongoplex && mongoplex[1]) {
          checked++;
          const sub = mongoplex[1] === 'users' ? ['users', mongoplex[2] ?? ''] : [mongoplex[1]];
          const r = run(['dist/filter/main.js', ...sub, '--help']);
          if (r.status !== 0) wrong.push(`${page}: ${cmd} (mongoplex ${sub.join(' ')} --help exited ${r.status})`);
        }
      }
    }
    assert.ok(checked >= 5, `only ${checked} commands found: the parser is broken`);
    assert.deepEqual(wrong, []);
  });
});
