/**
 * Attach a console port to this process's terminal: stdin → port, port → stdout.
 *
 * On a TTY stdin goes to raw mode (so ^C, ^D, ^Z reach the other side as bytes, like a serial
 * console) and an escape sequence quits: Ctrl-] then `q` (or `.`). Ctrl-] Ctrl-] sends one
 * Ctrl-]; Ctrl-] followed by anything else sends both bytes. The mode is restored on every exit
 * path (`restore()`, and process 'exit' as a last resort). A TTY is never paused, so the quit
 * key is always seen: input the port does not take yet waits here (TERMINAL_BACKLOG_LIMIT), and
 * beyond that is dropped with a line. Without a TTY the bytes pass through untouched
 * (binary-safe, with plain back-pressure) and stdin EOF does not end the session: output keeps
 * flowing.
 */
import type { Duplex } from 'node:stream';
import type { ReadStream } from 'node:tty';
import { createAttachment, type Attachment } from './attachment.js';

/** Ctrl-] (GS, 0x1d), as in telnet and `virsh console`. */
export const ESCAPE_BYTE = 0x1d;
const QUIT_KEYS = new Set([0x71 /* q */, 0x51 /* Q */, 0x2e /* . */]);

/**
 * The escape-sequence filter as a pure state machine: feed input bytes, get the bytes to send
 * and whether the user asked to quit (bytes after the quit key are dropped).
 */
export class EscapeFilter {
  private pendingEscape = false;

  feed(chunk: Uint8Array): { data: Uint8Array; quit: boolean } {
    const out: number[] = [];
    for (const b of chunk) {
      if (this.pendingEscape) {
        this.pendingEscape = false;
        if (QUIT_KEYS.has(b)) return { data: Uint8Array.from(out), quit: true };
        out.push(ESCAPE_BYTE);
        if (b !== ESCAPE_BYTE) out.push(b);
      } else if (b === ESCAPE_BYTE) {
        this.pendingEscape = true;
      } else {
        out.push(b);
      }
    }
    return { data: Uint8Array.from(out), quit: false };
  }
}

/**
 * Terminal input held in front of a port that pushes back, at most. A TTY is read all the time
 * so that Ctrl-] q is seen whatever the back-end does (pausing it would hide the quit key behind
 * a paste); past this backlog typed bytes are dropped, with a line.
 */
export const TERMINAL_BACKLOG_LIMIT = 1 << 20;

export function attachTerminal(
  port: Duplex,
  stdin: NodeJS.ReadableStream & Partial<Pick<ReadStream, 'isTTY' | 'setRawMode'>> = process.stdin,
  stdout: NodeJS.WritableStream = process.stdout,
): Attachment {
  const tty = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  const restore = (): void => {
    if (tty) stdin.setRawMode?.(false);
  };
  if (tty) {
    stdin.setRawMode?.(true);
    process.once('exit', restore);
  }
  const filter = tty ? new EscapeFilter() : null;
  const { attachment, finish } = createAttachment(() => {
    stdin.off('data', onData);
    port.off('drain', onDrain); // a late drain must not resume stdin after we let go of it
    stdin.pause();
    port.unpipe(stdout);
    stdout.off('error', onOutError);
    restore();
    process.off('exit', restore);
    if (dropped > 0) process.stderr.write(`vshm-console-frontend: ${dropped} bytes of terminal input were dropped (the back-end was not taking them)\n`);
  });
  /** TTY input waiting for the port to drain, in order, and its size; bytes dropped. */
  const held: Uint8Array[] = [];
  let heldBytes = 0;
  let blocked = false;
  let dropping = false;
  let dropped = 0;
  const send = (data: Uint8Array): void => {
    if (blocked) {
      if (heldBytes + data.length <= TERMINAL_BACKLOG_LIMIT) {
        held.push(data);
        heldBytes += data.length;
        dropping = false;
      } else {
        dropped += data.length;
        if (!dropping) {
          dropping = true;
          process.stderr.write(`vshm-console-frontend: terminal input dropped: the back-end is not taking it (${TERMINAL_BACKLOG_LIMIT >> 10} KiB waiting); Ctrl-] q still quits\r\n`);
        }
      }
      return;
    }
    if (!port.write(data)) {
      blocked = true;
      port.once('drain', onDrain);
    }
  };
  const onData = (chunk: Buffer): void => {
    let data: Uint8Array = chunk;
    if (filter !== null) {
      const r = filter.feed(chunk);
      data = r.data;
      if (r.quit) {
        if (data.length > 0) send(data);
        finish(0);
        return;
      }
      if (data.length > 0) send(data);
      return;
    }
    // Not a TTY: no quit key to watch for, so plain back-pressure (never dropped).
    if (data.length > 0 && !port.write(data)) {
      stdin.pause();
      port.off('drain', onDrain);
      port.once('drain', onDrain);
    }
  };
  const onDrain = (): void => {
    if (filter === null) {
      stdin.resume();
      return;
    }
    blocked = false;
    while (held.length > 0 && !blocked) {
      const data = held.shift() as Uint8Array;
      heldBytes -= data.length;
      if (!port.write(data)) {
        blocked = true;
        port.once('drain', onDrain);
      }
    }
  };
  stdin.on('data', onData);
  // stdout gone (EPIPE: `… | head`): the reader left, end the session instead of crashing.
  const onOutError = (): void => finish(0);
  stdout.on('error', onOutError);
  port.pipe(stdout, { end: false });
  return attachment;
}
