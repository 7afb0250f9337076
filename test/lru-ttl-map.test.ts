import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LruTtlMap } from '../filter/routing/lru-ttl-map';

describe('bounded route maps (cursor and transaction routes)', () => {
  it('evicts the least recently used entry at the size bound, and expired entries on sweep', () => {
    const evicted: Array<[string, string]> = [];
    const m = new LruTtlMap<{ lastUsedAt: number }>(2, 1000, (k, _v, reason) => evicted.push([k, reason]));
    m.set('a', { lastUsedAt: Date.now() });
    m.set('b', { lastUsedAt: Date.now() });
    m.get('a'); // a is now the most recent
    m.set('c', { lastUsedAt: Date.now() });
    assert.deepEqual(evicted, [['b', 'size_limit']]);
    assert.ok(m.has('a') && m.has('c'));
    m.sweep(Date.now() + 5000);
    assert.deepEqual(evicted.slice(1), [['a', 'idle_ttl'], ['c', 'idle_ttl']]);
    assert.equal(m.size, 0);
  });
});
