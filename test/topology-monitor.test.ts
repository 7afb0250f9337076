import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../scripts/ports';
import { useFaultRelay } from './support/fault-relay';
import { TopologyMonitor } from '../filter/topology/monitor';
import { ServerAddress } from '../filter/upstream/address';
import { useFerretDB } from './support/setup';

/** One FerretDB for every suite in this file. */
const db = useFerretDB();

describe('topology monitor', () => {
  const fault = useFaultRelay(() => db);
  let monitor: TopologyMonitor;

  before(async () => {
    monitor = new TopologyMonitor([ServerAddress.parse(fault.relay.address)], {
      heartbeatMs: 60_000, connectTimeoutMs: 300, appName: 'test-monitor', compressors: [],
    });
    monitor.start();
    await monitor.ready(5000);
  });
  after(async () => {
    monitor?.stop();
  });

  it('a server that stops answering is marked Unknown within the timeout; a re-check never hangs (clients wait on it)', { timeout: 10_000 }, async () => {
    const server = ServerAddress.parse(fault.relay.address);
    assert.equal(monitor.description(server)!.type, 'Standalone');
    fault.relay.hold();
    await monitor.recheck(server);
    const d = monitor.description(server)!;
    assert.equal(d.type, 'Unknown');
    assert.match(d.error ?? '', /timed out/);
    fault.relay.release();
    await monitor.recheck(server);
    await waitFor('the server to be known again', async () => (monitor.description(server)!.type === 'Standalone' ? true : undefined));
  });
});
