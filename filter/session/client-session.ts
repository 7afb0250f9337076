import { BSON } from 'bson';
import type { Config } from '../config';
import { clientCausedLogs, type Logger } from '../log';
import { Metrics } from '../telemetry/metrics';
import { ErrorCode, type KnownError } from '../wire/errors';
import { FramingError, MessageFramer } from '../wire/framer';
import { newRequestId, type WireMessage } from '../wire/header';
import { encodeOpMsg } from '../wire/opmsg';
import type { ByteBudget } from './byte-budget';
import type { CommandHandler } from './command-handler';
import { errorDocument } from './error-reply';
import type { ClientTransport } from './transport';

/** The per-client bounds the session enforces. */
export type ClientLimits = Pick<Config['client'], 'maxMessageSizeBytes' | 'maxBufferedBytes' | 'maxPendingRequests' | 'readTimeoutMs'>;

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
  /** What this session holds against the process-wide budget (queued + the message arriving, at its declared length). */
  private claimed = 0;
  /** Shutting down: answer what is queued, then close (between requests). */
  private draining = false;
  /** When the message now arriving began to arrive (undefined: none, or reading is paused). */
  private partialSince: number | undefined;
  lastActivityAt = Date.now();

  /** `onClosed`: told once, whichever side closed the connection. */
  constructor(
    readonly id: number,
    private readonly transport: ClientTransport,
    private readonly handler: CommandHandler,
    private readonly limits: ClientLimits,
    private readonly budget: ByteBudget,
    private readonly log: Logger,
    private readonly onClosed: (reason: string) => void,
  ) {
    this.framer = new MessageFramer(limits.maxMessageSizeBytes, { refuseTls: true });
  }

  get currentState(): ClientState {
    return this.state;
  }

  /** Messages read and waiting behind the one being handled. */
  get queued(): number {
    return this.queue.length;
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
    if (!this.claim()) return;
    // The deadline runs per message: from the first byte of the one still arriving.
    if (this.framer.bufferedBytes === 0) this.partialSince = undefined;
    else if (messages.length > 0 || this.partialSince === undefined) this.partialSince = this.lastActivityAt;
    const { maxBufferedBytes, maxMessageSizeBytes } = this.limits;
    if (this.bufferedBytes > maxBufferedBytes + maxMessageSizeBytes) {
      // Only a transport that cannot pause (Envoy ext_proc) gets here.
      Metrics.clientProtocolErrors.add(1, { reason: 'buffer_limit' });
      if (clientCausedLogs.allow(this.log, 'buffer_limit')) this.log.warn({ bufferedBytes: this.bufferedBytes }, 'closing client connection: it sends faster than it reads its replies');
      this.close('buffer_limit');
      return;
    }
    this.applyBackpressure();
    if (this.state === 'idle' && this.queue.length > 0) void this.run();
  }

  /**
   * Closes a client whose message has been arriving for longer than `readTimeoutMs` (a slow or
   * stalled sender holding a partial message). Called by the janitor; true when it closed.
   */
  closeIfStalled(now: number): boolean {
    const limit = this.limits.readTimeoutMs;
    if (limit <= 0 || this.partialSince === undefined || !this.reading || now - this.partialSince < limit) return false;
    const pending = this.framer.pending;
    Metrics.clientProtocolErrors.add(1, { reason: 'read_timeout' });
    if (clientCausedLogs.allow(this.log, 'read_timeout')) this.log.warn({ receivedBytes: this.framer.bufferedBytes, declaredBytes: pending?.length, ms: now - this.partialSince }, 'closing client connection: its message did not arrive within client.readTimeoutMs');
    if (pending) this.refuse(pending.requestId, ErrorCode.NetworkTimeout, `mongoplex: message of ${pending.length} bytes did not arrive within ${limit} ms (client.readTimeoutMs); closing connection`);
    this.close('read_timeout');
    return true;
  }

  /**
   * Claims what the session holds from the process-wide budget. A message whose declared
   * length would overrun it is refused (an error reply naming it) and the client closed.
   */
  private claim(): boolean {
    const pending = this.framer.pending;
    const want = this.queuedBytes + Math.max(this.framer.bufferedBytes, pending?.length ?? 0);
    if (this.budget.resize(this.claimed, want)) {
      this.claimed = want;
      return true;
    }
    Metrics.clientProtocolErrors.add(1, { reason: 'memory_budget' });
    if (clientCausedLogs.allow(this.log, 'memory_budget')) this.log.warn({ declaredBytes: pending?.length, heldBytes: this.budget.usedBytes, limit: this.budget.limit }, 'closing client connection: its message would overrun client.maxTotalBufferedBytes');
    if (pending) this.refuse(pending.requestId, ErrorCode.ExceededMemoryLimit, `mongoplex: a message of ${pending.length} bytes would overrun the ${this.budget.limit} bytes all clients may have buffered (client.maxTotalBufferedBytes); closing connection, retry later`);
    this.close('memory_budget');
    return false;
  }

  private refuse(requestId: number, kind: KnownError, message: string): void {
    this.transport.write(encodeOpMsg(newRequestId(), requestId, BSON.serialize(errorDocument(kind, message))));
  }

  /**
   * The proxy is shutting down: stop reading, answer every request already read (in flight or
   * queued), then close. An idle client is closed at once.
   */
  drain(): void {
    if (this.state === 'closed') return;
    this.draining = true;
    if (this.reading) {
      this.reading = false;
      this.transport.pause();
    }
    if (this.state === 'idle' && this.queue.length === 0) this.close('draining');
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
    this.budget.resize(this.claimed, 0);
    this.claimed = 0;
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
    } else if (!over && !this.reading && !this.draining) {
      this.reading = true;
      // A message that was arriving when reading paused gets its full time again.
      if (this.partialSince !== undefined) this.partialSince = Date.now();
      this.transport.resume();
    }
  }

  private failFraming(err: FramingError): void {
    Metrics.clientProtocolErrors.add(1, { reason: err.reason });
    if (clientCausedLogs.allow(this.log, err.reason)) this.log.warn({ err: err.message }, 'closing client connection: unframeable input');
    if (err.requestId !== undefined) {
      this.refuse(err.requestId, err.reason === 'too_large' ? ErrorCode.BSONObjectTooLarge : ErrorCode.ProtocolError, `mongoplex: ${err.message}; closing connection`);
    }
    this.close(`protocol_error_${err.reason}`);
  }

  private async run(): Promise<void> {
    this.state = 'active';
    try {
      while (this.queue.length > 0 && this.isOpen()) {
        const m = this.queue.shift()!;
        this.queuedBytes -= m.bytes.length;
        this.claim(); // shrinking: always granted
        const out = await this.handler.handle(m);
        const full = out && this.write(out);
        if (full) await full;
        if (this.handler.leaving) this.close('shutdown_notice');
        this.applyBackpressure();
      }
    } catch (err) {
      this.log.error({ err }, 'unexpected error handling a client message');
      this.close('internal_error');
    }
    // The client may have half-closed, or gone, while requests were in flight.
    const after = this.state as ClientState;
    if (after === 'ending') this.close('client_end_of_input');
    else if (after === 'active' && this.draining) this.close('draining');
    else if (after === 'active') this.state = 'idle';
  }

  /** Still serving (the state may change while a request is in flight). */
  private isOpen(): boolean {
    return this.state === 'active' || this.state === 'ending';
  }

  /**
   * Writes a reply; a promise only when the transport is full (wait for it to drain). A client
   * that left mid-request: the reply is dropped, the pooled connection stays healthy.
   */
  private write(bytes: Buffer): Promise<void> | undefined {
    if (this.state === 'closed') return undefined;
    return this.transport.write(bytes) ? undefined : this.transport.waitForDrain();
  }
}
