import { HEADER_SIZE, readHeader, type WireMessage } from './header';

/** Framing can no longer be trusted: the byte stream must be closed. */
export class FramingError extends Error {
  constructor(
    message: string,
    /** The request id of the offending message, when its header was readable. */
    readonly requestId: number | undefined,
    readonly reason: 'invalid_length' | 'too_large' | 'tls_handshake',
  ) {
    super(message);
    this.name = 'FramingError';
  }
}

/**
 * A TLS record carrying a ClientHello: content type 22, version 3.x, then (after the 2-byte
 * record length) handshake type 1. As a wire header it would be a plausible length, so a TLS
 * client on a plain port would otherwise wait forever for a message that never completes.
 */
function isTlsClientHello(head: Buffer): boolean {
  return head[0] === 0x16 && head[1] === 0x03 && head[2]! <= 0x04 && head[5] === 0x01;
}

/**
 * A message declared at least this long is assembled in one buffer of its own, allocated at
 * its declared size, as it arrives. The reads it arrives in (64 KiB each on a socket) are
 * freed as they are copied, so they do not pile up in the allocator's heap, which keeps
 * what it was given after they go; a buffer this large is a memory map of its own, returned
 * to the system when it is collected.
 */
export const ASSEMBLE_AT_BYTES = 1024 * 1024;

/**
 * Reassembles a TCP byte stream (arbitrary chunks) into complete wire messages.
 * Holds at most one partial message; a declared length above `maxMessageSize` is refused
 * before any of its body is buffered. With `refuseTls`, a stream that opens with a TLS
 * ClientHello is refused at once.
 */
export class MessageFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The large message being assembled (its bytes so far: `buffered`); chunks is empty meanwhile. */
  private assembling: Buffer | undefined;
  private failed = false;
  private atStart: boolean;

  constructor(private readonly maxMessageSize: number, options: { refuseTls?: boolean } = {}) {
    this.atStart = options.refuseTls === true;
  }

  /** Bytes held while waiting for the rest of a message. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The incomplete message being received: its declared length and request id (once its header's first 8 bytes are in). */
  get pending(): { length: number; requestId: number } | undefined {
    if (this.failed || this.buffered < 8) return undefined;
    const head = this.assembling ?? this.peek(8);
    return { length: head.readInt32LE(0), requestId: head.readInt32LE(4) };
  }

  /** Feeds bytes in; returns every message that is now complete. Throws FramingError. */
  push(chunk: Buffer): WireMessage[] {
    if (this.failed) return [];
    const out: WireMessage[] = [];
    if (this.assembling) {
      chunk = this.assemble(chunk, out);
      if (this.assembling) return out;
    }
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    if (this.atStart) {
      if (this.buffered < 6) return out;
      this.atStart = false;
      if (isTlsClientHello(this.peek(6))) {
        this.failed = true;
        throw new FramingError('the client started a TLS handshake, but this listener speaks the plain MongoDB wire protocol (terminate TLS in Envoy, or connect without tls=true)', undefined, 'tls_handshake');
      }
    }
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
      if (this.buffered < length) {
        if (length >= ASSEMBLE_AT_BYTES) this.startAssembling(length);
        break;
      }
      const bytes = this.take(length);
      out.push({ header: readHeader(bytes), bytes });
    }
    return out;
  }

  /** Moves what is buffered (the start of one message, nothing after it) into a buffer of the message's size. */
  private startAssembling(length: number): void {
    const into = Buffer.allocUnsafeSlow(length);
    let at = 0;
    for (const c of this.chunks) at += c.copy(into, at);
    this.chunks = [];
    this.assembling = into;
  }

  /** Copies what `chunk` holds of the message being assembled; returns the rest of it (the next messages). */
  private assemble(chunk: Buffer, out: WireMessage[]): Buffer {
    const into = this.assembling!;
    const n = chunk.copy(into, this.buffered);
    this.buffered += n;
    if (this.buffered < into.length) return chunk.subarray(n);
    this.assembling = undefined;
    this.buffered = 0;
    out.push({ header: readHeader(into), bytes: into });
    return chunk.subarray(n);
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
