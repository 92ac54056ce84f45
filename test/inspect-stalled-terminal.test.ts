/**
 * `vshm-inspect --watch` on a terminal that stops taking output (node-pty, its master side no
 * longer read; a user's Ctrl-S does the same). Node writes a terminal synchronously unless told
 * otherwise, so the next snapshot held the inspector in write(2), where the Ctrl-C that follows
 * never reached it: it hung until the terminal read again. Now the terminal is written
 * asynchronously (the kit's asyncTerminalOutput), snapshots are skipped while one is queued, and
 * SIGINT ends the watch within the exit's bound.
 */
import { expect } from 'chai';
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { STATE_TABLE_SIZE } from '@vshm/transport/inspect';
import { ROOT } from './e2e-procs.js';
import { alive } from './e2e-system.js';
import { PtyProc } from './e2e-pty.js';

const INSPECT_BIN = join(ROOT, 'packages/inspect/bin/vshm-inspect.js');
/** exitAfterOutput's bound on an exit whose output does not move, plus room for a loaded machine. */
const EXIT_BOUND_MS = 2000 + 8000;
const STEP_MS = 30_000;

describe('vshm-inspect --watch on a terminal that stops reading (node-pty)', function () {
  this.timeout(60_000);
  const name = `vshm-inspect-stall-${process.pid}`;
  let p: PtyProc | null = null;
  before(() => {
    const fd = openSync(`/dev/shm/${name}`, 'w', 0o600);
    writeSync(fd, Buffer.alloc(STATE_TABLE_SIZE + 4096));
    closeSync(fd);
  });
  after(() => unlinkSync(`/dev/shm/${name}`));
  afterEach(async () => {
    await p?.kill();
    p = null;
  });

  it('SIGINT while its terminal is full ends it within the bound, with status 0 once the terminal reads again', async () => {
    // The script shows the status; it ends with `read` because node-pty may drop what a process
    // printed just before it exited.
    const pty = new PtyProc('inspect', '/bin/sh', ['-c', '"$@"; echo IN-EXIT-$?; read wait', 'sh', process.execPath, INSPECT_BIN, '-M', name, '--watch', '10']);
    p = pty;
    await pty.untilOutput(/state table/i, STEP_MS);
    const pid = pty.childRunning(INSPECT_BIN);
    await pty.stall();
    // Snapshots every 10 ms meet a full terminal; the inspector must still be reachable.
    const t0 = Date.now();
    process.kill(pid, 'SIGINT');
    await pty.until(() => !alive(pid), 'vshm-inspect to exit after SIGINT', STEP_MS);
    const took = Date.now() - t0;
    pty.resume();
    await pty.untilOutput(/IN-EXIT-\d+/, STEP_MS);
    expect(pty.output).to.match(/IN-EXIT-0/);
    expect(took).to.be.below(EXIT_BOUND_MS);
  });
});
