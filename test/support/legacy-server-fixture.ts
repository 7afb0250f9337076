import { BSON, type Document } from 'bson';
import { HEADER_SIZE, newRequestId, OpCode, type WireMessage } from '../../filter/wire/header';
import { encodeOpMsg, MsgFlag, parseOpMsg } from '../../filter/wire/opmsg';
import { encodeOpReply, parseOpQuery } from '../../filter/wire/legacy';
import { MAX_BSON_OBJECT_SIZE, MAX_MESSAGE_SIZE_BYTES, MAX_WRITE_BATCH_SIZE } from '../../filter/wire/limits';
import { WireEndpoint, type Storage, type WireConnection } from './wire-endpoint';

/**
 * A MongoDB 4.2-behaving server for tests (maxWireVersion 8), over real FerretDB storage:
 * it accepts legacy OP_INSERT and OP_MSG writes with moreToCome, and keeps getLastError as
 * per-connection state, as servers ≤ 5.0 do. FerretDB itself has no getLastError.
 */
export class LegacyServerFixture {
  private readonly endpoint: WireEndpoint;

  constructor(storage: Storage) {
    this.endpoint = new WireEndpoint(storage, (conn, connectionId) => legacyConnection(conn, connectionId));
  }

  get address(): string {
    return this.endpoint.address;
  }

  get port(): number {
    return this.endpoint.port;
  }

  /** Connections accepted so far (the proxy's pooled ones). */
  get connections(): number {
    return this.endpoint.accepted;
  }

  start(): Promise<void> {
    return this.endpoint.listen();
  }

  stop(): Promise<void> {
    return this.endpoint.close();
  }
}

/** One connection's server side: its getLastError state lives and dies with it. */
function legacyConnection(conn: WireConnection, connectionId: number): (m: WireMessage) => Promise<void> {
  let lastError: Document = { err: null, n: 0 };
  const write = async (cmd: Document): Promise<Document> => {
    const r = await conn.storageCommand(cmd);
    const we = (r.writeErrors as Document[] | undefined)?.[0];
    lastError = we ? { err: we.errmsg, code: we.code, n: 0 } : { err: null, n: r.n ?? 0 };
    return r;
  };
  const gle = (): Document => ({ ...lastError, connectionId, ok: 1 });
  const hello = (): Document => ({
    ismaster: true, maxBsonObjectSize: MAX_BSON_OBJECT_SIZE, maxMessageSizeBytes: MAX_MESSAGE_SIZE_BYTES, maxWriteBatchSize: MAX_WRITE_BATCH_SIZE,
    localTime: new Date(), logicalSessionTimeoutMinutes: 30, connectionId, minWireVersion: 0, maxWireVersion: 8, readOnly: false, ok: 1,
  });
  return async (m) => {
    if (m.header.opCode === OpCode.QUERY) {
      const q = parseOpQuery(m);
      const doc = BSON.deserialize(q.query);
      const name = Object.keys(doc)[0]!.toLowerCase();
      const db = q.fullCollectionName.split('.')[0]!;
      const reply = name === 'ismaster' || name === 'hello' ? hello() : name === 'getlasterror' ? gle() : await conn.storageCommand({ ...doc, $db: db });
      conn.socket.write(encodeOpReply(newRequestId(), m.header.requestId, [BSON.serialize(reply)]));
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
    let reply: Document;
    if (name === 'ismaster' || name === 'hello') reply = hello();
    else if (name === 'getlasterror') reply = gle();
    else if (name === 'reseterror') {
      lastError = { err: null, n: 0 };
      reply = { ok: 1 };
    } else if (['insert', 'update', 'delete'].includes(name)) {
      delete doc.writeConcern;
      reply = await write(doc);
    } else reply = await conn.storageCommand(doc);
    if (!(msg.flagBits & MsgFlag.moreToCome)) conn.socket.write(encodeOpMsg(newRequestId(), m.header.requestId, BSON.serialize(reply)));
  };
}
