import * as net from 'node:net';
import { BSON, type Document } from 'bson';
import { MessageFramer } from '../../filter/wire/framer';
import { HEADER_SIZE, newRequestId, OpCode, type WireMessage } from '../../filter/wire/header';
import { encodeOpMsg, parseOpMsg } from '../../filter/wire/opmsg';
import { encodeOpReply, parseOpQuery } from '../../filter/wire/legacy';
import type { FerretDB } from '../../scripts/ferretdb';

/**
 * A MongoDB 4.2-behaving server for tests (maxWireVersion 8), over real FerretDB storage:
 * it accepts legacy OP_INSERT and OP_MSG writes with moreToCome, and keeps getLastError as
 * per-connection state, as servers ≤ 5.0 do. FerretDB itself has no getLastError.
 */
export class LegacyServerFixture {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  connections = 0;

  constructor(private readonly storage: FerretDB) {
    this.server = net.createServer((s) => this.accept(s));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(socket: net.Socket): void {
    const connectionId = ++this.connections;
    this.sockets.add(socket);
    let lastError: Document = { err: null, n: 0 };
    const framer = new MessageFramer(64 * 1024 * 1024);
    const backend = net.connect({ host: this.storage.host, port: this.storage.port });
    const backendFramer = new MessageFramer(64 * 1024 * 1024);
    const waiting: Array<(m: WireMessage) => void> = [];
    backend.on('data', (c: Buffer) => {
      for (const m of backendFramer.push(c)) waiting.shift()?.(m);
    });
    const run = (cmd: Document): Promise<Document> => new Promise((resolve) => {
      waiting.push((m) => resolve(BSON.deserialize(parseOpMsg(m).body)));
      backend.write(encodeOpMsg(newRequestId(), 0, BSON.serialize(cmd)));
    });
    const write = async (cmd: Document): Promise<Document> => {
      const r = await run(cmd);
      const we = (r.writeErrors as Document[] | undefined)?.[0];
      lastError = we ? { err: we.errmsg, code: we.code, n: 0 } : { err: null, n: r.n ?? 0 };
      return r;
    };
    const gle = (): Document => ({ ...lastError, connectionId, ok: 1 });
    const hello = (): Document => ({ ismaster: true, maxBsonObjectSize: 16777216, maxMessageSizeBytes: 48000000, maxWriteBatchSize: 100000, localTime: new Date(), logicalSessionTimeoutMinutes: 30, connectionId, minWireVersion: 0, maxWireVersion: 8, readOnly: false, ok: 1 });
    const handle = async (m: WireMessage): Promise<void> => {
      if (m.header.opCode === OpCode.QUERY) {
        const q = parseOpQuery(m);
        const doc = BSON.deserialize(q.query);
        const name = Object.keys(doc)[0]!.toLowerCase();
        const db = q.fullCollectionName.split('.')[0]!;
        const reply = name === 'ismaster' || name === 'hello' ? hello() : name === 'getlasterror' ? gle() : await run({ ...doc, $db: db });
        socket.write(encodeOpReply(newRequestId(), m.header.requestId, [BSON.serialize(reply)]));
        return;
      }
      if (m.header.opCode === OpCode.INSERT) {
        // OP_INSERT: int32 flags, cstring ns, documents; never answered.
        const b = m.bytes;
        const nul = b.indexOf(0, HEADER_SIZE + 4);
        const [db, ...coll] = b.toString('utf8', HEADER_SIZE + 4, nul).split('.');
        const docs: Document[] = [];
        for (let off = nul + 1; off < b.length; off += b.readInt32LE(off)) docs.push(BSON.deserialize(b.subarray(off, off + b.readInt32LE(off))));
        await write({ insert: coll.join('.'), documents: docs, $db: db });
        return;
      }
      if (m.header.opCode !== OpCode.MSG) return;
      const msg = parseOpMsg(m);
      const doc = BSON.deserialize(msg.body);
      for (const seq of msg.sequences) doc[seq.identifier] = seq.documents.map((d) => BSON.deserialize(d));
      const name = Object.keys(doc)[0]!.toLowerCase();
      const moreToCome = (msg.flagBits & 2) !== 0;
      let reply: Document;
      if (name === 'ismaster' || name === 'hello') reply = hello();
      else if (name === 'getlasterror') reply = gle();
      else if (name === 'reseterror') {
        lastError = { err: null, n: 0 };
        reply = { ok: 1 };
      } else if (['insert', 'update', 'delete'].includes(name)) {
        delete doc.writeConcern;
        reply = await write(doc);
      } else reply = await run(doc);
      if (!moreToCome) socket.write(encodeOpMsg(newRequestId(), m.header.requestId, BSON.serialize(reply)));
    };
    let chain = Promise.resolve();
    socket.on('data', (c: Buffer) => {
      for (const m of framer.push(c)) chain = chain.then(() => handle(m)).catch(() => void socket.destroy());
    });
    const end = (): void => {
      socket.destroy();
      backend.destroy();
      this.sockets.delete(socket);
    };
    socket.on('close', end).on('error', end);
    backend.on('close', end).on('error', end);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}
