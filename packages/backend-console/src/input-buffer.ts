/**
 * Host input waiting for receive buffers (spec §7.3). Input is never dropped: a port keeps it
 * here until the driver posts receiveq chains and the port is ready, across driver sessions.
 * The buffer is bounded by backpressure, not by discarding: the owner pauses its source once
 * `full` and resumes it when `consume` brings the level back down.
 *
 * Memory (perf): bytes are copied into fixed-size blocks that are recycled once consumed, so a
 * steady stream allocates nothing. Copying stays — a Readable may reuse its chunk memory after
 * 'data' returns (e.g. a raw tty) — but a fresh Buffer per chunk cost an allocation whose pages
 * the kernel often had to fault in again (the console_stream_rx back-end spent more time there
 * than in copying).
 */

/** Bytes per block. */
export const INPUT_BLOCK_SIZE = 65536;

export class InputBuffer {
  /** Pause the source at or above this many bytes (a chunk may overshoot it once). */
  readonly limit: number;
  /** Blocks holding bytes, oldest first: read from `headOffset` in the first, written up to `tailFill` in the last. */
  private blocks: Buffer[] = [];
  private headOffset = 0;
  private tailFill = 0;
  private bytes = 0;
  /** Consumed blocks kept for reuse (enough for `limit` plus one chunk's overshoot). */
  private readonly spare: Buffer[] = [];
  private readonly maxSpare: number;

  constructor(limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`buffer limit must be a positive integer, got ${String(limit)}`);
    this.limit = limit;
    this.maxSpare = Math.ceil(limit / INPUT_BLOCK_SIZE) + 1;
  }

  get length(): number {
    return this.bytes;
  }

  get full(): boolean {
    return this.bytes >= this.limit;
  }

  push(chunk: Uint8Array): void {
    let left = chunk.length;
    if (left === 0) return;
    let from = 0;
    while (left > 0) {
      let tail = this.blocks.length === 0 ? undefined : this.blocks[this.blocks.length - 1];
      if (tail === undefined || this.tailFill === INPUT_BLOCK_SIZE) {
        // Unzeroed is safe: bytes are read back only up to where they were written.
        tail = this.spare.pop() ?? Buffer.allocUnsafeSlow(INPUT_BLOCK_SIZE);
        this.blocks.push(tail);
        if (this.blocks.length === 1) this.headOffset = 0;
        this.tailFill = 0;
      }
      const take = Math.min(left, INPUT_BLOCK_SIZE - this.tailFill);
      tail.set(take === chunk.length ? chunk : chunk.subarray(from, from + take), this.tailFill);
      this.tailFill += take;
      from += take;
      left -= take;
    }
    this.bytes += chunk.length;
  }

  /**
   * Up to `max` bytes from the front, without consuming them: a view of the buffer's own memory
   * (valid until the next `push` or `consume`), or a copy when they span two blocks.
   */
  peek(max: number): Buffer {
    const n = Math.min(max, this.bytes);
    if (n === 0) return Buffer.alloc(0);
    const first = this.blocks[0];
    const firstEnd = this.blocks.length === 1 ? this.tailFill : INPUT_BLOCK_SIZE;
    if (firstEnd - this.headOffset >= n) return first.subarray(this.headOffset, this.headOffset + n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let off = this.headOffset;
    for (let i = 0; i < this.blocks.length && filled < n; i++) {
      const end = i === this.blocks.length - 1 ? this.tailFill : INPUT_BLOCK_SIZE;
      const take = Math.min(end - off, n - filled);
      this.blocks[i].copy(out, filled, off, off + take);
      filled += take;
      off = 0;
    }
    return out;
  }

  /** Drop `n` bytes from the front (n ≤ length). */
  consume(n: number): void {
    if (n > this.bytes) throw new RangeError(`consume ${n} of ${this.bytes} buffered bytes`);
    this.bytes -= n;
    while (n > 0) {
      const end = this.blocks.length === 1 ? this.tailFill : INPUT_BLOCK_SIZE;
      const avail = end - this.headOffset;
      if (n < avail) {
        this.headOffset += n;
        return;
      }
      n -= avail;
      // Fully read (the tail block too: push() starts a new one when none is left).
      this.recycle(this.blocks.shift() as Buffer);
      this.headOffset = 0;
    }
  }

  private recycle(block: Buffer): void {
    if (this.spare.length < this.maxSpare) this.spare.push(block);
  }
}
