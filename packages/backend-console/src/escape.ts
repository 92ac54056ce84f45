/**
 * The quit key sequence on a raw terminal: raw mode passes ^C to the front-end as a byte, so the
 * user needs another way out. Ctrl-] (0x1d) then `q` (or `Q`) quits; Ctrl-] Ctrl-] sends one
 * Ctrl-]; Ctrl-] followed by anything else sends both bytes (like telnet's escape character).
 *
 * `EscapeScanner` is the pure state machine: the CLI feeds it each chunk read from the terminal
 * and sends on what it returns (cli.ts terminalInput()), so it can be tested without streams.
 */

export const ESCAPE_BYTE = 0x1d;

export class EscapeScanner {
  private pending = false;

  /** Bytes to forward from `chunk`, and whether the quit sequence was seen (rest dropped). */
  scan(chunk: Uint8Array): { data: Buffer; quit: boolean } {
    const out: number[] = [];
    for (const b of chunk) {
      if (this.pending) {
        this.pending = false;
        if (b === 0x71 || b === 0x51) return { data: Buffer.from(out), quit: true };
        if (b === ESCAPE_BYTE) {
          out.push(ESCAPE_BYTE);
          continue;
        }
        out.push(ESCAPE_BYTE, b);
        continue;
      }
      if (b === ESCAPE_BYTE) this.pending = true;
      else out.push(b);
    }
    return { data: Buffer.from(out), quit: false };
  }
}
