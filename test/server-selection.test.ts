import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { selectServer } from '../filter/routing/server-selection';
import { describeMember, type MemberDescription } from '../filter/topology/member';
import { ServerAddress } from '../filter/upstream/address';
import type { ReadPreference } from '../filter/wire/peek';

function member(port: number, role: 'primary' | 'secondary', opts: { lagSeconds?: number; tags?: Record<string, string>; rttMs?: number } = {}): MemberDescription {
  const now = Date.now();
  return describeMember(ServerAddress.parse(`db:${port}`), {
    ok: 1,
    setName: 'rs0',
    isWritablePrimary: role === 'primary',
    secondary: role === 'secondary',
    hosts: ['db:1', 'db:2', 'db:3'],
    tags: opts.tags ?? {},
    lastWrite: { lastWriteDate: new Date(now - (opts.lagSeconds ?? 0) * 1000) },
  }, opts.rttMs ?? 1);
}

const rp = (mode: string, extra: Partial<ReadPreference> = {}): ReadPreference => ({ mode, tags: [], maxStalenessSeconds: undefined, problem: undefined, ...extra });
const first = (e: MemberDescription[]): MemberDescription => e[0]!;
const port = (m: MemberDescription | undefined): number | undefined => m?.address.port;

describe('server selection in mongos mode', () => {
  const members = [
    member(1, 'primary', { tags: { dc: 'east' } }),
    member(2, 'secondary', { tags: { dc: 'east' }, lagSeconds: 100 }),
    member(3, 'secondary', { tags: { dc: 'west' }, lagSeconds: 1 }),
  ];

  it('primary, secondary and the preferred modes', () => {
    assert.equal(port(selectServer(members, undefined, 1000, first)), 1);
    assert.equal(port(selectServer(members, rp('primary'), 1000, first)), 1);
    assert.deepEqual(new Set([2, 3]).has(port(selectServer(members, rp('secondary'), 1000, first))!), true);
    assert.equal(port(selectServer([members[1]!, members[2]!], rp('primaryPreferred'), 1000, first)), 2);
    assert.equal(port(selectServer([members[0]!], rp('secondaryPreferred'), 1000, first)), 1);
    assert.equal(selectServer([members[0]!], rp('secondary'), 1000, first), undefined);
  });

  it('tag sets are tried in order; an empty set matches any server', () => {
    assert.equal(port(selectServer(members, rp('secondary', { tags: [{ dc: 'west' }] }), 1000, first)), 3);
    assert.equal(port(selectServer(members, rp('secondary', { tags: [{ dc: 'mars' }, { dc: 'east' }] }), 1000, first)), 2);
    assert.equal(selectServer(members, rp('secondary', { tags: [{ dc: 'mars' }] }), 1000, first), undefined);
    assert.notEqual(selectServer(members, rp('secondary', { tags: [{ dc: 'mars' }, {}] }), 1000, first), undefined);
  });

  it('maxStalenessSeconds leaves out secondaries that lag too far behind the primary', () => {
    assert.equal(port(selectServer(members, rp('secondary', { maxStalenessSeconds: 90 }), 1000, first)), 3);
    assert.equal(selectServer(members, rp('secondary', { maxStalenessSeconds: 90, tags: [{ dc: 'east' }] }), 1000, first), undefined);
  });

  it('nearest picks within the latency window, among primary and secondaries', () => {
    const near = [member(1, 'primary', { rttMs: 50 }), member(2, 'secondary', { rttMs: 2 }), member(3, 'secondary', { rttMs: 10 })];
    const picks = new Set<number>();
    for (let i = 0; i < 20; i++) picks.add(port(selectServer(near, rp('nearest'), 1000, (e) => e[i % e.length]!))!);
    assert.deepEqual([...picks].sort(), [2, 3], 'the 50 ms primary is outside the 15 ms window');
  });

  it('a fleet of mongos routers: any router, the read preference travelling with the command', () => {
    const fleet = [1, 2].map((p) => describeMember(ServerAddress.parse(`r:${p}`), { ok: 1, msg: 'isdbgrid', ismaster: true }, 1));
    assert.ok([1, 2].includes(port(selectServer(fleet, rp('secondary'), 1000, first))!));
  });
});
