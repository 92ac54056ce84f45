/**
 * Issue 10 item 7: `vshm-console-frontend -- COMMAND` runs the command on a pty (the default), as
 * a getty does on hvc0: it sees a tty, its input is echoed and line-edited, ^C typed on the
 * back-end's side interrupts its foreground job, and the device's size is the pty's size.
 * `--no-pty` keeps plain pipes. (Resizes after the start: packages/frontend-console/test/
 * attach-pty.test.ts in process, and test/npm-start.test.ts through a real terminal.)
 */
import { expect } from 'chai';
import { useScratch, until } from './e2e-procs.js';
import { foregroundJob } from './e2e-system.js';

describe('console front-end e2e: -- COMMAND on a pty', function () {
  const s = useScratch(this);

  it('the command sees a tty on stdin, stdout and stderr', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const fe = s.startFrontend(['--', '/bin/sh', '-c', 'test -t 0 && test -t 1 && test -t 2 && echo t""ty']);
    expect((await fe.exited).code).to.equal(0);
    await be.untilStdout(/tty\r\n/);
  });

  it('--no-pty gives the command pipes', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'test -t 0 || test -t 1 || echo p""ipes']);
    expect((await fe.exited).code).to.equal(0);
    await be.untilStdout(/^pipes\n$/);
  });

  it('echoes input and turns CR into a line end, like a terminal', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const fe = s.startFrontend(['--', '/bin/sh', '-c', 'echo re""ady; read line; echo "got:$line"']);
    await be.untilStdout(/ready/);
    // A raw terminal sends CR for Enter: the pty's ICRNL makes it a line end for `read`.
    be.write('abc\r');
    expect((await fe.exited).code).to.equal(0);
    await be.untilStdout(/got:abc/);
    expect(be.stdoutText).to.match(/ready\r\nabc\r\ngot:abc\r\n/); // "abc" echoed by the pty
  });

  it('applies the device size (config SIZE) to the pty', async () => {
    await s.startServer();
    const be = await s.startBackend(['--size', '100x30']);
    const fe = s.startFrontend(['--', 'stty', 'size']);
    expect((await fe.exited).code).to.equal(0);
    await be.untilStdout(/^30 100\r\n$/);
  });

  it('^C from the back-end interrupts the shell\'s foreground job, and the shell stays', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const fe = s.startFrontend(['--', '/bin/sh', '-i']);
    be.write('echo started-$((2+3)); sleep 600; echo not-inter""rupted\r');
    await be.untilStdout(/started-5/);
    // "started-5" does not mean `sleep` owns the pty yet: a ^C before that goes to the shell's
    // process group, which a sleep still between fork and exec survives (then it runs for 600 s).
    await until(() => foregroundJob(fe.child.pid!, ['sleep', '600']), 'sleep 600 as the foreground job of the pty');
    be.write('\x03');
    be.write('echo alive-$((1+1))\r');
    await be.untilStdout(/alive-2/);
    expect(be.stdoutText).to.not.include('not-interrupted');
  });

  it('a command that cannot be run: one line, exit 127', async () => {
    await s.startServer();
    await s.startBackend();
    const fe = s.startFrontend(['--', '/nonexistent/vshm-cmd']);
    expect((await fe.exited).code).to.equal(127);
    expect(fe.stderr).to.match(/^vshm-console-frontend: cannot run '\/nonexistent\/vshm-cmd': ENOENT \(no such file or directory\)\n$/);
  });

  it('a command that is a directory (--no-pty): one line naming the errno in words, exit 127', async () => {
    await s.startServer();
    await s.startBackend();
    const fe = s.startFrontend(['--no-pty', '--', s.dir]);
    expect((await fe.exited).code).to.equal(127);
    expect(fe.stderr).to.equal(`vshm-console-frontend: cannot run '${s.dir}': EACCES (permission denied)\n`);
  });
});
