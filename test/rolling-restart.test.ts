import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { startEnvoyFront, type EnvoyFront } from '../scripts/envoy';
import { freePort, waitFor } from '../scripts/ports';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { useFerretDB } from './support/setup';

const db = useFerretDB();

/** One mongoplex slot behind Envoy: its ext_proc and admin ports. */
interface Slot {
  grpc: number;
  admin: number;
}

async function startSlot(slot: Slot): Promise<TestMongoplex> {
  return startMongoplex(db.address, {
    listen: { grpc: `127.0.0.1:${slot.grpc}`, drainDelayMs: 10_000 },
    admin: { port: slot.admin },
    upstream: { maxPoolSize: 4 },
  });
}

describe('rolling restart behind Envoy: a new mongoplex takes over while the old one drains', () => {
  const blue: Slot = { grpc: 0, admin: 0 };
  const green: Slot = { grpc: 0, admin: 0 };
  let front: EnvoyFront;
  let old: TestMongoplex | undefined;
  let next: TestMongoplex | undefined;
  const clients: MongoClient[] = [];

  before(async () => {
    for (const s of [blue, green]) Object.assign(s, { grpc: await freePort(), admin: await freePort() });
    old = await startSlot(blue);
    const at = (port: number) => ({ host: '127.0.0.1', port });
    front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: at(blue.grpc), filterAdmin: at(blue.admin), standby: { grpc: at(green.grpc), admin: at(green.admin) } } });
    await waitFor('Envoy sees the running slot healthy', async () => ((await front.envoy.stat('cluster.mongoplex_ext_proc.membership_healthy')) === 1 ? true : undefined));
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await front?.envoy.stop();
    await old?.stop();
    await next?.stop();
  });

  // Runs, but does not fail the suite (a todo): on an idle machine it passes (0 errors; with
  // drainDelayMs 0 it fails), but with one core kept busy it fails every time: a
  // MongoNetworkError when the old slot closes its clients, and MongoServerSelectionErrors 30 s
  // later (a driver whose server stayed Unknown after its monitoring connection was closed).
  // Issue 10, item 5 stays open until that is understood.
  it('under load through the official driver, no request fails while slots change', { todo: 'fails when the machine is CPU-bound (see the comment above)' }, async () => {
    for (let i = 0; i < 6; i++) clients.push(await new MongoClient(front.uri, { maxPoolSize: 4 }).connect());
    let ops = 0;
    let stop = false;
    const errors: string[] = [];
    const loops = clients.flatMap((c, i) => Array.from({ length: 4 }, async (_, j) => {
      const coll = c.db('restart').collection(`c${i}`);
      for (let n = 0; !stop; n++) {
        try {
          await coll.insertOne({ j, n });
          await coll.findOne({ j, n });
          ops++;
        } catch (err) {
          errors.push(`${(err as Error).name}: ${(err as Error).message}`);
        }
      }
    }));
    await waitFor('load through the old slot', async () => (ops > 200 ? true : undefined));
    next = await startSlot(green);
    await waitFor('Envoy sees both slots healthy', async () => ((await front.envoy.stat('cluster.mongoplex_ext_proc.membership_healthy')) === 2 ? true : undefined));
    // What SIGTERM does: /readyz fails, Envoy stops choosing the slot, then its clients are
    // closed between commands and it exits.
    const left = await old!.drain(30_000);
    assert.equal(left, 0, 'every client of the old slot closed between commands');
    await old!.stop();
    old = undefined;
    const atSwitch = ops;
    await waitFor('load through the new slot only', async () => (ops > atSwitch + 200 ? true : undefined), 30_000);
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(errors, []);
    assert.ok(next.proxy.clientCount > 0, 'the drivers reconnected to the new slot');
  });
});
