import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { driverPrograms as drivers, runDriverProgram as run, type DriverRun as Run } from './support/driver-programs';
import { ReplicaSetFixture } from './support/replica-set-fixture';
import { useFerretDB, useFrontedMongoplex } from './support/setup';
import { proxyStats } from '../filter/admin/views';

/**
 * The driver scenarios again, with pymongo and the Go driver (installed by scripts/setup.sh via
 * scripts/install-drivers.sh), through the TCP ingress and through Envoy ext_proc. Each program
 * lives in test/drivers/ and prints one JSON line per scenario it passed.
 */

const db = useFerretDB();
const SCENARIOS = ['crud', 'cursors', 'bulk', 'sessions'];

const ok = (r: Run, driver: string, scenarios: string[]): void => {
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.lines.map((l) => [l.driver, l.scenario, l.ok]), scenarios.map((s) => [driver, s, true]));
};

const DRIVERS = ['pymongo', 'go'] as const;
const PATHS = ['tcp', 'envoy'] as const;
const pathName = (via: 'tcp' | 'envoy'): string => (via === 'tcp' ? 'the TCP ingress' : 'Envoy ext_proc');

describe('pymongo and the Go driver through mongoplex (TCP and Envoy ext_proc)', () => {
  let programs: ReturnType<typeof drivers>;
  before(() => {
    programs = drivers();
  });
  // A small pool: the drivers' cursors and sessions share few upstream connections.
  const stack = useFrontedMongoplex(() => db.address, () => ({ upstream: { maxPoolSize: 4 } }));

  for (const driver of DRIVERS) {
    for (const via of PATHS) {
      it(`${driver} through ${pathName(via)}: CRUD, cursors over a shared pool, bulk write errors, sessions`, async () => {
        ok(await run(programs[driver], stack.uri(via), `${driver}_${via}`, SCENARIOS), driver, SCENARIOS);
        assert.ok(proxyStats(stack.proxy().proxy).pools[0]!.total <= 4, 'never more than the 4 pooled connections');
      });
    }
  }
});

describe('pymongo and the Go driver: transactions in mongos mode stay on one router', () => {
  let programs: ReturnType<typeof drivers>;
  const fleet = new ReplicaSetFixture(db, 'fleet', 3, 'mongos');
  before(async () => {
    programs = drivers();
    await fleet.start();
  });
  after(() => fleet.stop());
  const stack = useFrontedMongoplex(() => fleet.addresses.join(','), () => ({ topology: { mode: 'mongos', heartbeatMs: 300 }, upstream: { servers: fleet.addresses, maxPoolSize: 3 } }));

  for (const driver of DRIVERS) {
    for (const via of PATHS) {
      it(`${driver} through ${pathName(via)}: 18 transactions, every statement of each on one router`, async () => {
        const mark = fleet.executed.length;
        ok(await run(programs[driver], stack.uri(via), `${driver}_${via}`, ['transactions']), driver, ['transactions']);
        const inTxn = fleet.executed.slice(mark).filter((e) => e.lsid && e.txnNumber !== undefined && e.doc.autocommit === false);
        const byTxn = new Map<string, Set<number>>();
        for (const e of inTxn) byTxn.set(`${e.lsid}/${e.txnNumber}`, (byTxn.get(`${e.lsid}/${e.txnNumber}`) ?? new Set()).add(e.member));
        assert.equal(byTxn.size, 18);
        for (const [key, members] of byTxn) assert.equal(members.size, 1, `transaction ${key} ran on one router, not ${[...members]}`);
        assert.equal(inTxn.filter((e) => e.command === 'commitTransaction').length, 18);
      });
    }
  }
});

describe('pymongo and the Go driver: retryable writes across a step-down in mongos mode', () => {
  let programs: ReturnType<typeof drivers>;
  const rs = new ReplicaSetFixture(db);
  before(async () => {
    programs = drivers();
    await rs.start();
  });
  after(() => rs.stop());
  const stack = useFrontedMongoplex(() => rs.addresses[0]!, () => ({ topology: { mode: 'mongos', heartbeatMs: 300 }, upstream: { maxPoolSize: 4 } }));

  for (const driver of DRIVERS) {
    for (const via of PATHS) {
      it(`${driver} through ${pathName(via)}: 120 inserts while the primary steps down, each stored exactly once`, async () => {
        const formerPrimary = rs.primary;
        let atStepDown = -1;
        const r = await run(programs[driver], stack.uri(via), `${driver}_${via}`, ['stepdown'], (line, reply) => {
          if (line.stepdown !== 'now') return;
          atStepDown = rs.executed.length;
          rs.stepDown();
          reply();
        });
        ok(r, driver, ['stepdown']);
        assert.equal(r.lines[0]!.stored, 120);
        assert.notEqual(rs.primary, formerPrimary);
        assert.ok(atStepDown >= 0, 'the program asked for the step-down');
        const refused = rs.executed.slice(atStepDown).filter((e) => e.command === 'insert' && e.member === formerPrimary).length;
        assert.ok(refused >= 1, 'some writes reached the former primary, were refused, and were retried');
      });
    }
  }
});
