import * as net from 'node:net';
import { parseArgs } from 'node:util';
import { BSON } from 'bson';
import { loadConfig } from '../filter/config';
import { createLogger } from '../filter/log';
import { startServer } from '../filter/server';
import { encodeOpMsg } from '../filter/wire/opmsg';
import { DEFAULT_CLIENT_USER_TIMEOUT_MS } from '../filter/envoy/bootstrap';
import { startEnvoyFront } from '../scripts/envoy';
import { FerretDB } from '../scripts/ferretdb';
import { freePort } from '../scripts/ports';
import { LoadClient } from './load-client';
import { rssMb } from './processes';

/**
 * `npm run bench -- unread [--requests 1000] [--seconds 10] [--user-timeout MS] [--trickle-ms MS]`:
 * one client pipelines finds that each return a 1 MB document and never reads a byte (with
 * `--trickle-ms`, it sends them one every MS instead of all at once: input keeps arriving, so
 * mongoplex's unread-reply bound, counted since the last input, never fires). Prints Envoy's and
 * mongoplex's memory for the ext_proc shape and the sidecar (tcp_proxy) shape, measured in the
 * same run, and when Envoy dropped the client connection and when the client noticed (null: not
 * by the end; an abort by TCP_USER_TIMEOUT sends the client nothing). With
 * ext_proc, replies are injected into the client connection and Envoy 1.40 buffers them without
 * bound (its network ext_proc filter ignores the connection's write watermarks) until the
 * client listener's TCP_USER_TIMEOUT (`--user-timeout`, default the generated configs' 30 s; 0:
 * off) aborts the connection, or mongoplex resets a client sent more than
 * client.maxUnreadReplyBytes since its last input; with tcp_proxy, Envoy's watermarks push
 * back on mongoplex's socket.
 */

export async function runUnreadReplies(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { requests: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '10' }, 'user-timeout': { type: 'string', default: String(DEFAULT_CLIENT_USER_TIMEOUT_MS) }, 'trickle-ms': { type: 'string', default: '0' } } });
  const trickleMs = Number(values['trickle-ms']);
  const userTimeout = Number(values['user-timeout']);
  const requests = Number(values.requests);
  const seconds = Number(values.seconds);
  const db = await FerretDB.start();
  const grpc = await freePort();
  const server = await startServer(loadConfig({ env: {}, overrides: {
    listen: { host: '127.0.0.1', port: 0, grpc: `127.0.0.1:${grpc}` },
    upstream: { servers: [db.address] },
    log: { level: 'silent' },
  } }), createLogger('silent'));
  const results: unknown[] = [];
  try {
    const seed = await LoadClient.connect(server.tcp!.port);
    await seed.command({ insert: 'big', documents: [{ _id: 1, pad: 'x'.repeat(1_000_000) }], $db: 'unread' });
    seed.destroy();
    for (const shape of ['ext_proc', 'sidecar'] as const) {
      const front = await startEnvoyFront({ clientUserTimeoutMs: userTimeout, ingress: shape === 'ext_proc' ? { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } : { kind: 'sidecar', filterTcp: { host: '127.0.0.1', port: server.tcp!.port } } });
      const pid = front.envoy.pid!;
      const before = rssMb(pid);
      const s = net.connect({ host: '127.0.0.1', port: front.port });
      await new Promise((r) => s.once('connect', r));
      s.pause(); // never reads
      const opened = Date.now();
      let closedAfterMs: number | null = null;
      s.on('error', () => undefined).once('close', () => (closedAfterMs = Date.now() - opened));
      const find = (i: number) => s.write(encodeOpMsg(i, 0, BSON.serialize({ find: 'big', filter: { _id: 1 }, $db: 'unread' })));
      let sent = 0;
      const trickle = trickleMs > 0 ? setInterval(() => (sent < requests && !s.destroyed ? find(++sent) : undefined), trickleMs) : undefined;
      if (!trickle) while (sent < requests) find(++sent);
      let peak = before;
      let mongoplexPeak = 0;
      // The kernel's abort says nothing to the client: Envoy's own count of the connection tells.
      const active = `listener.127.0.0.1_${front.port}.downstream_cx_active`;
      let droppedAfterMs: number | null = null;
      for (let t = 0; t < seconds * 2; t++) {
        await new Promise((r) => setTimeout(r, 500));
        if (droppedAfterMs === null && (await front.envoy.stat(active)) === 0) droppedAfterMs = Date.now() - opened;
        peak = Math.max(peak, rssMb(pid));
        mongoplexPeak = Math.max(mongoplexPeak, Math.round(process.memoryUsage().rss / 1048576));
      }
      clearInterval(trickle);
      results.push({ shape, envoyRssBeforeMB: before, envoyRssPeakMB: peak, envoyGrowthMB: peak - before, envoyRssEndMB: rssMb(pid), envoyDroppedConnectionAfterMs: droppedAfterMs, clientSawCloseAfterMs: closedAfterMs, mongoplexAndLoadGeneratorRssPeakMB: mongoplexPeak });
      s.destroy();
      await front.envoy.stop();
    }
  } finally {
    await server.stop();
    await db.stop();
  }
  console.log(JSON.stringify({ requests, replyBytes: 1_000_000, seconds, clientUserTimeoutMs: userTimeout, trickleMs, results }, null, 2));
}
