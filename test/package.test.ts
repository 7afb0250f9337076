import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { MongoClient } from 'mongodb';
import { envoyBinary } from '../scripts/envoy';
import { freePort } from '../scripts/ports';
import { terminate } from '../scripts/process';
import { useFerretDB } from './support/setup';

/**
 * The npm package: `npm pack`, then `npm install -g` of the tarball into a temporary prefix
 * (its dependencies from the registry, as on a clean machine), then the installed `mongoplex`
 * used from a directory outside the repository.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const db = useFerretDB();

describe('the npm package (npm pack, npm install -g ./mongoplex-*.tgz)', () => {
  let work: string;
  let bin: string;
  let files: string[];
  /** Runs the installed command from a directory outside the repository, with a clean environment. */
  const run = (args: string[], input?: string) => spawnSync(bin, args, { cwd: work, encoding: 'utf8', input, env: { PATH: process.env.PATH, HOME: work } });

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'mongoplex-package-'));
    // dist/ is already built by the test command; prepack (tsc) would rebuild it under running tests.
    const packed = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' })) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = packed[0]!.files.map((f) => f.path);
    const prefix = path.join(work, 'prefix');
    execFileSync('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', path.join(work, packed[0]!.filename)], { cwd: work, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    bin = path.join(prefix, 'bin', 'mongoplex');
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('holds the compiled proxy, the protos, the Envoy and Kubernetes configurations and the docs, and no tests, benchmarks or sources', () => {
    for (const f of ['package.json', 'README.md', 'dist/filter/main.js', 'proto/envoy/service/network_ext_proc/v3/network_external_processor.proto', 'proto/grpc/health/v1/health.proto', 'envoy/ingress-ext-proc.yaml', 'deploy/kubernetes/istio/envoyfilter.yaml', 'docs/configuration.md']) {
      assert.ok(files.includes(f), `${f} is in the package`);
    }
    const stray = files.filter((f) => /^(test|bench|scripts|filter)\//.test(f) || f.startsWith('dist/test') || f.startsWith('dist/bench') || f.endsWith('.ts') || f.endsWith('.map'));
    assert.deepEqual(stray, []);
    const installed = JSON.parse(readFileSync(path.join(path.dirname(path.dirname(bin)), 'lib', 'node_modules', 'mongoplex', 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    assert.ok(!('typescript' in installed.dependencies) && !('mongodb' in installed.dependencies), 'runtime dependencies only');
  });

  it('mongoplex --help, envoy-config (a bootstrap Envoy accepts) and users add work from the installed package', () => {
    const help = run(['--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /usage: mongoplex/);
    const config = run(['envoy-config', '--filter-grpc', 'unix:/run/mongoplex/ext-proc.sock']);
    assert.equal(config.status, 0, config.stderr);
    const file = path.join(work, 'envoy.yaml');
    writeFileSync(file, config.stdout);
    const v = spawnSync(envoyBinary(), ['--mode', 'validate', '-c', file, '--log-level', 'error'], { encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr);
    const users = path.join(work, 'users.json');
    const add = run(['users', 'add', '--file', users, '--user', 'app'], 'a-password-for-the-test\n');
    assert.equal(add.status, 0, add.stderr);
    const written = readFileSync(users, 'utf8');
    assert.match(written, /"app"/);
    assert.doesNotMatch(written, /a-password-for-the-test/, 'only SCRAM secrets are written');
  });

  it('the installed mongoplex proxies a driver to FerretDB', async () => {
    const port = await freePort();
    const child = spawn(bin, [], { cwd: work, env: { PATH: process.env.PATH, HOME: work, MONGOPLEX_LISTEN_PORT: String(port), MONGOPLEX_UPSTREAM_SERVERS: db.address, MONGOPLEX_WORKERS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`the installed mongoplex exited with ${code}`)));
        createInterface({ input: child.stdout! }).on('line', (line) => {
          if (line.includes('"event":"listening"')) resolve();
        });
      });
      const client = await new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`).connect();
      try {
        await client.db('packaged').collection('c').insertOne({ from: 'the installed package' });
        assert.equal((await client.db('packaged').collection('c').findOne({}))?.from, 'the installed package');
      } finally {
        await client.close();
      }
    } finally {
      await terminate(child);
    }
  });
});
