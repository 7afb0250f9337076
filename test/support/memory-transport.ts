import { BSON, type Document } from 'bson';
import type { ClientTransport } from '../../filter/session/transport';
import { MessageFramer } from '../../filter/wire/framer';
import type { WireMessage } from '../../filter/wire/header';
import { MAX_MESSAGE_SIZE_BYTES } from '../../filter/wire/limits';
import { encodeOpMsg } from '../../filter/wire/opmsg';
import { decodeReply } from './raw-client';

/**
 * A client connection held in memory: what a session writes is framed and kept, and what the
 * session asks of the transport (pause, resume, close) is recorded. For exercising a session
 * and its command handler without sockets.
 */
export class MemoryTransport implements ClientTransport {
  readonly remote = '192.0.2.7:50123';
  readonly replies: WireMessage[] = [];
  readonly calls: string[] = [];
  closedWith: string | undefined;
  private readonly framer = new MessageFramer(MAX_MESSAGE_SIZE_BYTES);
  private readonly waiters: Array<() => void> = [];

  write(bytes: Buffer): boolean {
    this.replies.push(...this.framer.push(Buffer.from(bytes)));
    for (const w of this.waiters.splice(0)) w();
    return true;
  }

  waitForDrain(): Promise<void> {
    return Promise.resolve();
  }

  pause(): void {
    this.calls.push('pause');
  }

  resume(): void {
    this.calls.push('resume');
  }

  close(reason: string): void {
    this.closedWith = reason;
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once `n` replies were written (or the connection closed). */
  async replyCount(n: number, timeoutMs = 5000): Promise<WireMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < n && this.closedWith === undefined) {
      if (Date.now() > deadline) throw new Error(`${this.replies.length} of ${n} replies within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.replies.slice(0, n);
  }

  /** The reply documents written so far. */
  documents(): Document[] {
    return this.replies.map(decodeReply);
  }
}

/** An OP_MSG command as a client would send it. */
export function opMsg(requestId: number, doc: Document, flags = 0): Buffer {
  return encodeOpMsg(requestId, 0, BSON.serialize(doc), flags);
}
