import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../filter/log';
import { ByteBudget } from '../filter/session/byte-budget';
import { MemoryReclaimer, RECLAIM_AT_BYTES, RECLAIM_EVERY_MS } from '../filter/session/memory-reclaimer';

const MB = 1024 * 1024;

describe('memory of large client messages is given back once they are gone', () => {
  it('collects once enough client input was let go, not while it is still held, and at most once per interval', () => {
    const budget = new ByteBudget(1024 * MB);
    let collections = 0;
    const reclaimer = new MemoryReclaimer(budget, createLogger('silent'), () => collections++);
    assert.ok(budget.resize(0, 300 * MB));
    reclaimer.sweep(10_000);
    assert.equal(collections, 0, 'held input is not garbage');
    budget.resize(300 * MB, 300 * MB - RECLAIM_AT_BYTES + 1);
    reclaimer.sweep(10_000);
    assert.equal(collections, 0, 'less than the threshold let go');
    budget.resize(300 * MB - RECLAIM_AT_BYTES + 1, 0);
    reclaimer.sweep(10_000);
    assert.equal(collections, 1, 'all of it let go: one collection');
    reclaimer.sweep(11_000);
    assert.equal(collections, 1, 'nothing let go since');
    budget.resize(0, 200 * MB);
    budget.resize(200 * MB, 0);
    reclaimer.sweep(10_000 + RECLAIM_EVERY_MS - 1);
    assert.equal(collections, 1, 'too soon after the last one');
    reclaimer.sweep(10_000 + RECLAIM_EVERY_MS);
    assert.equal(collections, 2);
  });

  it("V8's own collector is used when none is given (it runs without --expose-gc)", () => {
    const budget = new ByteBudget(1024 * MB);
    const reclaimer = new MemoryReclaimer(budget, createLogger('silent'));
    budget.resize(0, RECLAIM_AT_BYTES);
    budget.resize(RECLAIM_AT_BYTES, 0);
    assert.doesNotThrow(() => reclaimer.sweep(RECLAIM_EVERY_MS));
    assert.equal(budget.releasedBytes, 0, 'marked after collecting');
  });
});
