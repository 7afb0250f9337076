import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { renderedDom, screenshot, tableRows, textById } from '../scripts/chromium';
import { waitFor } from '../scripts/ports';
import { startMongoplex, type TestMongoplex } from './support/mongoplex';
import { RawClient } from './support/raw-client';
import { useFerretDB } from './support/setup';
import type { ProxyStats } from '../filter/admin/views';

const db = useFerretDB();

describe('the live status page, in a real headless browser (Debian chromium)', () => {
  let proxy: TestMongoplex;
  let dir: string;
  let clients: RawClient[] = [];
  let stop = false;
  let loops: Array<Promise<void>> = [];
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-status-'));
    proxy = await startMongoplex(db.address, { admin: { port: 0 }, upstream: { maxPoolSize: 3 } });
    // Steady load while the page is open: 12 clients reading one collection, one cold write.
    clients = await Promise.all(Array.from({ length: 12 }, () => RawClient.connect(proxy.port)));
    await clients[0]!.command({ insert: 'cold', documents: [{ x: 1 }], $db: 'status' });
    loops = clients.map(async (c) => {
      while (!stop) await c.command({ find: 'hot', filter: {}, $db: 'status' }).catch(() => undefined);
    });
    await waitFor('a few seconds of history under load', async () => (proxy.proxy.history.since().filter((s) => s.commandsPerSecond > 0).length >= 2 ? true : undefined));
  });
  after(async () => {
    stop = true;
    await Promise.all(loops);
    for (const c of clients) c.destroy();
    await proxy?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows the same clients, upstream connections, pool, servers and top collection as /stats, and draws its charts', async () => {
    const base = `http://127.0.0.1:${proxy.admin!.port}/`;
    const dom = await renderedDom(base, path.join(dir, 'profile-dom'));
    const stats = (await (await fetch(`${base}stats`)).json()) as ProxyStats;
    assert.ok(dom.includes('data-updated="1'), 'the page rendered data from the admin endpoint');
    assert.equal(textById(dom, 'state'), 'serving');
    // Stable under this load: 12 clients, a pool of 3 kept full.
    assert.equal(textById(dom, 'clients'), String(stats.clients));
    assert.equal(stats.clients, 12);
    const upstream = stats.pools.reduce((n, p) => n + p.total, 0);
    assert.equal(textById(dom, 'upstream'), String(upstream));
    assert.equal(textById(dom, 'maxPool'), '3');
    assert.ok(Number(textById(dom, 'rate')!.replace(/,/g, '')) > 0, 'a command rate');
    assert.match(textById(dom, 'p99') ?? '', /^[\d.,]+$/);
    const servers = tableRows(dom, 'servers');
    assert.deepEqual(servers.map((r) => [r[0], r[1]]), stats.topology.map((m) => [m.member, m.type]));
    const pools = tableRows(dom, 'pools');
    assert.deepEqual(pools.map((r) => r[0]), stats.pools.map((p) => p.address));
    const top = tableRows(dom, 'collections')[0]!;
    const busiest = stats.commandStats.collections[0]!;
    assert.deepEqual(top.slice(0, 3), [busiest.db, busiest.collection, busiest.command]);
    assert.deepEqual(top.slice(0, 3), ['status', 'hot', 'find']);
    for (const chart of ['chart-connections', 'chart-pool', 'chart-rate', 'chart-latency']) {
      assert.match(dom, new RegExp(`id="${chart}"[^>]*>.*?<polyline`, 's'), `${chart} has a line`);
    }
  });

  it('takes a screenshot of the page', async () => {
    const file = path.join(dir, 'status-page.png');
    await screenshot(`http://127.0.0.1:${proxy.admin!.port}/`, file, path.join(dir, 'profile-shot'));
    const png = readFileSync(file);
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assert.equal(png.readUInt32BE(16), 1400, 'width');
    assert.ok(png.length > 20_000, `a real picture (${png.length} bytes)`);
  });
});
