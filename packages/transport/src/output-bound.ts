/**
 * The bound on what a terminal's stderr, once written asynchronously, holds in memory while the
 * terminal takes nothing (`asyncTerminalOutput` of the CLI kit puts it on `process.stderr`). Not
 * a door of its own: the kit's `maxQueuedStderr` option is its only public knob, and the wrapper
 * assumes what stderr is — a byte stream (not object mode) every part of the process writes to.
 */
import type { Writable } from 'node:stream';

/**
 * What a terminal's stderr may hold queued by default, bytes: some ten thousand lines of
 * diagnostics — minutes of `-v` or `DEBUG` chatter — and at most 1 MiB of memory for a terminal
 * that stalled for hours; beyond that, what was said matters less than how much.
 */
const MAX_QUEUED_STDERR = 1 << 20;

/**
 * Marks a stream `boundQueuedOutput` has bounded (a registered symbol: every copy of the kit sees
 * it); its value is the bound's state: whether a notice of dropped writes is still owed.
 */
const BOUNDED = Symbol.for('vshm.cli.boundQueuedOutput');

interface BoundState {
  /** Writes dropped since the last notice: a notice is owed while this is non-zero. */
  messages: number;
}

type Bounded = Writable & { [BOUNDED]?: BoundState };

/**
 * Whether `stream` still owes a notice of writes it dropped (its end marker, an empty write, is
 * queued, so `writableLength` may read 0 while the notice is still to come): what the kit's exit
 * wait checks before it calls a stream done.
 */
export function dropNoticeOwed(stream: NodeJS.WritableStream): boolean {
  return ((stream as Bounded)[BOUNDED]?.messages ?? 0) > 0;
}

/**
 * Bound what `stream` (a terminal's stderr, written asynchronously) holds queued in memory: a
 * write that finds `maxQueued` bytes or more queued (`writableLength`, never below the stream's
 * high-water mark; a terminal stream counts a string by its characters) is dropped and counted —
 * its callback still called, without an error, on the next tick; `write()` returns false, and
 * 'drain' follows as for any full stream. Once what was queued when dropping began has been
 * written, one line says how much was dropped: `PROG: N messages (B bytes) were dropped while the
 * terminal took no output`. A zero-length write always passes (an empty write's callback marks
 * the end of what is queued: the kit's `exitAfterOutput`), and so does what Node refuses (a write
 * after `end()`, on a destroyed stream, of a wrong chunk): its error, not a silent drop; the line
 * is not written to a stream that has ended meanwhile.
 * Everything that writes to the stream goes through this: `debug`, `console.error`, the process's
 * warnings, a command's own lines. Idempotent: a stream is bounded once, by the first call.
 *
 * Node's writable streams have no bounded mode (a high-water mark only advises the writer), and
 * most writers of stderr never look at `write()`'s result, so the instance's `write` is wrapped.
 */
export function boundQueuedOutput(stream: Writable, prog: string, maxQueued = MAX_QUEUED_STDERR): void {
  const s = stream as Bounded;
  if (s[BOUNDED] !== undefined) return;
  const state: BoundState = { messages: 0 };
  s[BOUNDED] = state;
  const limit = Math.max(maxQueued, s.writableHighWaterMark);
  const write = s.write as (this: Writable, ...args: unknown[]) => boolean;
  let bytes = 0;
  const report = (err?: Error | null): void => {
    const messages = state.messages;
    const line = `${prog}: ${messages} ${messages === 1 ? 'message' : 'messages'} (${bytes} bytes) ${messages === 1 ? 'was' : 'were'} dropped while the terminal took no output\n`;
    state.messages = bytes = 0;
    // Not after end(): Node would answer a write then with an 'error' on the stream.
    if (err == null && !s.writableEnded && !s.destroyed) write.call(s, line);
  };
  s.write = ((...args: unknown[]): boolean => {
    const [chunk, encoding, cb] = args;
    // Only what Node would queue is dropped: a write it refuses (after end(), on a destroyed or
    // failed stream, a chunk or encoding it does not take) gets Node's own answer.
    if (s.writableLength < limit || s.writableEnded || s.destroyed || s.errored != null) return write.apply(s, args);
    const size = byteLength(chunk, encoding);
    if (size === null || size === 0) return write.apply(s, args);
    // The first drop: what is queued now ends with an empty write, whose callback says how much.
    if (state.messages++ === 0) write.call(s, '', report);
    bytes += size;
    const done = typeof encoding === 'function' ? encoding : cb;
    if (typeof done === 'function') process.nextTick(done as (err: null) => void, null);
    return false;
  }) as Writable['write'];
}

/**
 * The bytes of a write of `chunk` (a string in `encoding`, or bytes); null for what a byte
 * stream's `write()` refuses (another type of chunk, an unknown encoding).
 */
function byteLength(chunk: unknown, encoding: unknown): number | null {
  const enc = typeof encoding === 'string' && encoding !== '' ? encoding : 'utf8';
  if (enc !== 'buffer' && !Buffer.isEncoding(enc)) return null;
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, enc === 'buffer' ? 'utf8' : enc);
  return ArrayBuffer.isView(chunk) ? chunk.byteLength : null; // Node 20 takes any view
}
