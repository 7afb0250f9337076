import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { waitFor } from '../scripts/ports';
import type { RunningServer } from '../filter/server';
import { startConfigured } from './support/mongoplex';
import { insertsAcrossStepDown } from './support/driver-scenarios';
import { ReplicaSetFixture } from './support/replica-set-fixture';
import { Envoy } from '../scripts/envoy';
import { freePort } from '../scripts/ports';
import { buildBootstrap } from '../filter/envoy/bootstrap';
import { useFerretDB } from './support/setup';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

describe('replset mode: one proxy address per member, driver uses replicaSet=', () => {
  let rs: ReplicaSetFixture;
  let proxy: RunningServer;
  let uri: string;
  let proxyAddresses: string[];

  before(async () => {
    rs = new ReplicaSetFixture(db);
    await rs.start();
    proxy = await startConfigured({
      listen: { port: 0 },
      upstream: { servers: [rs.addresses[2]!], maxPoolSize: 4 },
      topology: { mode: 'replset', memberPorts: [0, 0], heartbeatMs: 300 },
    });
    await waitFor('all three members to have proxy addresses', async () => (proxy.proxy.addresses!.entries().length === 3 ? true : undefined));
    proxyAddresses = proxy.proxy.addresses!.entries().map(([, p]) => p);
    uri = `mongodb://${proxyAddresses[0]}/?replicaSet=rs0&heartbeatFrequencyMS=500`;
  });
  after(async () => {
    await proxy?.stop();
    await rs?.stop();
  });

  it('discovery yields only proxy addresses, and the driver never dials a backend address', async () => {
    const client = new MongoClient(uri);
    const dialed = new Set<string>();
    client.on('serverOpening', (e) => dialed.add(e.address));
    client.on('connectionCreated', (e) => dialed.add(e.address));
    await client.connect();
    try {
      const hello = await client.db('admin').command({ hello: 1 });
      assert.deepEqual([...hello.hosts].sort(), [...proxyAddresses].sort());
      assert.ok(proxyAddresses.includes(hello.primary));
      assert.ok(proxyAddresses.includes(hello.me));
      assert.equal(hello.setName, 'rs0');
      await client.db('rs').collection('c').insertOne({ x: 1 });
      await client.db('rs').collection('c').find({}, { readPreference: 'secondary' }).toArray();
      assert.ok(dialed.size >= 3);
      for (const a of dialed) assert.ok(proxyAddresses.includes(a), `driver dialed ${a}, not a proxy address`);
      for (const real of rs.addresses) assert.ok(!dialed.has(real));
    } finally {
      await client.close();
    }
  });

  it('reads honour read preference: primary reads on the primary, secondary reads on a secondary', async () => {
    const client = await new MongoClient(uri).connect();
    try {
      const col = client.db('rs').collection('prefs');
      await col.insertOne({ _id: 'p' } as never);
      const mark = rs.executed.length;
      await col.findOne({ _id: 'p' } as never);
      await col.findOne({ _id: 'p' } as never, { readPreference: 'secondary' });
      await col.findOne({ _id: 'p' } as never, { readPreference: 'secondaryPreferred' });
      const finds = rs.executed.slice(mark).filter((e) => e.command === 'find');
      assert.equal(finds.length, 3);
      assert.equal(finds[0]!.member, rs.primary);
      assert.notEqual(finds[1]!.member, rs.primary);
      assert.notEqual(finds[2]!.member, rs.primary);
    } finally {
      await client.close();
    }
  });

  it('replSetGetStatus names members by their proxy addresses', async () => {
    const client = await new MongoClient(uri).connect();
    try {
      const status = await client.db('admin').command({ replSetGetStatus: 1 });
      assert.deepEqual(status.members.map((m: { name: string }) => m.name).sort(), [...proxyAddresses].sort());
      for (const m of status.members as Array<{ syncSourceHost: string }>) assert.ok(m.syncSourceHost === '' || proxyAddresses.includes(m.syncSourceHost));
    } finally {
      await client.close();
    }
  });

  it('cursors on secondaries and the primary survive pooling across members', async () => {
    const seed = await new MongoClient(uri).connect();
    await seed.db('rs').collection('cur').insertMany(Array.from({ length: 120 }, (_, i) => ({ _id: i })) as never);
    await seed.close();
    const clients = await Promise.all(Array.from({ length: 8 }, () => new MongoClient(uri, { maxPoolSize: 2 }).connect()));
    try {
      const mark = rs.executed.length;
      const results = await Promise.all(clients.flatMap((c, i) => ['primary', 'secondary'].map((rp) =>
        c.db('rs').collection('cur').find({}, { batchSize: 9 + i, sort: { _id: 1 }, readPreference: rp as 'primary' }).toArray())));
      for (const docs of results) assert.equal(docs.length, 120);
      const getMores = rs.executed.slice(mark).filter((e) => e.command === 'getMore');
      assert.ok(getMores.some((g) => g.member === rs.primary) && getMores.some((g) => g.member !== rs.primary));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('modes are chosen per listener: the plain listener presents a mongos over the same set', async () => {
    const client = await new MongoClient(`mongodb://127.0.0.1:${proxy.tcp!.port}/`).connect();
    try {
      const hello = await client.db('admin').command({ hello: 1 });
      assert.equal(hello.msg, 'isdbgrid');
      assert.equal(hello.hosts, undefined);
      const mark = rs.executed.length;
      await client.db('rs').collection('plain').insertOne({ via: 'mongos view' });
      await client.db('rs').collection('plain').findOne({}, { readPreference: 'secondary' });
      const ran = rs.executed.slice(mark).filter((e) => e.command === 'insert' || e.command === 'find');
      assert.equal(ran[0]!.member, rs.primary);
      assert.notEqual(ran[1]!.member, rs.primary);
    } finally {
      await client.close();
    }
  });

  it('a step-down mid-workload ends with every retryable write acknowledged exactly once', async () => {
    const client = await new MongoClient(uri, { retryWrites: true }).connect();
    try {
      const { refusedByFormerPrimary } = await insertsAcrossStepDown(client, rs, 'failover', 4, 40);
      // The writes that still reached the former primary were refused (NotWritablePrimary) and retried.
      assert.ok(refusedByFormerPrimary >= 1, 'the workload really hit the former primary after the step-down');
      const hello = await client.db('admin').command({ hello: 1 });
      assert.equal(hello.primary, proxy.proxy.addresses!.proxyAddressOf(rs.addresses[rs.primary]!));
    } finally {
      await client.close();
    }
  });
});

describe('replset mode: members joining and leaving', () => {
  let rs: ReplicaSetFixture;
  let proxy: RunningServer;

  before(async () => {
    rs = new ReplicaSetFixture(db);
    await rs.start();
    proxy = await startConfigured({
      listen: { port: null },
      upstream: { servers: [rs.addresses[0]!] },
      topology: { mode: 'replset', memberPorts: [0, 0], heartbeatMs: 200 },
    });
    await waitFor('three proxy addresses', async () => (proxy.proxy.addresses!.entries().length === 3 ? true : undefined));
  });
  after(async () => {
    await proxy?.stop();
    await rs?.stop();
  });

  it('a new member gets a proxy address and a departed one loses its own, without a restart or dropping other clients', async () => {
    const map = proxy.proxy.addresses!;
    const primaryProxy = map.proxyAddressOf(rs.addresses[rs.primary]!)!;
    const client = await new MongoClient(`mongodb://${primaryProxy}/?replicaSet=rs0&heartbeatFrequencyMS=500`).connect();
    try {
      await client.db('rs').collection('members').insertOne({ before: true });
      const joined = await rs.addMember();
      const joinedReal = rs.members[joined]!.address;
      const joinedProxy = await waitFor('a proxy address for the new member', async () => map.proxyAddressOf(joinedReal));
      await waitFor('the driver to see four members', async () => {
        const hello = await client.db('admin').command({ hello: 1 });
        return (hello.hosts as string[]).length === 4 && (hello.hosts as string[]).includes(joinedProxy) ? true : undefined;
      });
      const leaving = [0, 1, 2].find((i) => i !== rs.primary)!;
      const leavingProxy = map.proxyAddressOf(rs.members[leaving]!.address)!;
      await rs.removeMember(leaving);
      await waitFor('the departed member to lose its proxy address', async () => {
        const hello = await client.db('admin').command({ hello: 1 });
        return (hello.hosts as string[]).includes(leavingProxy) ? undefined : true;
      });
      // The client on the primary's proxy address was never disconnected.
      await client.db('rs').collection('members').insertOne({ after: true });
      assert.equal(await client.db('rs').collection('members').countDocuments({}), 2);
    } finally {
      await client.close();
    }
  });
});

describe('replset mode through Envoy: one Envoy listener per member (ext_proc metadata names the member)', () => {
  let rs: ReplicaSetFixture;
  let proxy: RunningServer;
  let envoy: Envoy;
  let listeners: number[];

  before(async () => {
    rs = new ReplicaSetFixture(db);
    await rs.start();
    const grpc = await freePort();
    listeners = [await freePort(), await freePort(), await freePort()];
    proxy = await startConfigured({
      listen: { port: null, grpc: `127.0.0.1:${grpc}` },
      upstream: { servers: [rs.addresses[0]!] },
      topology: {
        mode: 'replset',
        heartbeatMs: 300,
        advertise: Object.fromEntries(rs.addresses.map((a, i) => [a, `127.0.0.1:${listeners[i]}`])),
      },
    });
    const admin = await freePort();
    envoy = await Envoy.start(buildBootstrap({
      admin: { host: '127.0.0.1', port: admin },
      listeners: rs.addresses.map((member, i) => ({ name: `rs${i}`, host: '127.0.0.1', port: listeners[i]!, member })),
      ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } },
    }), admin);
  });
  after(async () => {
    await envoy?.stop();
    await proxy?.stop();
    await rs?.stop();
  });

  it('the driver discovers only Envoy addresses and its reads and writes reach the right members', async () => {
    const envoyAddresses = listeners.map((p) => `127.0.0.1:${p}`);
    const client = new MongoClient(`mongodb://${envoyAddresses[1]}/?replicaSet=rs0`);
    const dialed = new Set<string>();
    client.on('connectionCreated', (e) => dialed.add(e.address));
    await client.connect();
    try {
      const hello = await client.db('admin').command({ hello: 1 });
      assert.deepEqual([...hello.hosts].sort(), [...envoyAddresses].sort());
      const mark = rs.executed.length;
      await client.db('rs').collection('envoy').insertOne({ x: 1 });
      await client.db('rs').collection('envoy').findOne({}, { readPreference: 'secondary' });
      const ran = rs.executed.slice(mark).filter((e) => e.command === 'insert' || e.command === 'find');
      assert.equal(ran[0]!.member, rs.primary);
      assert.notEqual(ran[1]!.member, rs.primary);
      for (const a of dialed) assert.ok(envoyAddresses.includes(a), `driver dialed ${a}`);
    } finally {
      await client.close();
    }
  });
});
