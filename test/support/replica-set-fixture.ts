import { BSON, ObjectId, type Document } from 'bson';
import { newRequestId, OpCode, type WireMessage } from '../../filter/wire/header';
import { encodeOpMsg, parseOpMsg } from '../../filter/wire/opmsg';
import { encodeOpReply, parseOpQuery } from '../../filter/wire/legacy';
import { MAX_BSON_OBJECT_SIZE, MAX_MESSAGE_SIZE_BYTES, MAX_WRITE_BATCH_SIZE } from '../../filter/wire/limits';
import { compressMessage, decompressMessage, type CompressorName } from '../../filter/wire/compression';
import { WireEndpoint, type Storage, type WireConnection } from './wire-endpoint';

/**
 * A three-member replica set for tests, over real FerretDB storage (which has no replica
 * sets): each member is a TCP endpoint that answers hello/isMaster with a real-looking
 * replica-set topology, implements replSetGetStatus and replSetStepDown, refuses writes (and
 * primary reads) on secondaries as mongod does, and forwards everything else to the shared
 * FerretDB. It records which member ran each command, so tests can check routing.
 */

const WRITE_COMMANDS = new Set(['insert', 'update', 'delete', 'findandmodify', 'create', 'drop', 'createindexes', 'dropindexes', 'committransaction', 'aborttransaction']);
const TXN_FIELDS = ['txnNumber', 'autocommit', 'startTransaction', 'recoveryToken'];

export interface Executed {
  readonly member: number;
  readonly command: string;
  readonly db: string | undefined;
  readonly lsid: string | undefined;
  readonly txnNumber: number | undefined;
  readonly doc: Document;
}

class Member {
  readonly endpoint: WireEndpoint;
  readonly clientAddresses = new Set<string>();
  constructor(readonly index: number, readonly set: ReplicaSetFixture) {
    this.endpoint = new WireEndpoint(set.storage, (conn) => {
      this.clientAddresses.add(conn.remote);
      this.set.connectionsAccepted[this.index]!++;
      return (m) => this.handle(m, conn);
    });
  }

  get address(): string {
    return this.endpoint.address;
  }

  private async handle(raw: WireMessage, conn: WireConnection): Promise<void> {
    const socket = conn.socket;
    // Compression (as mongod): requests may come compressed; replies go back the same way.
    let m = raw;
    let compressor: CompressorName | 'noop' | undefined;
    if (raw.header.opCode === OpCode.COMPRESSED) {
      ({ message: m, compressor } = await decompressMessage(raw, MAX_MESSAGE_SIZE_BYTES));
      this.set.compressedRequests++;
    }
    const send = async (bytes: Buffer): Promise<void> => {
      socket.write(compressor ? await compressMessage(bytes, compressor) : bytes);
    };
    if (m.header.opCode === OpCode.QUERY) {
      const q = parseOpQuery(m);
      const doc = BSON.deserialize(q.query);
      const name = Object.keys(doc)[0]!.toLowerCase();
      const reply = name === 'ismaster' || name === 'hello' ? this.set.hello(this.index, name, doc.compression) : { ok: 0, errmsg: 'fixture: only the handshake on OP_QUERY', code: 352 };
      socket.write(encodeOpReply(newRequestId(), m.header.requestId, [BSON.serialize(reply)]));
      return;
    }
    if (m.header.opCode !== OpCode.MSG) {
      socket.destroy();
      return;
    }
    const msg = parseOpMsg(m);
    const doc = BSON.deserialize(msg.body, { promoteLongs: false });
    const name = Object.keys(doc)[0]!;
    const lname = name.toLowerCase();
    const lsid = doc.lsid?.id ? Buffer.from((doc.lsid.id as BSON.Binary).buffer).toString('hex') : undefined;
    const txnNumber = doc.txnNumber === undefined ? undefined : Number(doc.txnNumber);
    this.set.executed.push({ member: this.index, command: name, db: doc.$db as string | undefined, lsid, txnNumber, doc });
    const reply = (d: Document): void => {
      if (!(msg.flagBits & 2)) void send(encodeOpMsg(newRequestId(), m.header.requestId, BSON.serialize(d)));
    };
    if (lname === 'hello' || lname === 'ismaster') {
      if (compressor) this.set.compressedHandshakes++;
      return reply(this.set.hello(this.index, lname, doc.compression));
    }
    if (lname === 'replsetgetstatus') return reply(this.set.status(this.index));
    if (lname === 'replsetstepdown') {
      if (this.index !== this.set.primary) return reply({ ok: 0, errmsg: 'not primary so can\'t step down', code: 10107, codeName: 'NotWritablePrimary' });
      this.set.stepDown();
      return reply({ ok: 1 });
    }
    const isPrimary = this.set.flavor === 'mongos' || this.index === this.set.primary;
    if (!isPrimary && WRITE_COMMANDS.has(lname)) {
      return reply({ ok: 0, errmsg: 'not primary', code: 10107, codeName: 'NotWritablePrimary', ...(txnNumber !== undefined ? { errorLabels: ['RetryableWriteError'] } : {}) });
    }
    const mode = (doc.$readPreference as Document | undefined)?.mode ?? 'primary';
    if (!isPrimary && mode === 'primary' && !['ping', 'buildinfo', 'buildInfo', 'endsessions', 'getparameter'].includes(lname) && !WRITE_COMMANDS.has(lname)) {
      return reply({ ok: 0, errmsg: 'not primary and secondaryOk=false', code: 13435, codeName: 'NotPrimaryNoSecondaryOk' });
    }
    if (lname === 'committransaction' || lname === 'aborttransaction') return reply({ ok: 1 });
    // Cursors live in one server process: another member (or router) does not know them.
    if (lname === 'getmore') {
      const owner = this.set.cursorOwners.get(String(doc.getMore));
      if (owner !== undefined && owner !== this.index) {
        this.set.misroutedGetMores++;
        return reply({ ok: 0, errmsg: `cursor id ${String(doc.getMore)} not found`, code: 43, codeName: 'CursorNotFound' });
      }
    }
    // FerretDB has no transactions or replication: strip what it cannot take, forward the rest.
    const forward: Document = { ...doc };
    for (const f of TXN_FIELDS) delete forward[f];
    delete forward.$readPreference;
    delete forward.$clusterTime;
    const sequences = msg.sequences;
    const out = await conn.relay(encodeOpMsg(newRequestId(), 0, BSON.serialize(forward), msg.flagBits & ~(1 | 2 | (1 << 16)), sequences));
    const back = BSON.deserialize(parseOpMsg(out).body, { promoteLongs: false });
    const cursorId = (back.cursor as Document | undefined)?.id;
    if (cursorId !== undefined && String(cursorId) !== '0') this.set.cursorOwners.set(String(cursorId), this.index);
    reply(back);
  }
}

export class ReplicaSetFixture {
  readonly members: Member[];
  readonly executed: Executed[] = [];
  readonly connectionsAccepted: number[];
  /** cursor id → the member that created it; getMore elsewhere gets CursorNotFound. */
  readonly cursorOwners = new Map<string, number>();
  misroutedGetMores = 0;
  /** Compressors the members accept (as mongod's net.compression.compressors). */
  compressors: string[] = ['snappy', 'zstd', 'zlib'];
  compressedRequests = 0;
  compressedHandshakes = 0;
  private readonly removed = new Set<number>();
  primary = 0;
  setVersion = 1;
  electionId = new ObjectId();
  term = 1;

  /**
   * flavor 'mongos': the same endpoints present themselves as a fleet of mongos routers over
   * the shared storage (every one writable; hello says msg: "isdbgrid").
   */
  constructor(readonly storage: Storage, readonly setName = 'rs0', size = 3, readonly flavor: 'replset' | 'mongos' = 'replset') {
    this.members = Array.from({ length: size }, (_, i) => new Member(i, this));
    this.connectionsAccepted = Array(size).fill(0);
  }

  async start(): Promise<void> {
    for (const m of this.members) await m.endpoint.listen();
  }

  /** Addresses of the current members (removed ones excluded). */
  get addresses(): string[] {
    return this.members.filter((m) => !this.removed.has(m.index)).map((m) => m.address);
  }

  /** A new member joins the set (as a secondary); returns its index. */
  async addMember(): Promise<number> {
    const m = new Member(this.members.length, this);
    await m.endpoint.listen();
    this.members.push(m);
    this.connectionsAccepted.push(0);
    this.setVersion++;
    return m.index;
  }

  /** A (secondary) member leaves the set: it stops answering and is no longer reported. */
  async removeMember(index: number): Promise<void> {
    if (index === this.primary) throw new Error('step the primary down before removing it');
    this.removed.add(index);
    this.setVersion++;
    await this.members[index]!.endpoint.close(false);
  }

  /** Every address any client connected from, per member: proves who dialed the backends. */
  clientsOf(index: number): Set<string> {
    return this.members[index]!.clientAddresses;
  }

  hello(index: number, spelling: string, offered?: unknown): Document {
    const d = this.helloDocument(index, spelling);
    const accepted = Array.isArray(offered) ? offered.filter((c) => this.compressors.includes(c)) : [];
    if (accepted.length > 0) d.compression = accepted;
    return d;
  }

  private helloDocument(index: number, spelling: string): Document {
    if (this.flavor === 'mongos') {
      return { [spelling === 'hello' ? 'isWritablePrimary' : 'ismaster']: true, msg: 'isdbgrid', maxBsonObjectSize: MAX_BSON_OBJECT_SIZE, maxMessageSizeBytes: MAX_MESSAGE_SIZE_BYTES, maxWriteBatchSize: MAX_WRITE_BATCH_SIZE, localTime: new Date(), logicalSessionTimeoutMinutes: 30, connectionId: 7, minWireVersion: 0, maxWireVersion: 21, ok: 1 };
    }
    const isPrimary = index === this.primary;
    const d: Document = {
      hosts: this.addresses,
      setName: this.setName,
      setVersion: this.setVersion,
      [spelling === 'hello' ? 'isWritablePrimary' : 'ismaster']: isPrimary,
      secondary: !isPrimary,
      primary: this.members[this.primary]!.address,
      me: this.members[index]!.address,
      ...(isPrimary ? { electionId: this.electionId } : {}),
      lastWrite: { lastWriteDate: new Date(), opTime: { ts: new BSON.Timestamp({ t: Math.floor(Date.now() / 1000), i: 1 }), t: BSON.Long.fromNumber(this.term) } },
      maxBsonObjectSize: MAX_BSON_OBJECT_SIZE,
      maxMessageSizeBytes: MAX_MESSAGE_SIZE_BYTES,
      maxWriteBatchSize: MAX_WRITE_BATCH_SIZE,
      localTime: new Date(),
      logicalSessionTimeoutMinutes: 30,
      connectionId: 7,
      minWireVersion: 0,
      maxWireVersion: 21,
      readOnly: false,
      ok: 1,
    };
    if (spelling === 'hello') d.isWritablePrimary = isPrimary;
    return d;
  }

  status(index: number): Document {
    return {
      set: this.setName,
      date: new Date(),
      myState: index === this.primary ? 1 : 2,
      term: BSON.Long.fromNumber(this.term),
      syncSourceHost: index === this.primary ? '' : this.members[this.primary]!.address,
      members: this.members.filter((m) => !this.removed.has(m.index)).map((m) => ({
        _id: m.index,
        name: m.address,
        health: 1,
        state: m.index === this.primary ? 1 : 2,
        stateStr: m.index === this.primary ? 'PRIMARY' : 'SECONDARY',
        self: m.index === index,
        syncSourceHost: m.index === this.primary ? '' : this.members[this.primary]!.address,
      })),
      ok: 1,
    };
  }

  /** The primary steps down; the next member is elected. Existing connections stay open. */
  stepDown(): void {
    do this.primary = (this.primary + 1) % this.members.length;
    while (this.removed.has(this.primary));
    this.term++;
    this.electionId = new ObjectId();
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.endpoint.close()));
  }
}
