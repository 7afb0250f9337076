import { BSON } from 'bson';
import type { Config } from '../config';
import type { Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import { ErrorCode } from '../wire/errors';
import { FramingError, MessageFramer } from '../wire/framer';
import { newRequestId, type WireMessage } from '../wire/header';
import { encodeOpMsg } from '../wire/opmsg';
import type { CommandHandler } from './command-handler';
import { errorDocument } from './error-reply';
import type { ClientTransport } from './transport';

/** The per-client bounds the session enforces. */
export type ClientLimits = Pick<Config['client'], 'maxMessageSizeBytes' | 'maxBufferedBytes' | 'maxPendingRequests'>;

/**
 * Where a client connection is in its life (PgBouncer keeps such explicit client states):
 * - `idle`: nothing queued; waiting for the client's next message;
 * - `active`: handling queued messages, one at a time;
 * - `ending`: the client sent its last byte; what is queued is answered, then the connection closes;
 * - `closed`: gone; nothing more is read or written.
 */
export type ClientState = 'idle' | 'active' | 'ending' | 'closed';

/**
 * One client connection: reassembles its messages, queues them, and hands them one at a time
 * (as mongod itself serves a connection) to its command handler, writing back what it answers.
 * Bounded: at most `maxPendingRequests` queued and `maxBufferedBytes` held before the client
 * is paused (or, on a transport that cannot pause, closed).
 */
export class ClientSession {
  private state: ClientState = 'idle';
  /** Whether the transport is delivering the client's bytes (false: paused for backpressure). */
  private reading = true;
  private readonly framer: MessageFramer;
  private readonly queue: WireMessage[] = [];
  private queuedBytes = 0;
  lastActivityAt = Date.now();

  /** `onClosed`: told once, whichever side closed the connection. */
  constructor(
    readonly id: number,
    private readonly transport: ClientTransport,
    private readonly handler: CommandHandler,
    private readonly limits: ClientLimits,
    private readonly log: Logger,
    private readonly onClosed: (reason: string) => void,
  ) {
    this.framer = new MessageFramer(limits.maxMessageSizeBytes, { refuseTls: true });
  }

  get bufferedBytes(): number {
    return this.framer.bufferedBytes + this.queuedBytes;
  }

  /** Bytes from the client, in whatever chunks the transport delivers. */
  receive(chunk: Buffer): void {
    if (this.state === 'closed' || this.state === 'ending') return;
    this.lastActivityAt = Date.now();
    let messages: WireMessage[];
    try {
      messages = this.framer.push(chunk);
    } catch (err) {
      if (err instanceof FramingError) this.failFraming(err);
      else throw err;
      return;
    }
    for (const m of messages) {
      this.queue.push(m);
      this.queuedBytes += m.bytes.length;
    }
    const { maxBufferedBytes, maxMessageSizeBytes } = this.limits;
    if (this.bufferedBytes > maxBufferedBytes + maxMessageSizeBytes) {
      // Only a transport that cannot pause (Envoy ext_proc) gets here.
      Metrics.clientProtocolErrors.add(1, { reason: 'buffer_limit' });
      this.log.warn({ bufferedBytes: this.bufferedBytes }, 'closing client connection: it sends faster than it reads its replies');
      this.close('buffer_limit');
      return;
    }
    this.applyBackpressure();
    if (this.state === 'idle' && this.queue.length > 0) void this.run();
  }

  /** The client sent its last byte (half-close): answer what is queued, then close. */
  endOfInput(): void {
    if (this.state === 'idle') this.close('client_end_of_input');
    else if (this.state === 'active') this.state = 'ending';
  }

  /** The transport is gone (client closed, reset, or the proxy closed it). */
  transportClosed(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.onClosed(reason);
    Metrics.clientConnectionsClosed.add(1, { reason });
    this.log.debug({ reason }, 'client connection closed');
  }

  /** Closes the client connection from the proxy's side. */
  close(reason: string): void {
    if (this.state === 'closed') return;
    this.transport.close(reason);
    this.transportClosed(reason);
  }

  private applyBackpressure(): void {
    const { maxBufferedBytes, maxPendingRequests } = this.limits;
    const over = this.queue.length > 0 && (this.bufferedBytes > maxBufferedBytes || this.queue.length >= maxPendingRequests);
    if (over && this.reading) {
      this.reading = false;
      this.transport.pause();
    } else if (!over && !this.reading) {
      this.reading = true;
      this.transport.resume();
    }
  }

  private failFraming(err: FramingError): void {
    Metrics.clientProtocolErrors.add(1, { reason: err.reason });
    this.log.warn({ err: err.message }, 'closing client connection: unframeable input');
    if (err.requestId !== undefined) {
      const kind = err.reason === 'too_large' ? ErrorCode.BSONObjectTooLarge : ErrorCode.ProtocolError;
      this.transport.write(encodeOpMsg(newRequestId(), err.requestId, BSON.serialize(errorDocument(kind, `mongoplex: ${err.message}; closing connection`))));
    }
    this.close(`protocol_error_${err.reason}`);
  }

  private async run(): Promise<void> {
    this.state = 'active';
    try {
      while (this.queue.length > 0 && this.isOpen()) {
        const m = this.queue.shift()!;
        this.queuedBytes -= m.bytes.length;
        const out = await this.handler.handle(m);
        if (out) await this.write(out);
        this.applyBackpressure();
      }
    } catch (err) {
      this.log.error({ err }, 'unexpected error handling a client message');
      this.close('internal_error');
    }
    // The client may have half-closed, or gone, while requests were in flight.
    const after = this.state as ClientState;
    if (after === 'ending') this.close('client_end_of_input');
    else if (after === 'active') this.state = 'idle';
  }

  /** Still serving (the state may change while a request is in flight). */
  private isOpen(): boolean {
    return this.state === 'active' || this.state === 'ending';
  }

  /** A client that left mid-request: the reply is dropped, the pooled connection stays healthy. */
  private async write(bytes: Buffer): Promise<void> {
    if (this.state === 'closed') return;
    if (!this.transport.write(bytes)) await this.transport.waitForDrain();
  }
}
