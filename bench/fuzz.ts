import * as net from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { BSON, Long } from 'bson';
import { loadConfig } from '../filter/config';
import { createLogger } from '../filter/log';
import { startServer } from '../filter/server';
import { Metrics } from '../filter/telemetry/metrics';
import { compressMessage, decompressMessage } from '../filter/wire/compression';
import { FramingError, MessageFramer } from '../filter/wire/framer';
import { HEADER_SIZE, OpCode, writeHeader } from '../filter/wire/header';
import { encodeOpQuery, parseOpQuery, validateLegacyMessage } from '../filter/wire/legacy';
import { encodeOpMsg, MsgFlag, parseOpMsg } from '../filter/wire/opmsg';
import { readCommand } from '../filter/wire/peek';
import { ProtocolError } from '../filter/wire/errors';
import { FerretDB } from '../scripts/ferretdb';
import { startEnvoyFront } from '../scripts/envoy';
import { freePort } from '../scripts/ports';

/**
 * `npm run bench -- fuzz [--seconds N] [--seed N] [--no-envoy]`: mutated and generated wire
 * messages, first through the decoders in-process, then against a live mongoplex (TCP ingress
 * and, unless --no-envoy, Envoy ext_proc) in front of FerretDB. Every case is sent on a fresh
 * connection that is then half-closed: the proxy must answer or close within 2 s (else a hang),
 * never throw out of its handlers (a crash), and keep serving a well-behaved client throughout
 * (a ping every 200 cases, retried once after a network error, as a driver retries a read).
 * Prints one JSON object; exits 1 when anything went wrong. Crashing inputs are saved in
 * .cache/fuzz/.
 */

const ROOT = path.resolve(__dirname, '..', '..');

/** A small deterministic PRNG (mulberry32), so a seed reproduces a run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function legacy(opCode: number, body: Buffer): Buffer {
  const out = Buffer.concat([Buffer.alloc(HEADER_SIZE), body]);
  writeHeader(out, { messageLength: out.length, requestId: 7, responseTo: 0, opCode });
  return out;
}

/** Well-formed messages of every kind the proxy reads: the mutations start from these. */
async function seeds(): Promise<Buffer[]> {
  const doc = (d: object): Buffer => Buffer.from(BSON.serialize(d));
  const find = encodeOpMsg(1, 0, doc({ find: 'fz', filter: { a: { $gt: 1 } }, batchSize: 2, $db: 'fuzz' }));
  const insertSeq = encodeOpMsg(2, 0, doc({ insert: 'fz', $db: 'fuzz' }), 0, [{ identifier: 'documents', documents: [doc({ a: 1 }), doc({ a: 2 })] }]);
  return [
    encodeOpMsg(1, 0, doc({ ping: 1, $db: 'admin' })),
    find,
    insertSeq,
    encodeOpMsg(3, 0, doc({ insert: 'fz', documents: [{ a: 1, s: 'x'.repeat(50) }], writeConcern: { w: 0 }, $db: 'fuzz' }), MsgFlag.moreToCome),
    encodeOpMsg(4, 0, doc({ getMore: Long.fromNumber(12345), collection: 'fz', $db: 'fuzz' })),
    encodeOpMsg(5, 0, doc({ hello: 1, compression: ['snappy', 'zlib', 'zstd'], $db: 'admin' })),
    encodeOpQuery(6, 'admin.$cmd', doc({ isMaster: 1 })),
    await compressMessage(find, 'snappy'),
    await compressMessage(find, 'zlib'),
    await compressMessage(find, 'zstd'),
    legacy(OpCode.INSERT, Buffer.concat([Buffer.alloc(4), Buffer.from('fuzz.fz\0'), doc({ a: 1 })])),
    legacy(OpCode.UPDATE, Buffer.concat([Buffer.alloc(4), Buffer.from('fuzz.fz\0'), Buffer.alloc(4), doc({}), doc({ $set: { a: 2 } })])),
    legacy(OpCode.DELETE, Buffer.concat([Buffer.alloc(4), Buffer.from('fuzz.fz\0'), Buffer.alloc(4), doc({ a: 3 })])),
    legacy(OpCode.GET_MORE, Buffer.concat([Buffer.alloc(4), Buffer.from('fuzz.fz\0'), Buffer.alloc(12)])),
    legacy(OpCode.KILL_CURSORS, Buffer.concat([Buffer.alloc(4), Buffer.from([1, 0, 0, 0]), Buffer.alloc(8)])),
  ];
}

/** One mutation (or a few) of a seed: bit flips, overwrites, truncation, growth, length and opcode tampering, splices. */
function mutate(seed: Buffer, r: () => number): Buffer {
  let b = Buffer.from(seed);
  const at = (): number => Math.floor(r() * b.length);
  const rounds = 1 + Math.floor(r() * 3);
  for (let i = 0; i < rounds; i++) {
    switch (Math.floor(r() * 8)) {
      case 0: { const p = at(); b[p] = b[p]! ^ (1 << Math.floor(r() * 8)); break; }
      case 1: { const p = at(); b[p] = Math.floor(r() * 256); break; }
      case 2: b = b.subarray(0, Math.max(1, at())); break;
      case 3: b = Buffer.concat([b, Buffer.from(Array.from({ length: 1 + Math.floor(r() * 64) }, () => Math.floor(r() * 256)))]); break;
      case 4: if (b.length >= 4) b.writeInt32LE(Math.floor(r() * b.length * 2) - 8, 0); break;
      case 5: if (b.length >= 16) b.writeInt32LE([1, 2001, 2002, 2004, 2005, 2006, 2007, 2012, 2013, Math.floor(r() * 5000)][Math.floor(r() * 10)]!, 12); break;
      case 6: { const p = at(); const q = at(); b = Buffer.concat([b.subarray(0, p), b.subarray(q)]); break; }
      default: { const p = Math.min(b.length - 4, 16 + Math.floor(r() * 40)); if (p >= 0) b.writeInt32LE(Math.floor(r() * 4096) - 16, p); }
    }
  }
  // Keep most cases framed (length = actual size) so they reach the decoders behind the framer.
  if (r() < 0.7 && b.length >= 16) b.writeInt32LE(b.length, 0);
  return b;
}

interface Findings {
  cases: number;
  crashes: number;
  /** Inputs kept for reproduction (crashes and hangs), at most 20. */
  crashFiles: string[];
}

/** Keeps a failing input (and what went wrong) under .cache/fuzz/; the caller counts the finding. */
function saveInput(kind: string, input: Buffer, err: unknown, f: Findings): void {
  if (f.crashFiles.length >= 20) return;
  const dir = path.join(ROOT, '.cache', 'fuzz');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${kind}-${Date.now()}-${f.crashFiles.length + 1}.bin`);
  writeFileSync(file, input);
  writeFileSync(`${file}.txt`, String((err as Error)?.stack ?? err));
  f.crashFiles.push(path.relative(ROOT, file));
}

/** The decoders alone: anything thrown other than a framing or protocol error is a crash. */
async function fuzzDecoders(all: Buffer[], r: () => number, until: number): Promise<Findings> {
  const f: Findings = { cases: 0, crashes: 0, crashFiles: [] };
  while (Date.now() < until) {
    const input = mutate(all[Math.floor(r() * all.length)]!, r);
    f.cases++;
    try {
      for (const m of new MessageFramer(48_000_000, { refuseTls: true }).push(input)) {
        let msg = m;
        if (msg.header.opCode === OpCode.COMPRESSED) msg = (await decompressMessage(msg, 48_000_000)).message;
        if (msg.header.opCode === OpCode.MSG) readCommand(parseOpMsg(msg).body);
        else if (msg.header.opCode === OpCode.QUERY) parseOpQuery(msg);
        else validateLegacyMessage(msg);
      }
    } catch (err) {
      if (!(err instanceof FramingError) && !(err instanceof ProtocolError)) {
        f.crashes++;
        saveInput('decoder-crash', input, err, f);
      }
    }
  }
  return f;
}

/** Sends one case on a fresh connection, half-closes, and waits for the proxy to close it. */
function sendCase(port: number, input: Buffer): Promise<'closed' | 'hang'> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.write(input);
      s.end();
    });
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    const timer = setTimeout(() => {
      s.destroy();
      resolve('hang');
    }, 2000);
    s.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
}

/** A well-behaved client's ping: undefined when answered ok, else what went wrong. */
async function unhealthy(port: number): Promise<string | undefined> {
  const ping = encodeOpMsg(99, 0, Buffer.from(BSON.serialize({ ping: 1, $db: 'admin' })));
  return new Promise((resolve) => {
    const framer = new MessageFramer(48_000_000);
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(ping));
    const timer = setTimeout(() => {
      s.destroy();
      resolve('no reply within 2 s');
    }, 2000);
    s.on('data', (c: Buffer) => {
      for (const m of framer.push(c)) {
        clearTimeout(timer);
        s.destroy();
        const reply = BSON.deserialize(parseOpMsg(m).body);
        resolve(reply.ok === 1 ? undefined : `error reply: ${String(reply.errmsg)}`);
      }
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve('closed without a reply');
    });
    s.on('error', (e) => resolve(`socket error: ${e.message}`));
  });
}

interface LiveFindings extends Findings {
  hangs: number;
  unhealthy: number;
  /** Why health checks failed (after their retry), by reason. */
  unhealthyReasons: Record<string, number>;
  /** Health checks whose first attempt failed and whose retry succeeded. */
  retriedHealthChecks: number;
  internalErrors: number;
  /** Pooled connections the server closed or the proxy discarded during the run, by reason. */
  upstreamClosed: Record<string, number>;
}

async function fuzzLive(port: number, all: Buffer[], r: () => number, until: number, workers: number): Promise<LiveFindings> {
  const f: LiveFindings = { cases: 0, crashes: 0, crashFiles: [], hangs: 0, unhealthy: 0, unhealthyReasons: {}, retriedHealthChecks: 0, internalErrors: 0, upstreamClosed: {} };
  const closedBefore = Metrics.upstreamConnectionsClosed.snapshot();
  // A well-behaved client is a driver: it retries a read once after a network error (a pooled
  // connection the server closed a moment before, e.g. after a fuzz case it refused). Only a
  // failed retry is a finding; first-attempt failures are reported as retried.
  const check = async (): Promise<void> => {
    const why = await unhealthy(port);
    if (why === undefined) return;
    f.retriedHealthChecks++;
    const again = await unhealthy(port);
    if (again === undefined) return;
    f.unhealthy++;
    f.unhealthyReasons[again] = (f.unhealthyReasons[again] ?? 0) + 1;
  };
  const internalBefore = Metrics.clientConnectionsClosed.value({ reason: 'internal_error' });
  const work = async (): Promise<void> => {
    while (Date.now() < until) {
      const input = mutate(all[Math.floor(r() * all.length)]!, r);
      f.cases++;
      if ((await sendCase(port, input)) === 'hang') {
        f.hangs++;
        saveInput('hang', input, new Error('no close within 2 s of half-close'), f);
      }
      if (f.cases % 200 === 0) await check();
    }
  };
  await Promise.all(Array.from({ length: workers }, work));
  await check();
  f.internalErrors = Metrics.clientConnectionsClosed.value({ reason: 'internal_error' }) - internalBefore;
  for (const [k, v] of Object.entries(Metrics.upstreamConnectionsClosed.snapshot())) {
    const n = v - (closedBefore[k] ?? 0);
    const reason = /(?:^|,)reason=([^,]*)/.exec(k)?.[1] ?? k;
    if (n > 0) f.upstreamClosed[reason] = (f.upstreamClosed[reason] ?? 0) + n;
  }
  return f;
}

export async function runFuzz(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { seconds: { type: 'string', default: '30' }, seed: { type: 'string' }, 'no-envoy': { type: 'boolean', default: false }, workers: { type: 'string', default: '8' } } });
  const seconds = Number(values.seconds);
  const seed = values.seed === undefined ? Date.now() % 1_000_000 : Number(values.seed);
  const r = rng(seed);
  const all = await seeds();
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  const crashesInProcess: unknown[] = [];
  const onCrash = (err: unknown): void => void crashesInProcess.push(err);
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  const phases = values['no-envoy'] ? 2 : 3;
  const slice = (seconds * 1000) / phases;

  let started = Date.now();
  const decoders = await fuzzDecoders(all, r, started + slice);
  const decoderSeconds = (Date.now() - started) / 1000;

  const db = await FerretDB.start();
  const grpc = await freePort();
  const server = await startServer(loadConfig({ env: {}, overrides: {
    listen: { host: '127.0.0.1', port: 0, grpc: `127.0.0.1:${grpc}` },
    upstream: { servers: [db.address], maxPoolSize: 8 },
    client: { readTimeoutMs: 1000 },
    log: { level: 'silent' },
  } }), createLogger('silent'));
  const envoy = values['no-envoy'] ? undefined : await startEnvoyFront({ ingress: { kind: 'ext_proc', filterGrpc: { host: '127.0.0.1', port: grpc } } });
  const workers = Number(values.workers);
  try {
    started = Date.now();
    const tcp = await fuzzLive(server.tcp!.port, all, r, started + slice, workers);
    const tcpSeconds = (Date.now() - started) / 1000;
    started = Date.now();
    const viaEnvoy = envoy ? await fuzzLive(envoy.port, all, r, started + slice, workers) : undefined;
    const envoySeconds = (Date.now() - started) / 1000;
    clearInterval(sampler);
    const rate = (n: number, s: number): number => Math.round(n / Math.max(s, 0.001));
    const report = {
      seed,
      seconds,
      decoders: { cases: decoders.cases, casesPerSecond: rate(decoders.cases, decoderSeconds), crashes: decoders.crashes },
      tcp: { cases: tcp.cases, casesPerSecond: rate(tcp.cases, tcpSeconds), hangs: tcp.hangs, internalErrors: tcp.internalErrors, healthChecksFailed: tcp.unhealthy, healthChecksRetried: tcp.retriedHealthChecks, upstreamConnectionsClosed: tcp.upstreamClosed, ...(tcp.unhealthy ? { healthCheckFailures: tcp.unhealthyReasons } : {}) },
      ...(viaEnvoy ? { envoyExtProc: { cases: viaEnvoy.cases, casesPerSecond: rate(viaEnvoy.cases, envoySeconds), hangs: viaEnvoy.hangs, internalErrors: viaEnvoy.internalErrors, healthChecksFailed: viaEnvoy.unhealthy, healthChecksRetried: viaEnvoy.retriedHealthChecks, upstreamConnectionsClosed: viaEnvoy.upstreamClosed, ...(viaEnvoy.unhealthy ? { healthCheckFailures: viaEnvoy.unhealthyReasons } : {}) } } : {}),
      uncaught: crashesInProcess.length,
      peakRssMB: Math.round(peakRss / 1e5) / 10,
      crashFiles: [...decoders.crashFiles, ...tcp.crashFiles, ...(viaEnvoy?.crashFiles ?? [])],
    };
    console.log(JSON.stringify(report, null, 2));
    const bad = decoders.crashes + tcp.hangs + tcp.internalErrors + tcp.unhealthy + (viaEnvoy ? viaEnvoy.hangs + viaEnvoy.internalErrors + viaEnvoy.unhealthy : 0) + crashesInProcess.length;
    process.exitCode = bad > 0 ? 1 : 0;
  } finally {
    clearInterval(sampler);
    await envoy?.envoy.stop();
    await server.stop();
    await db.stop();
  }
}
