/**
 * Attach a console port to this process's terminal: stdin → port, port → stdout.
 *
 * On a TTY stdin goes to raw mode (so ^C, ^D, ^Z reach the other side as bytes, like a serial
 * console) and an escape sequence quits: Ctrl-] then `q` (or `.`). Ctrl-] Ctrl-] sends one
 * Ctrl-]; Ctrl-] followed by anything else sends both bytes. The mode is restored on every exit
 * path (`restore()`, and process 'exit' as a last resort). Without a TTY the bytes pass through
 * untouched (binary-safe) and stdin EOF does not end the session: output keeps flowing.
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
  });
  const onData = (chunk: Buffer): void => {
    let data: Uint8Array = chunk;
    if (filter !== null) {
      const r = filter.feed(chunk);
      data = r.data;
      if (r.quit) {
        if (data.length > 0) port.write(data);
        finish(0);
        return;
      }
    }
    if (data.length > 0 && !port.write(data)) {
      stdin.pause();
      port.off('drain', onDrain);
      port.once('drain', onDrain);
    }
  };
  const onDrain = (): void => {
    stdin.resume();
  };
  stdin.on('data', onData);
  // stdout gone (EPIPE: `… | head`): the reader left, end the session instead of crashing.
  const onOutError = (): void => finish(0);
  stdout.on('error', onOutError);
  port.pipe(stdout, { end: false });
  return attachment;
}
