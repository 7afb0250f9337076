import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { freePort } from '../scripts/ports';
import { startEnvoyFront, type EnvoyFront } from '../scripts/envoy';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { useFerretDB } from './support/setup';

/**
 * The driver scenarios again, with pymongo and the Go driver (installed by scripts/setup.sh via
 * scripts/install-drivers.sh), through the TCP ingress and through Envoy ext_proc. Each program
 * lives in test/drivers/ and prints one JSON line per scenario it passed.
 */

const db = useFerretDB();
const ROOT = path.resolve(__dirname, '..', '..');
const SCENARIOS = ['crud', 'cursors', 'bulk', 'sessions'];

function drivers(): { pymongo: string[]; go: string[] } {
  const [python, goBinary] = execFileSync('bash', [path.join(ROOT, 'scripts', 'install-drivers.sh')], { encoding: 'utf8' }).trim().split(' ');
  return { pymongo: [python!, path.join(ROOT, 'test', 'drivers', 'pymongo_scenarios.py')], go: [goBinary!] };
}

function run(command: string[], uri: string, dbName: string): Promise<{ code: number; lines: Array<Record<string, unknown>>; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command[0]!, [...command.slice(1), uri, dbName, ...SCENARIOS], { timeout: 180_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const lines = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, lines, stderr });
    });
  });
}

describe('pymongo and the Go driver through mongoplex (TCP and Envoy ext_proc)', () => {
  let proxy: TestMongoplex;
  let front: EnvoyFront;
  let programs: ReturnType<typeof drivers>;

  before(async () => {
    programs = drivers();
    const grpc = await freePort();
    // A small pool: the drivers' cursors and sessions share few upstream connections.
    proxy = await startMongoplex(db.address, { listen: { grpc: `127.0.0.1:${grpc}` }, upstream: { maxPoolSize: 4 } });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
  });
  after(async () => {
    await front?.envoy.stop();
    await proxy?.stop();
  });

  for (const driver of ['pymongo', 'go'] as const) {
    for (const via of ['tcp', 'envoy'] as const) {
      it(`${driver} through ${via === 'tcp' ? 'the TCP ingress' : 'Envoy ext_proc'}: CRUD, cursors over a shared pool, bulk write errors, sessions`, async () => {
        const uri = via === 'tcp' ? proxy.uri : front.uri;
        const r = await run(programs[driver], uri, `${driver}_${via}`);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(r.lines.map((l) => [l.driver, l.scenario, l.ok]), SCENARIOS.map((s) => [driver, s, true]));
        assert.ok(proxy.proxy.stats().pools[0]!.total <= 4, 'never more than the 4 pooled connections');
      });
    }
  }
});
