import { afterEach, describe, it } from 'node:test';
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
    // Envoy's health check (every 2 s, 2 failures) stops choosing a draining slot within the
    // delay; the notice outlasts one driver heartbeat (10 s).
    listen: { grpc: `127.0.0.1:${slot.grpc}`, drainDelayMs: 8_000, drainNoticeMs: 12_000 },
    admin: { port: slot.admin },
    upstream: { maxPoolSize: 4 },
  });
}

/** What the drivers went through, for the failure message: SDAM, pool and command failures. */
function watch(client: MongoClient, name: string, events: string[], t0: number): void {
  const note = (s: string) => events.push(`${Date.now() - t0} ms ${name} ${s}`);
  client.on('serverDescriptionChanged', (e) => note(`server ${e.previousDescription.type} -> ${e.newDescription.type} ${e.newDescription.error?.message ?? ''}`));
  client.on('connectionPoolCleared', () => note('pool cleared'));
  client.on('connectionClosed', (e) => note(`connection ${e.connectionId} closed: ${e.reason}`));
  client.on('commandFailed', (e) => note(`${e.commandName} failed on connection ${e.connectionId}: ${e.failure.message}`));
}

describe('rolling restart behind Envoy: a new mongoplex takes over while the old one drains', () => {
  let front: EnvoyFront | undefined;
  let old: TestMongoplex | undefined;
  let next: TestMongoplex | undefined;
  const clients: MongoClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    await front?.envoy.stop();
    await old?.stop();
    await next?.stop();
    front = old = next = undefined;
  });

  // Drivers in both modes mongoplex serves: a mongos (SDAM monitor, told at its heartbeat) and
  // load-balanced (no monitor, told on its next retryable command).
  for (const mode of ['mongos', 'loadBalanced'] as const) {
    it(`${mode} drivers under load: no request fails while the slots change`, async () => {
      const blue: Slot = { grpc: await freePort(), admin: await freePort() };
      const green: Slot = { grpc: await freePort(), admin: await freePort() };
      old = await startSlot(blue);
      const at = (port: number) => ({ host: '127.0.0.1', port });
      front = await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: at(blue.grpc), filterAdmin: at(blue.admin), standby: { grpc: at(green.grpc), admin: at(green.admin) } } });
      const envoy = front.envoy;
      await waitFor('Envoy sees the running slot healthy', async () => ((await envoy.stat('cluster.mongoplex_ext_proc.membership_healthy')) === 1 ? true : undefined));

      const t0 = Date.now();
      const events: string[] = [];
      for (let i = 0; i < 6; i++) {
        const c = new MongoClient(mode === 'loadBalanced' ? `${front.uri}?loadBalanced=true` : front.uri, { maxPoolSize: 4, monitorCommands: true });
        watch(c, `client ${i}`, events, t0);
        clients.push(await c.connect());
      }
      let ops = 0;
      let stop = false;
      const errors: string[] = [];
      const loops = clients.flatMap((c, i) => Array.from({ length: 4 }, async (_, j) => {
        const coll = c.db('restart').collection(`${mode}${i}`);
        for (let n = 0; !stop; n++) {
          try {
            await coll.insertOne({ j, n });
            await coll.findOne({ j, n });
            ops++;
          } catch (err) {
            errors.push(`${Date.now() - t0} ms client ${i}: ${(err as Error).name}: ${(err as Error).message}`);
          }
        }
      }));
      await waitFor('load through the old slot', async () => (ops > 200 ? true : undefined));
      next = await startSlot(green);
      await waitFor('Envoy sees both slots healthy', async () => ((await envoy.stat('cluster.mongoplex_ext_proc.membership_healthy')) === 2 ? true : undefined));
      // What SIGTERM does: /readyz fails, Envoy stops choosing the slot, drivers are told to
      // leave, the stragglers are closed between commands, and it exits.
      const left = await old.drain(30_000);
      assert.equal(left, 0, 'every client of the old slot gone');
      await old.stop();
      old = undefined;
      const atSwitch = ops;
      await waitFor('load through the new slot only', async () => (ops > atSwitch + 200 ? true : undefined), 30_000);
      stop = true;
      await Promise.all(loops);
      assert.deepEqual(errors, [], `what the drivers saw:\n${events.join('\n')}`);
      assert.ok(next.proxy.clientCount > 0, 'the drivers reconnected to the new slot');
    });
  }
});
