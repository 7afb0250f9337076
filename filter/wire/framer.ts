import { HEADER_SIZE, readHeader, type WireMessage } from './header';

/** Framing can no longer be trusted: the byte stream must be closed. */
export class FramingError extends Error {
  constructor(
    message: string,
    /** The request id of the offending message, when its header was readable. */
    readonly requestId: number | undefined,
    readonly reason: 'invalid_length' | 'too_large',
  ) {
    super(message);
    this.name = 'FramingError';
  }
}

/**
 * Reassembles a TCP byte stream (arbitrary chunks) into complete wire messages.
 * Holds at most one partial message; a declared length above `maxMessageSize` is refused
 * before any of its body is buffered.
 */
export class MessageFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  constructor(private readonly maxMessageSize: number) {}

  /** Bytes held while waiting for the rest of a message. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Feeds bytes in; returns every message that is now complete. Throws FramingError. */
  push(chunk: Buffer): WireMessage[] {
    if (this.failed) return [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: WireMessage[] = [];
    while (this.buffered >= 4) {
      const head = this.peek(Math.min(this.buffered, HEADER_SIZE));
      const length = head.readInt32LE(0);
      const requestId = head.length >= 8 ? head.readInt32LE(4) : undefined;
      if (length < HEADER_SIZE) {
        this.failed = true;
        throw new FramingError(`invalid message length ${length} (minimum ${HEADER_SIZE})`, requestId, 'invalid_length');
      }
      if (length > this.maxMessageSize) {
        this.failed = true;
        throw new FramingError(
          `message length ${length} exceeds maxMessageSizeBytes ${this.maxMessageSize}`,
          requestId,
          'too_large',
        );
      }
      if (this.buffered < length) break;
      const bytes = this.take(length);
      out.push({ header: readHeader(bytes), bytes });
    }
    return out;
  }

  /** Contiguous view of the first n buffered bytes (copies only when they span chunks). */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    return Buffer.concat(this.chunks, this.buffered).subarray(0, n);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length === n) {
      this.chunks.shift();
      out = first;
    } else if (first.length > n) {
      out = first.subarray(0, n);
      this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0]!;
        const want = n - filled;
        if (c.length <= want) {
          c.copy(out, filled);
          filled += c.length;
          this.chunks.shift();
        } else {
          c.copy(out, filled, 0, want);
          this.chunks[0] = c.subarray(want);
          filled += want;
        }
      }
    }
    this.buffered -= n;
    return out;
  }
}
