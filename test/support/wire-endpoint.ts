import * as net from 'node:net';
import { BSON, type Document } from 'bson';
import { MessageFramer } from '../../filter/wire/framer';
import { newRequestId, type WireMessage } from '../../filter/wire/header';
import { MAX_MESSAGE_SIZE_BYTES } from '../../filter/wire/limits';
import { encodeOpMsg, parseOpMsg } from '../../filter/wire/opmsg';

/** Where a test server keeps its data: a real FerretDB (anything with host and port). */
export interface Storage {
  readonly host: string;
  readonly port: number;
}

/** One accepted connection of a test server. */
export interface WireConnection {
  readonly socket: net.Socket;
  /** `host:port` of the client that dialled. */
  readonly remote: string;
  /** Sends a message to this connection's own storage connection; resolves with its reply. */
  relay(bytes: Buffer): Promise<WireMessage>;
  /** Runs one OP_MSG command on the storage connection. */
  storageCommand(doc: Document): Promise<Document>;
}

/** Handles one framed message of one connection; replies by writing to `conn.socket`. */
export type MessageHandler = (m: WireMessage) => Promise<void>;

/**
 * The framing/relay loop every test server here shares: a loopback listener whose accepted
 * connections each get their own connection to the storage server (when there is one);
 * messages from the client are framed and handled one at a time, in order, by the handler made
 * for that connection (which keeps per-connection state, as a server does). A handler that
 * throws ends the connection.
 */
export class WireEndpoint {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  /** Connections accepted so far. */
  accepted = 0;

  constructor(private readonly storage: Storage | undefined, private readonly connect: (conn: WireConnection, connectionNumber: number) => MessageHandler) {
    this.server = net.createServer((s) => this.accept(s));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(socket: net.Socket): void {
    const number = ++this.accepted;
    this.sockets.add(socket);
    const backend = this.storage ? net.connect({ host: this.storage.host, port: this.storage.port }) : undefined;
    const waiting: Array<(m: WireMessage) => void> = [];
    if (backend) {
      const backendFramer = new MessageFramer(MAX_MESSAGE_SIZE_BYTES);
      backend.on('data', (c: Buffer) => {
        for (const m of backendFramer.push(c)) waiting.shift()?.(m);
      });
    }
    const relay = (bytes: Buffer): Promise<WireMessage> => new Promise((resolve, reject) => {
      if (!backend) return reject(new Error('this test server has no storage'));
      waiting.push(resolve);
      backend.write(bytes);
    });
    const conn: WireConnection = {
      socket,
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
      relay,
      storageCommand: async (doc) => BSON.deserialize(parseOpMsg(await relay(encodeOpMsg(newRequestId(), 0, BSON.serialize(doc)))).body, { promoteLongs: false }),
    };
    const handle = this.connect(conn, number);
    const framer = new MessageFramer(MAX_MESSAGE_SIZE_BYTES);
    let chain = Promise.resolve();
    socket.on('data', (c: Buffer) => {
      for (const m of framer.push(c)) chain = chain.then(() => handle(m)).catch(() => void socket.destroy());
    });
    const end = (): void => {
      socket.destroy();
      backend?.destroy();
      this.sockets.delete(socket);
    };
    socket.on('close', end).on('error', end);
    backend?.on('close', end).on('error', end);
  }

  /** Closes every accepted connection (the listener stays). */
  async dropConnections(): Promise<void> {
    const closed = [...this.sockets].map((s) => new Promise((r) => s.once('close', r)));
    for (const s of this.sockets) s.destroy();
    await Promise.all(closed);
  }

  /** Stops listening; `dropConnections` also closes the accepted ones. */
  async close(dropConnections = true): Promise<void> {
    if (dropConnections) for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}
