/**
 * vshm-console-backend on a real terminal (tmux): SIZE from the terminal, resize propagation to
 * a front-end (config update without MULTIPORT, RESIZE with it), Ctrl-] q restoring the terminal.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { openConsole, type Console } from '@vshm/frontend-console';
import { useScratch, BACKEND_BIN, until } from './e2e-procs.js';

describe('vshm-console-backend on a terminal (tmux)', function () {
  let con: Console | null = null;
  afterEach(async () => {
    await con?.close();
    con = null;
  });
  const s = useScratch(this); // cleans up after the hook above

  for (const multiport of [false, true]) {
    it(`propagates a terminal resize to the front-end (${multiport ? 'RESIZE with MULTIPORT' : 'config update'})`, async () => {
      await s.startServer();
      const extra = multiport ? ' --port org.vshm.extra' : '';
      const t = s.tmux(`${process.execPath} ${BACKEND_BIN} -S ${s.server}${extra}`, 120, 40);
      await t.untilPane(/serving the console on/);
      con = await openConsole({ socketPath: s.server });
      await con.whenReady();
      const c = con;
      await until(() => c.driver.size?.cols === 120 && c.driver.size?.rows === 40, `initial size 120x40, have ${JSON.stringify(c.driver.size)}`);
      if (multiport) expect((await c.driver.waitForPort('org.vshm.extra')).id).to.equal(1);
      t.run('resize-window', '-t', t.name, '-x', '100', '-y', '30');
      await until(() => c.driver.size?.cols === 100 && c.driver.size?.rows === 30, `resized 100x30, have ${JSON.stringify(c.driver.size)}`);
    });
  }

  it('--resize-order rows-cols: RESIZE goes out rows first (a front-end reading the VIRTIO order sees the two swapped)', async () => {
    await s.startServer();
    const t = s.tmux(`${process.execPath} ${BACKEND_BIN} -S ${s.server} --port org.vshm.extra --resize-order rows-cols`, 120, 40);
    await t.untilPane(/serving the console on/);
    con = await openConsole({ socketPath: s.server });
    await con.whenReady();
    const c = con;
    await until(() => c.driver.size?.cols === 40 && c.driver.size?.rows === 120, `swapped initial size 40x120, have ${JSON.stringify(c.driver.size)}`);
    t.run('resize-window', '-t', t.name, '-x', '100', '-y', '30');
    await until(() => c.driver.size?.cols === 30 && c.driver.size?.rows === 100, `swapped 30x100, have ${JSON.stringify(c.driver.size)}`);
  });

  it('quits on Ctrl-] q with exit 0 and the terminal back in cooked mode', async () => {
    await s.startServer();
    const t = s.tmux(`${process.execPath} ${BACKEND_BIN} -S ${s.server}; echo BE-EXIT-$?; stty -a`);
    await t.untilPane(/serving the console on .*quit with Ctrl-\] q/);
    t.send('C-]');
    t.send('q');
    const pane = await t.untilPane(/BE-EXIT-\d+[\s\S]*icanon/);
    expect(pane).to.match(/BE-EXIT-0/);
    expect(pane).to.match(/(^|\s)icanon(\s|$)/m);
    expect(pane).to.match(/(^|\s)echo(\s|$)/m);
  });

  it('Ctrl-] q still quits after a paste larger than the input buffer while no front-end reads', async () => {
    await s.startServer();
    const t = s.tmux(`${process.execPath} ${BACKEND_BIN} -S ${s.server}; echo BE-EXIT-$?`);
    await t.untilPane(/serving the console on .*quit with Ctrl-\] q/);
    // 2 MiB of text: more than the back-end's input buffer (64 KiB) and the terminal backlog it
    // holds in front of it (1 MiB) — with nobody reading, the rest is dropped, with a line.
    const paste = s.path('paste.txt');
    writeFileSync(paste, `${'x'.repeat(63)}\n`.repeat(32768));
    t.run('load-buffer', '-b', 'big', paste);
    t.run('paste-buffer', '-b', 'big', '-t', t.name);
    t.send('C-]');
    t.send('q');
    const pane = await t.untilPane(/BE-EXIT-\d+/);
    expect(pane).to.match(/BE-EXIT-0/);
    expect(pane).to.match(/terminal input .*dropped/);
  });
});
