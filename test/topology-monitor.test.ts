import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../scripts/ports';
import { FaultRelay } from './support/fault-relay';
import { TopologyMonitor } from '../filter/topology/monitor';
import { ServerAddress } from '../filter/upstream/address';
import { useFerretDB } from './support/setup';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

describe('topology monitor', () => {
  let relay: FaultRelay;
  let monitor: TopologyMonitor;

  before(async () => {
    relay = new FaultRelay(db.host, db.port);
    await relay.listen();
    monitor = new TopologyMonitor([ServerAddress.parse(relay.address)], {
      heartbeatMs: 60_000, connectTimeoutMs: 300, appName: 'test-monitor', compressors: [],
    });
    monitor.start();
    await monitor.ready(5000);
  });
  after(async () => {
    monitor?.stop();
    relay?.release();
    await relay?.close();
  });

  it('a server that stops answering is marked Unknown within the timeout; a re-check never hangs (clients wait on it)', { timeout: 10_000 }, async () => {
    const server = ServerAddress.parse(relay.address);
    assert.equal(monitor.description(server)!.type, 'Standalone');
    relay.hold();
    await monitor.recheck(server);
    const d = monitor.description(server)!;
    assert.equal(d.type, 'Unknown');
    assert.match(d.error ?? '', /timed out/);
    relay.release();
    await monitor.recheck(server);
    await waitFor('the server to be known again', async () => (monitor.description(server)!.type === 'Standalone' ? true : undefined));
  });
});
