import { ClientInfo } from '../filter/session/client-info';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BSON } from 'bson';
import { createLogger } from '../filter/log';
import { readCapture, type CaptureRecord } from '../filter/traffic/format';
import { Recorder, type CaptureSettings } from '../filter/traffic/recorder';
import type { ForwardedCommand } from '../filter/traffic/taps';
import { readHeader } from '../filter/wire/header';
import { encodeOpMsg } from '../filter/wire/opmsg';
import { readCommand, readReply } from '../filter/wire/peek';

const log = createLogger('silent');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function settings(overrides: Partial<CaptureSettings> = {}): CaptureSettings {
  const dir = mkdtempSync(path.join(tmpdir(), 'mongoplex-recorder-'));
  dirs.push(dir);
  return {
    dir, sampleRate: 1, namespaces: [], redact: false, compression: 'zstd', maxFileBytes: 64 * 1024,
    maxTotalBytes: 1024 * 1024 * 1024, maxDurationMs: 0, queueBytes: 16 * 1024 * 1024, ...overrides,
  };
}

/** A forwarded insert of `bytes` of payload from client connection `conn`, answered ok. */
function insert(conn: number, seq: number, bytes = 100, db = 'app', coll = 'c'): ForwardedCommand {
  const body = Buffer.from(BSON.serialize({ insert: coll, documents: [{ _id: seq, pad: 'p'.repeat(bytes) }], $db: db }));
  const msg = encodeOpMsg(seq, 0, body);
  return {
    client: new ClientInfo(conn, '127.0.0.1:50000'), startedAt: performance.now(), request: { header: readHeader(msg), bytes: msg }, forwarded: msg,
    cmd: readCommand(body), server: '127.0.0.1:27017', replyBytes: 60,
    replyBody: Buffer.from(BSON.serialize({ n: 1, ok: 1 })), replyInfo: readReply(Buffer.from(BSON.serialize({ n: 1, ok: 1 }))), error: undefined,
    durationMs: 0.5, failed: false, errorCode: undefined,
  };
}

async function recordsIn(dir: string): Promise<{ files: string[]; records: CaptureRecord[]; fileNumbers: number[] }> {
  const files = readdirSync(dir).sort().map((f) => path.join(dir, f));
  const records: CaptureRecord[] = [];
  const fileNumbers: number[] = [];
  for (const f of files) {
    for await (const item of readCapture(f)) {
      if ('body' in item) records.push(item);
      else fileNumbers.push(item.file);
    }
  }
  return { files, records, fileNumbers };
}

describe('capture recorder: bounded, rotating, never in the client\'s way', () => {
  it('a burst larger than the queue: offers return at once, the overflow is dropped and counted, the rest is written', async () => {
    const s = settings({ queueBytes: 64 * 1024 });
    const recorder = new Recorder(s, log);
    recorder.start();
    // Nothing is written while this loop runs (the writer runs after it yields): the queue fills.
    for (let i = 0; i < 1000; i++) recorder.forwarded(insert(1, i, 1000));
    const during = recorder.status();
    assert.ok(during.queuedBytes <= 64 * 1024, `queue within its bound (${during.queuedBytes})`);
    assert.ok((during.dropped.queue_full ?? 0) > 900, `overflow dropped: ${JSON.stringify(during.dropped)}`);
    const done = await recorder.stop();
    assert.equal(done.recorded + done.dropped.queue_full!, 1000, 'every offer either recorded or counted as dropped');
    const { records } = await recordsIn(s.dir!);
    assert.equal(records.length, done.recorded);
    assert.deepEqual(records.map((r) => BSON.deserialize(r.body).documents[0]._id), Array.from({ length: done.recorded }, (_, i) => i), 'recorded in order');
  });

  it('rotates files at maxFileBytes (each with its own header) and stops itself at maxTotalBytes', async () => {
    const s = settings({ maxFileBytes: 64 * 1024, maxTotalBytes: 200 * 1024, compression: 'none' });
    const recorder = new Recorder(s, log);
    recorder.start();
    for (let i = 0; i < 40; i++) recorder.forwarded(insert(1, i, 8 * 1024)); // one batch of 320 KiB
    // Up to 10 s: with the whole suite running in parallel the writes can take well over a second.
    for (let i = 0; i < 1000 && recorder.active; i++) await new Promise((r) => setTimeout(r, 10));
    const status = recorder.status();
    assert.equal(status.active, false);
    assert.match(status.stoppedBecause ?? '', /capture\.maxTotalBytes/);
    const { files, fileNumbers, records } = await recordsIn(s.dir!);
    assert.ok(files.length >= 3, `rotated into ${files.length} files`);
    assert.deepEqual(fileNumbers, files.map((_, i) => i + 1));
    assert.equal(records.length, status.recorded);
    assert.equal(status.recorded + (status.dropped.max_total_bytes ?? 0), 40, `the rest counted: ${JSON.stringify(status.dropped)}`);
    for (const f of files) assert.ok(statSync(f).size <= 64 * 1024 + 200, `${f}: ${statSync(f).size} bytes`);
  });

  it('stops itself at maxDurationMs', async () => {
    const recorder = new Recorder(settings({ maxDurationMs: 100 }), log);
    recorder.start();
    recorder.forwarded(insert(1, 1));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(recorder.active, false);
    assert.match(recorder.status().stoppedBecause ?? '', /capture\.maxDurationMs/);
    assert.equal(recorder.status().recorded, 1);
  });

  it('samples whole client connections and filters by namespace', async () => {
    const s = settings({ sampleRate: 0.5, namespaces: ['app.keep', 'other.*'] });
    const recorder = new Recorder(s, log);
    recorder.start();
    for (let conn = 1; conn <= 200; conn++) {
      for (let i = 0; i < 3; i++) {
        recorder.forwarded(insert(conn, i, 10, 'app', 'keep'));
        recorder.forwarded(insert(conn, i, 10, 'app', 'skip'));
        recorder.forwarded(insert(conn, i, 10, 'other', 'any'));
      }
    }
    await recorder.stop();
    const { records } = await recordsIn(s.dir!);
    const conns = new Map<number, number>();
    for (const r of records) conns.set(r.conn, (conns.get(r.conn) ?? 0) + 1);
    assert.ok(conns.size > 60 && conns.size < 140, `about half the connections (${conns.size} of 200)`);
    for (const [conn, n] of conns) assert.equal(n, 6, `connection ${conn}: all of its matching commands`);
    assert.deepEqual(new Set(records.map((r) => `${r.db}.${r.coll}`)), new Set(['app.keep', 'other.any']));
  });

  it('refuses to start without a directory, or twice', () => {
    assert.throws(() => new Recorder({ ...settings(), dir: null }, log).start(), /capture\.dir is not set/);
    const r = new Recorder(settings(), log);
    r.start();
    assert.throws(() => r.start(), /already running/);
    return r.stop().then(() => undefined);
  });
});
