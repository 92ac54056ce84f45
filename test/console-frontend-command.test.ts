/**
 * End to end: `vshm-console-frontend -S s -- COMMAND` runs a command with the port as its stdio
 * (pipes); its output comes out of the back-end's stdout, the back-end's stdin reaches it, and
 * the front-end exits with its status.
 */
import { expect } from 'chai';
import { useScratch } from './e2e-procs.js';

describe('console front-end e2e: -- COMMAND', function () {
  const s = useScratch(this);

  it("runs /bin/sh -c 'echo hi; ...' and exits with its status", async () => {
    await s.startServer();
    const be = await s.startBackend();
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo hi; echo err >&2; exit 3']);
    const { code } = await fe.exited;
    expect(code).to.equal(3);
    await be.until(() => be.stdout.toString().includes('hi\n') && be.stdout.toString().includes('err\n'), 'command output');
    expect(be.stdout.toString()).to.match(/hi\n/);
  });

  it('feeds the back-end stdin to the command (a getty-like shell)', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'read line; echo "got:$line"']);
    be.child.stdin?.write('abc\n');
    const { code } = await fe.exited;
    expect(code).to.equal(0);
    await be.until(() => be.stdout.toString().includes('got:abc'), 'reply');
  });

  it('round-trips binary data through `-- cat`', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const fe = s.startFrontend(['--no-pty', '--', 'cat']);
    const data = Buffer.alloc(256 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
    be.child.stdin?.write(data);
    await be.until(() => be.stdoutLength >= data.length, 'echoed bytes');
    expect(be.stdout.equals(data)).to.equal(true);
    expect(fe.running).to.equal(true);
  });
});
