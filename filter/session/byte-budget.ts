/**
 * The process-wide bound on client input held in memory (`client.maxTotalBufferedBytes`).
 * Each session claims what it holds: its queued messages plus the full declared length of the
 * message it is receiving, so a claim is made when a message's header arrives, before its body
 * is buffered. A claim that would grow past the limit is refused.
 */
export class ByteBudget {
  private used = 0;
  /** The most held since `mark()`: what was let go since is `releasedBytes`. */
  private high = 0;

  constructor(readonly limit: number) {}

  get usedBytes(): number {
    return this.used;
  }

  /** Moves a holder's claim from `from` to `to` bytes; false (nothing changed) when growing past the limit. */
  resize(from: number, to: number): boolean {
    if (to > from && this.used + (to - from) > this.limit) return false;
    this.used += to - from;
    if (this.used > this.high) this.high = this.used;
    return true;
  }

  /** Bytes let go since the last mark (the most held since then, less what is held now). */
  get releasedBytes(): number {
    return this.high - this.used;
  }

  mark(): void {
    this.high = this.used;
  }
}
