import * as net from 'node:net';
import { BSON, type Document } from 'bson';
import { MessageFramer } from '../filter/wire/framer';
import { MAX_MESSAGE_SIZE_BYTES } from '../filter/wire/limits';
import { encodeOpMsg, parseOpMsg } from '../filter/wire/opmsg';

/**
 * The benchmark's client connection: one OP_MSG command at a time over a bare socket, so
 * thousands of connections cost the load generator little (a driver per connection would
 * dominate the measurement).
 */
export class LoadClient {
  private readonly framer = new MessageFramer(MAX_MESSAGE_SIZE_BYTES);
  private pending: { resolve: (d: Document) => void; reject: (e: Error) => void } | undefined;
  private nextId = 1;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => {
      for (const m of this.framer.push(c)) {
        const p = this.pending;
        this.pending = undefined;
        p?.resolve(BSON.deserialize(parseOpMsg(m).body, { promoteLongs: false }));
      }
    });
    socket.on('close', () => this.pending?.reject(new Error('connection closed before the reply')));
    socket.on('error', () => undefined);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<LoadClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => resolve(new LoadClient(s)));
      s.once('error', reject);
    });
  }

  command(doc: Document): Promise<Document> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.socket.write(encodeOpMsg(this.nextId++, 0, BSON.serialize(doc)));
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
