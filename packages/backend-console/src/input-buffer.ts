/**
 * Host input waiting for receive buffers (spec §7.3). Input is never dropped: a port keeps it
 * here until the driver posts receiveq chains and the port is ready, across driver sessions.
 * The buffer is bounded by backpressure, not by discarding: the owner pauses its source once
 * `full` and resumes it when `consume` brings the level back down.
 */
export class InputBuffer {
  /** Pause the source at or above this many bytes (a chunk may overshoot it once). */
  readonly limit: number;
  private chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private headOffset = 0;
  private bytes = 0;

  constructor(limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`buffer limit must be a positive integer, got ${String(limit)}`);
    this.limit = limit;
  }

  get length(): number {
    return this.bytes;
  }

  get full(): boolean {
    return this.bytes >= this.limit;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    // Copy: a Readable may reuse its chunk memory after 'data' returns (e.g. a raw tty).
    this.chunks.push(Buffer.from(chunk));
    this.bytes += chunk.length;
  }

  /** Up to `max` bytes from the front, without consuming them (a copy only when spanning chunks). */
  peek(max: number): Buffer {
    const n = Math.min(max, this.bytes);
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.length - this.headOffset >= n) return first.subarray(this.headOffset, this.headOffset + n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let off = this.headOffset;
    for (const c of this.chunks) {
      const take = Math.min(c.length - off, n - filled);
      c.copy(out, filled, off, off + take);
      filled += take;
      off = 0;
      if (filled === n) break;
    }
    return out;
  }

  /** Drop `n` bytes from the front (n ≤ length). */
  consume(n: number): void {
    if (n > this.bytes) throw new RangeError(`consume ${n} of ${this.bytes} buffered bytes`);
    this.bytes -= n;
    while (n > 0) {
      const avail = this.chunks[0].length - this.headOffset;
      if (n < avail) {
        this.headOffset += n;
        return;
      }
      n -= avail;
      this.chunks.shift();
      this.headOffset = 0;
    }
  }
}
