/**
 * vshm-console-frontend on a terminal (tmux): Ctrl-] q quits even after a paste the back-end does
 * not take (it is gone), where pausing the terminal for back-pressure would hide the quit key.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { FRONTEND_BIN, useScratch } from './e2e-procs.js';

describe('console front-end e2e: terminal input nobody takes (tmux)', function () {
  const s = useScratch(this);

  it('Ctrl-] q still quits after a 4 MiB paste while the back-end is gone; the drop is said', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const t = s.tmux(`${process.execPath} ${FRONTEND_BIN} -S ${s.server}; echo FE-EXIT-$?`);
    await be.untilStderr(/front-end connected/);
    await be.kill('SIGKILL');
    // More than the port's writable buffer (1 MiB), what the front-end holds for a back-end, and the
    // terminal backlog in front of the port (1 MiB).
    const paste = s.path('paste.txt');
    writeFileSync(paste, `${'x'.repeat(63)}\n`.repeat(65536));
    t.run('load-buffer', '-b', 'big', paste);
    t.run('paste-buffer', '-b', 'big', '-t', t.name);
    t.send('C-]');
    t.send('q');
    const pane = await t.untilPane(/FE-EXIT-\d+/);
    expect(pane).to.match(/FE-EXIT-0/);
    expect(pane).to.match(/terminal input dropped/);
  });
});
