import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, type ConfigInput } from '../filter/config';
import { planWorkers, share, workerConfig, workerGrpcAddress } from '../filter/workers/plan';
import { mergeCommandRows, mergeHistory, mergeJson, mergePrometheus } from '../filter/workers/merge';
import { diffConfig } from '../filter/admin/reload';
import { restartDelayMs } from '../filter/workers/supervisor';

const config = (overrides: ConfigInput = {}, env: NodeJS.ProcessEnv = {}): ReturnType<typeof loadConfig> => loadConfig({ env, overrides });

describe('workers: how many, and what each one gets', () => {
  it('auto is the number of cores; MONGOPLEX_WORKERS sets a number', () => {
    assert.deepEqual(planWorkers(config(), 4), { count: 4 });
    assert.deepEqual(planWorkers(config({}, { MONGOPLEX_WORKERS: '3' }), 8), { count: 3 });
    assert.deepEqual(planWorkers(config({}, { MONGOPLEX_WORKERS: 'auto' }), 2), { count: 2 });
  });

  it('auto stays one process where state must be shared (mongos/replset topology, client authentication), and says why', () => {
    const mongos = planWorkers(config({ topology: { mode: 'mongos' } }), 4);
    assert.equal(mongos.count, 1);
    assert.match(mongos.limitedBy!, /topology.mode mongos/);
    const proxied = planWorkers(config({ auth: { listeners: { grpc: 'proxy' }, usersFile: '/x' } }), 4);
    assert.equal(proxied.count, 1);
    assert.match(proxied.limitedBy!, /auth.mode proxy \(grpc listeners\)/);
    const passthrough = planWorkers(config({ auth: { mode: 'passthrough', userSource: 'upstream' }, upstream: { auth: { username: 'svc', password: 'pw' } } }), 4);
    assert.equal(passthrough.count, 1);
    assert.match(passthrough.limitedBy!, /auth.mode passthrough \(tcp, grpc listeners\) remembers session and cursor owners/);
  });

  it('an explicit number the configuration cannot have is refused by name', () => {
    assert.throws(() => planWorkers(config({ workers: 2, topology: { mode: 'replset' } }), 4), (e: Error) => e instanceof ConfigError && /workers: 2 needs one process: topology.mode replset/.test(e.message));
    assert.throws(() => planWorkers(config({ workers: 5, upstream: { maxPoolSize: 4 } }), 8), /workers: 5 is more than upstream.maxPoolSize \(4\)/);
    assert.deepEqual(planWorkers(config({ upstream: { maxPoolSize: 3 } }), 8), { count: 3, limitedBy: 'upstream.maxPoolSize 3, which the workers split' });
    assert.throws(() => config({}, { MONGOPLEX_WORKERS: '0' }), /workers/);
    assert.throws(() => planWorkers(config({ workers: 3, listen: { grpc: '127.0.0.1:65534' } }), 8), /workers: 3 workers serve ext_proc at listen.grpc's port 65534 and the 2 above it, past 65535/);
    // A reload that shrinks the pool below the workers is refused (the running shares stay).
    assert.throws(() => workerConfig(config({ upstream: { maxPoolSize: 1 } }), 0, 2), /workers: 2 is more than upstream.maxPoolSize \(1\)/);
  });

  it('the workers\' shares of every upstream limit add up to the configured value', () => {
    for (let count = 1; count <= 8; count++) {
      for (const maxPoolSize of [count, count + 1, 16, 37]) {
        const c = config({ upstream: { maxPoolSize, minPoolSize: Math.min(5, maxPoolSize), maxConnecting: 2 } });
        const shares = Array.from({ length: count }, (_, i) => workerConfig(c, i, count));
        const sum = (f: (w: typeof c) => number): number => shares.reduce((n, w) => n + f(w), 0);
        assert.equal(sum((w) => w.upstream.maxPoolSize), maxPoolSize);
        assert.equal(sum((w) => w.upstream.minPoolSize), c.upstream.minPoolSize);
        assert.ok(shares.every((w) => w.upstream.maxPoolSize >= 1 && w.upstream.maxConnecting >= 1 && w.upstream.minPoolSize <= w.upstream.maxPoolSize));
      }
    }
    assert.deepEqual([0, 1, 2].map((i) => share(10, i, 3)), [4, 3, 3]);
  });

  it('process-wide bounds are split too: the workers together hold what one process may', () => {
    const c = config({ listen: { maxClientConnections: 1001 }, client: { maxTotalBufferedBytes: 100 * 1024 * 1024, maxMessageSizeBytes: 16 * 1024 * 1024 }, cursors: { maxRoutes: 999 }, upstream: { maxWaitQueueSize: 77 } });
    for (const count of [1, 2, 3, 6]) {
      const shares = Array.from({ length: count }, (_, i) => workerConfig(c, i, count));
      const sum = (f: (w: typeof c) => number): number => shares.reduce((n, w) => n + f(w), 0);
      assert.equal(sum((w) => w.client.maxTotalBufferedBytes), c.client.maxTotalBufferedBytes, `${count} workers: client input`);
      assert.equal(sum((w) => w.listen.maxClientConnections), 1001);
      assert.equal(sum((w) => w.cursors.maxRoutes), 999);
      assert.equal(sum((w) => w.upstream.maxWaitQueueSize), 77);
      assert.equal(sum((w) => w.transactions.maxPins), c.transactions.maxPins);
      assert.equal(sum((w) => w.mirror.queueBytes), c.mirror.queueBytes);
      assert.ok(shares.every((w) => w.client.maxTotalBufferedBytes >= w.client.maxMessageSizeBytes), 'each share holds one largest message');
    }
    // 100 MiB of input holds six 16 MiB messages: a seventh worker could not take one.
    assert.throws(() => workerConfig(c, 0, 7), /workers: 7 workers would each hold less than client.maxMessageSizeBytes \(16777216\) of client.maxTotalBufferedBytes \(104857600\)/);
    assert.deepEqual(planWorkers(config({ upstream: { maxPoolSize: 64 } }), 16), { count: 11, limitedBy: 'client.maxTotalBufferedBytes 536870912, which the workers split, each holding at least client.maxMessageSizeBytes 48000000' });
  });

  it('worker i serves ext_proc at the port + i, or the socket path + .i; admin on a loopback port of its own', () => {
    assert.equal(workerGrpcAddress('127.0.0.1:50051', 0), '127.0.0.1:50051');
    assert.equal(workerGrpcAddress('127.0.0.1:50051', 3), '127.0.0.1:50054');
    assert.equal(workerGrpcAddress('[::1]:50051', 1), '[::1]:50052');
    assert.equal(workerGrpcAddress('unix:/run/mongoplex.sock', 0), 'unix:/run/mongoplex.sock');
    assert.equal(workerGrpcAddress('unix:/run/mongoplex.sock', 2), 'unix:/run/mongoplex.sock.2');
    assert.equal(workerGrpcAddress('127.0.0.1:0', 1), '127.0.0.1:0');
    const w = workerConfig(config({ admin: { host: '0.0.0.0', port: 9001, token: 'x'.repeat(16) }, capture: { dir: '/captures' } }), 1, 2);
    assert.deepEqual([w.admin.host, w.admin.port, w.admin.token], ['127.0.0.1', 0, 'x'.repeat(16)]);
    assert.equal(w.capture.dir, '/captures/worker-1');
  });

  it('a reload sees `workers` as a setting of its own (it needs a restart)', () => {
    assert.deepEqual(diffConfig(config(), config({ workers: 2 })).map((c) => c.setting), ['workers']);
  });
});

describe('workers: a worker that keeps dying young is replaced ever more slowly', () => {
  it('no wait after a worker that ran a while, then 0.5 s doubling up to 30 s', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 20].map(restartDelayMs), [0, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  });
});

describe('workers: the admin endpoint adds the workers\' answers up', () => {
  it('JSON: counts add up, lists are joined with each row\'s worker, durations take the largest, settings show once', () => {
    const merged = mergeJson([
      { clients: 2, draining: false, pools: [{ total: 1 }], pause: { paused: false, timeoutMs: 300, oldestWaitMs: 5 }, mirror: { fraction: 0.5, sent: 3 } },
      { clients: 3, draining: true, pools: [{ total: 2 }], pause: { paused: false, timeoutMs: 300, oldestWaitMs: 9 }, mirror: { fraction: 0.5, sent: 4 } },
    ], [0, 1]);
    assert.deepEqual(merged, {
      clients: 5, draining: true, pools: [{ worker: 0, total: 1 }, { worker: 1, total: 2 }],
      pause: { paused: false, timeoutMs: 300, oldestWaitMs: 9 }, mirror: { fraction: 0.5, sent: 7 },
    });
    assert.deepEqual(mergeJson([{ state: 'a' }, { state: 'b' }], [0, 1]), { state: [{ worker: 0, value: 'a' }, { worker: 1, value: 'b' }] });
  });

  it('Prometheus: samples of one series add up, one HELP/TYPE per family, target_info once', () => {
    const a = '# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{service_name="mongoplex"} 1\n# HELP mongoplex_x_total x\n# TYPE mongoplex_x_total counter\nmongoplex_x_total{r="a"} 2\nmongoplex_x_total{r="b"} 1\n# HELP mongoplex_h h\n# TYPE mongoplex_h histogram\nmongoplex_h_bucket{le="+Inf"} 4\nmongoplex_h_sum 0.5\n';
    const b = '# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{service_name="mongoplex"} 1\n# HELP mongoplex_x_total x\n# TYPE mongoplex_x_total counter\nmongoplex_x_total{r="a"} 3\n# HELP mongoplex_h h\n# TYPE mongoplex_h histogram\nmongoplex_h_bucket{le="+Inf"} 6\nmongoplex_h_sum 0.25\n';
    assert.equal(mergePrometheus([a, b]), [
      '# HELP target_info Target metadata', '# TYPE target_info gauge', 'target_info{service_name="mongoplex"} 1',
      '# HELP mongoplex_x_total x', '# TYPE mongoplex_x_total counter', 'mongoplex_x_total{r="a"} 5', 'mongoplex_x_total{r="b"} 1',
      '# HELP mongoplex_h h', '# TYPE mongoplex_h histogram', 'mongoplex_h_bucket{le="+Inf"} 10', 'mongoplex_h_sum 0.75', '',
    ].join('\n'));
  });

  it('command statistics: one row per command, the mean weighted by count, sorted as asked', () => {
    const row = (command: string, count: number, meanMs: number, maxMs: number, bytesIn: number): Record<string, unknown> => ({ db: 'd', collection: 'c', command, count, errors: 1, meanMs, maxMs, documents: 2, bytesIn, bytesOut: 10 });
    const merged = mergeCommandRows([{ worker: 0, ...row('find', 1, 4, 4, 100) }, { worker: 1, ...row('find', 3, 8, 20, 100) }, { worker: 1, ...row('insert', 2, 1, 1, 5000) }] as never);
    assert.deepEqual(merged, [
      { db: 'd', collection: 'c', command: 'find', count: 4, errors: 2, meanMs: 7, maxMs: 20, documents: 4, bytesIn: 200, bytesOut: 20 },
      { db: 'd', collection: 'c', command: 'insert', count: 2, errors: 1, meanMs: 1, maxMs: 1, documents: 2, bytesIn: 5000, bytesOut: 10 },
    ]);
    assert.deepEqual(mergeCommandRows(merged, 'bytes').map((r) => (r as { command: string }).command), ['insert', 'find']);
  });

  it('history: samples of the same second add up; latency percentiles take the largest worker\'s', () => {
    const s = (t: number, clients: number, p99Ms: number): Record<string, number> => ({ t, clients, upstream: 1, inUse: 0, maxPool: 2, waiting: 0, oldestWaitMs: 0, commandsPerSecond: 10, p50Ms: 1, p99Ms });
    const merged = mergeHistory([[s(1000, 2, 5), s(2000, 1, 1)], [s(1400, 3, 9)]]);
    assert.deepEqual(merged.map((m) => m && typeof m === 'object' && !Array.isArray(m) ? [m.t, m.clients, m.maxPool, m.commandsPerSecond, m.p99Ms] : m), [[1000, 5, 4, 20, 9], [2000, 1, 2, 10, 1]]);
  });
});
