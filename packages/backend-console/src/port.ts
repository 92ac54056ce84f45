/**
 * The host side of one console port (spec §7.2–7.3): a Readable the back-end reads input from
 * and a Writable the driver's output goes to. A port outlives driver sessions; so does its input
 * buffer, so a front-end that goes away loses nothing not yet delivered.
 *
 * Events:
 * - 'input' (): new bytes are in `buffer`.
 * - 'host-open' () / 'host-close' (): the host side was attached / detached (PORT_OPEN, §7.3).
 * - 'writable' (): output that was blocked by backpressure drained, or its dropping began.
 * - 'output-dropping' (): the host output pushed back for `dropBlockedOutputMs`; from now on the
 *   driver's output is discarded until it drains.
 * - 'output-resumed' (dropped: number, drained: boolean): dropping ended; `dropped` bytes of output
 *   were discarded. `drained` is true when the output drained (its reader took what was waiting),
 *   false when it went away instead (detached, replaced, or failed).
 */
import { EventEmitter } from 'node:events';
import { WriteStream } from 'node:fs';
import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { createLogger } from '@vshm/transport';
import { InputBuffer } from './input-buffer.js';

const debug = createLogger('vshm:console-be');

/** Size of a reusable output buffer: one transmit piece of the default front-end (64 KiB). */
export const OUTPUT_BUFFER_SIZE = 65536;
/**
 * Free output buffers kept per port (4 MiB at most). One wake-up may gather a whole transmitq's
 * worth (64 full chains in the bench) before the output calls back, so the pool has to hold that
 * many, or the surplus is allocated afresh on every wake-up. A port that never sees such bursts
 * never grows its pool; detaching the output drops it.
 */
const MAX_FREE_OUTPUT_BUFFERS = 64;

export interface ConsolePortAttachOptions {
  /**
   * The output keeps no reference to a chunk once that chunk's `write()` callback ran (a socket,
   * pipe, TTY or file: the kernel has the bytes), so the port may copy later transmit bytes into
   * the same memory. Saves a fresh 64 KiB allocation per transmit buffer: when glibc has handed
   * the freed heap back to the kernel, each one faults its 16 pages in again, which made up most
   * of the back-end's CPU in such runs. Default: true exactly for `net.Socket` outputs (TTYs and
   * child-process pipes included) and `fs.WriteStream`; false for every other Writable — a
   * PassThrough or a collecting sink keeps its chunks.
   */
  reuseOutputBuffers?: boolean;
}

export class ConsolePort extends EventEmitter {
  /** Port number: 0 is the console port, n ≥ 1 the named ports (MULTIPORT). */
  readonly id: number;
  /** PORT_NAME payload, or null for an unnamed port (port 0). */
  readonly name: string | null;
  readonly buffer: InputBuffer;

  private input: Readable | null = null;
  private output: Writable | null = null;
  /** We paused `input` because `buffer` was full. */
  private pausedByUs = false;
  private blocked = false;
  /** Free reusable output buffers (reuse mode only; every one OUTPUT_BUFFER_SIZE bytes). */
  private readonly freeOutput: Buffer[] = [];
  /** The current output's write-done callback, or null when chunks must not be reused. */
  private outputDone: ((err?: Error | null) => void) | null = null;
  /** Buffers the current output holds, in write order. */
  private outputInFlight: Buffer[] | null = null;
  private readonly onData = (chunk: Buffer | string): void => this.takeInput(chunk);
  /**
   * Discard output once the host side has pushed back this long (ms), until it drains; null:
   * never (nothing is lost, and the driver waits).
   */
  readonly dropBlockedOutputMs: number | null;
  /** Pending start of dropping while `blocked`. */
  private dropTimer: NodeJS.Timeout | null = null;
  /** Output is being discarded: blocked for longer than dropBlockedOutputMs. */
  private dropping = false;
  /** Bytes discarded since dropping began. */
  private dropped = 0;
  private readonly onDrain = (): void => this.unblock(true);
  private readonly onOutputError = (err: Error): void => {
    // EPIPE and friends: the host reader went away. That ends the output only: the input of the
    // same host side (the keyboard on port 0, a command's stdout) still has bytes for the device.
    debug('port %d: output error %s', this.id, err.message);
    this.dropOutput();
  };
  private readonly onInputError = (err: Error): void => {
    debug('port %d: input error %s', this.id, err.message);
  };

  constructor(id: number, name: string | null, bufferLimit: number, dropBlockedOutputMs: number | null = null) {
    super();
    this.id = id;
    this.name = name;
    this.buffer = new InputBuffer(bufferLimit);
    this.dropBlockedOutputMs = dropBlockedOutputMs;
  }

  /** Whether a host side is attached (a UNIX-socket client connected, the terminal, a command). */
  get hostOpen(): boolean {
    return this.input !== null || this.output !== null;
  }

  /**
   * True while the host output pushes back: the device stops taking transmit buffers. False again
   * once it drains, or once it has pushed back for `dropBlockedOutputMs` (output is then discarded).
   */
  get outputBlocked(): boolean {
    return this.blocked && !this.dropping;
  }

  /** Bytes the host output takes before it pushes back (Infinity without a host side, or while dropping). */
  get outputRoom(): number {
    if (this.output === null || this.dropping) return Infinity;
    return Math.max(0, this.output.writableHighWaterMark - this.output.writableLength);
  }

  /**
   * Attach a host side (either stream may be null). Replaces a previous one. Input starts
   * flowing immediately into `buffer`; the device delivers it when the driver is ready.
   */
  attach(input: Readable | null, output: Writable | null, opts: ConsolePortAttachOptions = {}): void {
    const wasOpen = this.hostOpen;
    this.release();
    this.input = input;
    this.output = output;
    const reuse = opts.reuseOutputBuffers ?? (output instanceof Socket || output instanceof WriteStream);
    if (output !== null && reuse) {
      // Write callbacks come in write order (stream.Writable), so a FIFO per output says which
      // buffer each one gives back; an output that never calls back only keeps its buffers.
      const inFlight: Buffer[] = [];
      const free = this.freeOutput;
      this.outputInFlight = inFlight;
      this.outputDone = () => {
        const b = inFlight.shift();
        if (b !== undefined && this.outputInFlight === inFlight && free.length < MAX_FREE_OUTPUT_BUFFERS) free.push(b);
      };
    }
    if (input !== null) {
      input.on('data', this.onData);
      input.on('error', this.onInputError);
      if (this.buffer.full) this.pauseInput();
      else input.resume();
    }
    if (output !== null) {
      output.on('drain', this.onDrain);
      output.on('error', this.onOutputError);
    }
    debug('port %d: host side attached', this.id);
    if (!wasOpen && this.hostOpen) this.emit('host-open');
  }

  /** Detach the host side (kept input stays buffered). Does not close or end the streams. */
  detach(): void {
    if (!this.hostOpen) return;
    this.release();
    debug('port %d: host side detached (%d bytes stay buffered)', this.id, this.buffer.length);
    this.emit('host-close');
  }

  /**
   * Output bytes from the driver. Returns false once the host output pushes back ('writable'
   * follows). Without a host side the bytes are discarded, as on a serial line nobody listens to.
   */
  write(bytes: Uint8Array): boolean {
    if (this.output === null) {
      debug('port %d: no host side, %d output bytes discarded', this.id, bytes.length);
      return true;
    }
    if (this.dropping) {
      this.dropped += bytes.length;
      return true;
    }
    if (bytes.length === 0) return !this.blocked;
    if (!this.output.write(bytes)) this.block();
    return !this.blocked;
  }

  /** Whether {@link outputBuffer} hands out reusable buffers (see ConsolePortAttachOptions). */
  get reusesOutputBuffers(): boolean {
    return this.outputDone !== null;
  }

  /**
   * A buffer of at least `len` bytes to gather output into, for {@link writeOutput}: a reused
   * one when the output allows it (and `len` ≤ OUTPUT_BUFFER_SIZE), else a fresh unzeroed one.
   * The caller overwrites every byte it passes on.
   */
  outputBuffer(len: number): Buffer {
    if (this.outputDone !== null && len <= OUTPUT_BUFFER_SIZE) return this.freeOutput.pop() ?? Buffer.allocUnsafe(OUTPUT_BUFFER_SIZE);
    return Buffer.allocUnsafe(len);
  }

  /**
   * Output the first `len` bytes of `buf` (from {@link outputBuffer}); a reusable `buf` goes back
   * to the pool once the output called back. Same result as write().
   */
  writeOutput(buf: Buffer, len: number): boolean {
    const done = this.outputDone;
    if (done === null || this.output === null || len === 0 || buf.length !== OUTPUT_BUFFER_SIZE) {
      return this.write(len === buf.length ? buf : buf.subarray(0, len));
    }
    if (this.dropping) {
      this.dropped += len;
      if (this.freeOutput.length < MAX_FREE_OUTPUT_BUFFERS) this.freeOutput.push(buf); // never written out
      return true;
    }
    (this.outputInFlight as Buffer[]).push(buf);
    if (!this.output.write(buf.subarray(0, len), done)) this.block();
    return !this.blocked;
  }

  /** The host output pushed back: start the clock of dropBlockedOutputMs. */
  private block(): void {
    this.blocked = true;
    if (this.dropBlockedOutputMs === null || this.dropTimer !== null || this.dropping) return;
    this.dropTimer = setTimeout(() => {
      this.dropTimer = null;
      if (!this.blocked || this.output === null) return;
      debug('port %d: host output blocked for %d ms, discarding output until it drains', this.id, this.dropBlockedOutputMs);
      this.dropping = true;
      this.dropped = 0;
      this.emit('output-dropping');
      this.emit('writable'); // the device takes transmit buffers again
    }, this.dropBlockedOutputMs);
    this.dropTimer.unref();
  }

  /** The host output drained (`drained`), or is gone: stop any dropping and tell the device. */
  private unblock(drained: boolean): void {
    if (this.dropTimer !== null) clearTimeout(this.dropTimer);
    this.dropTimer = null;
    const wasDropping = this.dropping;
    this.dropping = false;
    this.blocked = false;
    if (wasDropping) this.emit('output-resumed', this.dropped, drained);
    this.emit('writable');
  }

  /** The device consumed buffered input: resume a source paused for backpressure. */
  drained(): void {
    if (this.pausedByUs && !this.buffer.full && this.input !== null) {
      this.pausedByUs = false;
      this.input.resume();
    }
  }

  private takeInput(chunk: Buffer | string): void {
    this.buffer.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    if (this.buffer.full) this.pauseInput();
    this.emit('input');
  }

  /**
   * Stop using the output (it failed); the input stays attached. From now on output is
   * discarded as without a host side; with no input left the host side is closed.
   */
  private dropOutput(): void {
    const output = this.output;
    if (output === null) return;
    if (this.input === null) {
      this.detach();
      return;
    }
    output.off('drain', this.onDrain);
    output.off('error', this.onOutputError);
    this.output = null;
    this.outputDone = null;
    this.outputInFlight = null; // buffers the failed output still holds are never reused
    this.freeOutput.length = 0;
    if (this.blocked) this.unblock(false);
  }

  private pauseInput(): void {
    if (this.input === null) return;
    debug('port %d: %d input bytes wait for the driver, input paused', this.id, this.buffer.length);
    this.pausedByUs = true;
    this.input.pause();
  }

  private release(): void {
    if (this.input !== null) {
      this.input.off('data', this.onData);
      this.input.off('error', this.onInputError);
      this.input.pause();
    }
    if (this.output !== null) {
      this.output.off('drain', this.onDrain);
      this.output.off('error', this.onOutputError);
    }
    this.input = null;
    this.output = null;
    this.outputDone = null;
    this.outputInFlight = null; // buffers the old output still holds are never reused
    this.freeOutput.length = 0;
    this.pausedByUs = false;
    if (this.blocked) this.unblock(false);
  }
}
