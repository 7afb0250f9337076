import * as net from 'node:net';
import { BSON, type Document } from 'bson';
import { MessageFramer } from '../../filter/wire/framer';
import { OpCode, type WireMessage } from '../../filter/wire/header';
import { encodeOpMsg, parseOpMsg } from '../../filter/wire/opmsg';
import { parseOpReply } from '../../filter/wire/legacy';

/**
 * A bare wire-protocol client for tests and benchmarks that need what no driver will send:
 * malformed frames, odd opcodes, vanishing mid-request, thousands of cheap connections.
 */
export class RawClient {
  private readonly framer = new MessageFramer(64 * 1024 * 1024);
  private readonly inbox: WireMessage[] = [];
  private waiting: ((m: WireMessage | undefined) => void) | undefined;
  private nextId = 1;
  closed = false;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => {
      for (const m of this.framer.push(c)) {
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = undefined;
          w(m);
        } else this.inbox.push(m);
      }
    });
    this.closedPromise = new Promise((resolve) => socket.on('close', () => {
      this.closed = true;
      this.waiting?.(undefined);
      this.waiting = undefined;
      resolve();
    }));
    socket.on('error', () => undefined);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next message from the server, or undefined if the connection closed first. */
  next(timeoutMs = 10_000): Promise<WireMessage | undefined> {
    const m = this.inbox.shift();
    if (m) return Promise.resolve(m);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiting = (msg) => {
        clearTimeout(timer);
        resolve(msg);
      };
    });
  }

  /** Sends an OP_MSG command and returns the reply document. */
  async command(doc: Document, flags = 0): Promise<Document> {
    this.send(encodeOpMsg(this.nextId++, 0, BSON.serialize(doc), flags));
    const reply = await this.next();
    if (!reply) throw new Error('connection closed before the reply');
    return decodeReply(reply);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function decodeReply(reply: WireMessage): Document {
  if (reply.header.opCode === OpCode.MSG) return BSON.deserialize(parseOpMsg(reply).body, { promoteLongs: false });
  if (reply.header.opCode === OpCode.REPLY) return BSON.deserialize(parseOpReply(reply).documents[0]!, { promoteLongs: false });
  throw new Error(`unexpected reply opcode ${reply.header.opCode}`);
}

/** The first `n` bytes of an OP_MSG insert whose whole message is about `size` bytes (its header claims all of it). */
export function partialInsert(requestId: number, size: number, n: number): Buffer {
  const msg = encodeOpMsg(requestId, 0, BSON.serialize({ insert: 'big', documents: [{ pad: 'x'.repeat(size - 200) }], $db: 'limits' }));
  return msg.subarray(0, n);
}

/**
 * Each client starts a message of `size` bytes (1 KB of it: the header claims the rest) and
 * stops; resolves with each client's answer within `waitMs` (undefined: none came).
 */
export async function startLargeMessages(clients: RawClient[], size: number, waitMs: number): Promise<Array<Document | undefined>> {
  for (const [i, c] of clients.entries()) {
    c.send(partialInsert(100 + i, size, 1024));
    await new Promise((r) => setTimeout(r, 50));
  }
  return Promise.all(clients.map(async (c) => {
    const r = await Promise.race([c.next(), new Promise<undefined>((res) => setTimeout(() => res(undefined), waitMs))]);
    return r ? decodeReply(r) : undefined;
  }));
}
