import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loadConfig } from '../filter/config';
import { LogLimiter, type Logger } from '../filter/log';
import { Proxy } from '../filter/proxy';
import { writeHeader } from '../filter/wire/header';
import { freePort } from '../scripts/ports';
import { MemoryTransport } from './support/memory-transport';

/** A pino logger whose lines are kept in memory. */
function memoryLogger(): { log: Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { out.push(...chunk.toString().split('\n').filter(Boolean)); done(); } });
  return { log: pino({ level: 'info' }, stream), lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('client-caused log lines are rate-limited per reason', () => {
  it('logs at most `burst` lines per reason per window, then says how many it left out', () => {
    const { log, lines } = memoryLogger();
    const limiter = new LogLimiter(3, 1000);
    let allowed = 0;
    for (let i = 0; i < 50; i++) if (limiter.allow(log, 'bad', 0)) allowed++;
    assert.equal(allowed, 3);
    assert.equal(limiter.allow(log, 'other', 0), true, 'another reason has its own budget');
    assert.equal(limiter.allow(log, 'bad', 1000), true, 'a new window');
    const summary = lines().find((l) => l.suppressed !== undefined);
    assert.deepEqual([summary?.reason, summary?.suppressed], ['bad', 47]);
  });

  it('200 malformed messages from one client produce at most 10 log lines, and 200 error replies', async () => {
    const { log, lines } = memoryLogger();
    const proxy = new Proxy(loadConfig({ env: {}, overrides: { upstream: { servers: [`127.0.0.1:${await freePort()}`] }, log: { level: 'info' } } }), log);
    try {
      const transport = new MemoryTransport();
      const session = proxy.openSession(transport, undefined, 'tcp')!;
      // OP_MSG with a body whose BSON length is wrong: framed fine, refused as InvalidBSON.
      const bad = Buffer.alloc(16 + 4 + 1 + 5);
      writeHeader(bad, { messageLength: bad.length, requestId: 1, responseTo: 0, opCode: 2013 });
      bad.writeInt32LE(999, 21);
      for (let i = 0; i < 200; i++) session.receive(Buffer.from(bad));
      await transport.replyCount(200);
      const refused = lines().filter((l) => l.msg === 'refused malformed client message');
      assert.ok(refused.length <= 10, `${refused.length} lines logged`);
      assert.ok(refused.length >= 1);
    } finally {
      await proxy.stop();
    }
  });
});
