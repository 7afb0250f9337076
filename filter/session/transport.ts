/** The byte pipe between a client and its session; TCP sockets and Envoy ext_proc streams implement it. */
export interface ClientTransport {
  /** For logs: who is on the other end. */
  readonly remote: string;
  /** Sends bytes to the client; false when the client is not keeping up (wait for drain). */
  write(bytes: Buffer): boolean;
  waitForDrain(): Promise<void>;
  /** Stop / restart delivering client bytes (backpressure toward the client). */
  pause(): void;
  resume(): void;
  /** Closes the client connection (after flushing what was written). */
  close(reason: string): void;
}
