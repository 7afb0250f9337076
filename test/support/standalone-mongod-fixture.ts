import { BSON, ObjectId, type Document } from 'bson';
import { newRequestId, OpCode, type WireMessage } from '../../filter/wire/header';
import { encodeOpMsg, MsgFlag, parseOpMsg } from '../../filter/wire/opmsg';
import { encodeOpReply, parseOpQuery } from '../../filter/wire/legacy';
import { MAX_BSON_OBJECT_SIZE, MAX_MESSAGE_SIZE_BYTES, MAX_WRITE_BATCH_SIZE } from '../../filter/wire/limits';
import { WireEndpoint, type Storage, type WireConnection } from './wire-endpoint';

/**
 * A standalone mongod for tests, over real FerretDB storage: FerretDB accepts `txnNumber` on a
 * standalone, a mongod does not. This endpoint answers hello as a standalone mongod 7.0 does
 * and refuses what a standalone refuses — any command with `txnNumber` (a retryable write, a
 * transaction's statements), with IllegalOperation (20) — and relays everything else to
 * FerretDB untouched. `restartAs('replicaSetMember')` turns it into a one-member replica set's
 * primary (hello with `setName`, transaction numbers accepted), as a mongod restarted with
 * `--replSet` would be; its open connections are dropped as a restart drops them.
 */

export const STANDALONE_TXN_REFUSAL = { ok: 0, errmsg: 'Transaction numbers are only allowed on a replica set member or mongos', code: 20, codeName: 'IllegalOperation' } as const;

/** FerretDB keeps no transactions: a replica-set member strips their fields and answers commit/abort itself. */
const TXN_FIELDS = ['txnNumber', 'autocommit', 'startTransaction', 'recoveryToken', '$clusterTime'];

export interface ExecutedCommand {
  readonly command: string;
  readonly hasTxnNumber: boolean;
  readonly refused: boolean;
}

export class StandaloneMongodFixture {
  private readonly endpoint: WireEndpoint;
  private kind: 'standalone' | 'replicaSetMember' = 'standalone';
  private readonly electionId = new ObjectId();
  /** Every OP_MSG command but the handshake, in order. */
  readonly executed: ExecutedCommand[] = [];

  constructor(storage: Storage) {
    this.endpoint = new WireEndpoint(storage, (conn, connectionId) => (m) => this.handle(m, conn, connectionId));
  }

  get address(): string {
    return this.endpoint.address;
  }

  get uri(): string {
    return `mongodb://${this.address}/`;
  }

  /** Commands refused for carrying a transaction number. */
  get refusals(): number {
    return this.executed.filter((e) => e.refused).length;
  }

  start(): Promise<void> {
    return this.endpoint.listen();
  }

  stop(): Promise<void> {
    return this.endpoint.close();
  }

  /** The server comes back as another kind: existing connections are dropped, the port stays. */
  async restartAs(kind: 'standalone' | 'replicaSetMember'): Promise<void> {
    this.kind = kind;
    await this.endpoint.dropConnections();
  }

  private hello(spelling: string, connectionId: number): Document {
    const base: Document = {
      [spelling === 'hello' ? 'isWritablePrimary' : 'ismaster']: true,
      topologyVersion: { processId: this.electionId, counter: BSON.Long.fromNumber(0) },
      maxBsonObjectSize: MAX_BSON_OBJECT_SIZE, maxMessageSizeBytes: MAX_MESSAGE_SIZE_BYTES, maxWriteBatchSize: MAX_WRITE_BATCH_SIZE,
      localTime: new Date(), logicalSessionTimeoutMinutes: 30, connectionId, minWireVersion: 0, maxWireVersion: 21, readOnly: false,
    };
    if (this.kind === 'replicaSetMember') {
      Object.assign(base, {
        hosts: [this.address], setName: 'rs0', setVersion: 1, secondary: false, primary: this.address, me: this.address, electionId: this.electionId,
        lastWrite: { lastWriteDate: new Date(), opTime: { ts: new BSON.Timestamp({ t: Math.floor(Date.now() / 1000), i: 1 }), t: BSON.Long.fromNumber(1) } },
      });
    }
    return { ...base, ok: 1 };
  }

  private async handle(m: WireMessage, conn: WireConnection, connectionId: number): Promise<void> {
    if (m.header.opCode === OpCode.QUERY) {
      const q = parseOpQuery(m);
      const doc = BSON.deserialize(q.query);
      const command = (doc.$query ?? doc) as Document;
      const name = Object.keys(command)[0]!.toLowerCase();
      if (name !== 'ismaster' && name !== 'hello') throw new Error(`fixture: only the handshake on OP_QUERY, not ${name}`);
      conn.socket.write(encodeOpReply(newRequestId(), m.header.requestId, [BSON.serialize(this.hello(name, connectionId))]));
      return;
    }
    // A mongod would take OP_COMPRESSED; this fixture offers no compressor in hello, so none comes.
    if (m.header.opCode !== OpCode.MSG) throw new Error(`fixture: opcode ${m.header.opCode} not served`);
    const msg = parseOpMsg(m);
    const doc = BSON.deserialize(msg.body, { promoteLongs: false });
    const name = Object.keys(doc)[0]!;
    const lname = name.toLowerCase();
    const reply = (d: Document): void => {
      if (!(msg.flagBits & MsgFlag.moreToCome)) conn.socket.write(encodeOpMsg(newRequestId(), m.header.requestId, BSON.serialize(d)));
    };
    if (lname === 'hello' || lname === 'ismaster') return reply(this.hello(lname, connectionId));
    const hasTxnNumber = doc.txnNumber !== undefined;
    const refused = hasTxnNumber && this.kind === 'standalone';
    this.executed.push({ command: name, hasTxnNumber, refused });
    if (refused) return reply(STANDALONE_TXN_REFUSAL);
    if (this.kind === 'replicaSetMember' && (lname === 'committransaction' || lname === 'aborttransaction')) return reply({ ok: 1 });
    // FerretDB answers every message: what it is sent never asks otherwise.
    const flags = msg.flagBits & ~(MsgFlag.checksumPresent | MsgFlag.moreToCome | MsgFlag.exhaustAllowed);
    let out: WireMessage;
    if (this.kind === 'standalone' && flags === msg.flagBits) out = await conn.relay(m.bytes);
    else {
      const forward: Document = { ...doc };
      if (this.kind === 'replicaSetMember') for (const f of TXN_FIELDS) delete forward[f];
      // Under the client's request id, so FerretDB's reply answers it.
      out = await conn.relay(encodeOpMsg(m.header.requestId, 0, BSON.serialize(forward), flags, msg.sequences));
    }
    if (!(msg.flagBits & MsgFlag.moreToCome)) conn.socket.write(out.bytes);
  }
}
