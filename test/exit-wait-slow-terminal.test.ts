/**
 * `exitAfterOutput` on a real terminal that takes its output slowly but steadily, as a serial
 * console does: the exit waits for as long as the terminal goes on taking output, and gives up
 * only once it has taken nothing for the wait's bound. The command's last write is one large
 * chunk, so the progress that keeps the wait going is libuv's partial writes inside it.
 */
import { expect } from 'chai';
import { ROOT } from './e2e-procs.js';
import { PtyProc } from './e2e-pty.js';

/** Bytes the command writes at exit, in one write: many times what the kernel's pty buffers hold. */
const PAYLOAD = 256 << 10;
/** The exit wait's bound in the command, ms: how long output may stand still. */
const WAIT_MS = 1500;
/** The slow reader takes what the terminal holds, then stops reading for this long, ms. */
const READER_PAUSE_MS = 50;

/** Waits for a line of input, then writes PAYLOAD bytes and a last line in one write and exits. */
const SCRIPT = [
  "import { asyncTerminalOutput, exitAfterOutput } from '@vshm/transport/cli';",
  'const why = asyncTerminalOutput("slow");',
  'if (why.stdout !== null) throw new Error(why.stdout);',
  'process.stdout.write("READY\\n");',
  'process.stdin.once("data", () => {',
  `  process.stdout.write("x".repeat(${PAYLOAD}) + "\\nEND\\n");`,
  `  void exitAfterOutput(0, ${WAIT_MS});`,
  '});',
].join('\n');

describe('exitAfterOutput on a slow terminal (node-pty)', function () {
  this.timeout(120_000);
  let p: PtyProc | null = null;
  afterEach(async () => {
    await p?.kill();
    p = null;
  });

  it('a terminal that goes on taking output, slowly, gets all of it before the exit', async () => {
    // Under a shell that keeps the terminal open after the command's exit and says how it
    // exited: what the terminal still holds then is read like the rest.
    const t = (p = new PtyProc('slow', '/bin/sh', ['-c', '"$@"; echo SLOW-EXIT-$?; read _', 'sh', process.execPath, '--input-type=module', '-e', SCRIPT], { cwd: ROOT }));
    await t.untilOutput(/READY\r?\n/);
    const before = t.output.length;
    t.pause();
    t.type('\r');
    // The terminal fills up with the payload, and the command's exit wait begins.
    await t.until(() => t.full(), 'the terminal to fill up');
    const t0 = Date.now();
    // Read what the terminal holds, then nothing for a while, until the command has exited.
    let reads = 0;
    while (!/SLOW-EXIT-\d+/.test(t.output)) {
      const shown = t.output.length;
      t.resume();
      await t.until(() => t.output.length > shown, 'more output');
      t.pause();
      reads++;
      await new Promise((resolve) => setTimeout(resolve, READER_PAUSE_MS));
    }
    t.resume();
    const shown = t.output.slice(before);
    expect(shown).to.match(/SLOW-EXIT-0/);
    // (full() may have put a '.' in between.)
    expect(shown.split('x').length - 1, 'every byte of the payload shown').to.equal(PAYLOAD);
    expect(shown).to.match(/END\r?\n/);
    // The reading took longer than the bound: a wait bounded in time alone would have lost the tail.
    expect(Date.now() - t0, `${reads} reads`).to.be.greaterThan(WAIT_MS);
  });
});
