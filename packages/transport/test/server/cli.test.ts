/**
 * The `vshm-server` CLI in a child process (spec §1.9), beyond the §8 checklist (whose CLI side of
 * items 8–12 is in conformance/08–12): the small-R/W warning, runtime failures, fd hygiene. Tests
 * wait for stderr lines, the child's exit or messages — never a sleep.
 */
import { expect } from 'chai';
import { existsSync, rmSync, statSync } from 'node:fs';
import { countFds } from '../fixtures/raw-client.js';
import { useCliRig } from '../fixtures/server-cli-rig.js';

describe('vshm-server CLI (§1.9; §8 items 8–12 are in conformance/08–12)', function () {
  const rig = useCliRig();
  const { sock, server, ready, connect } = rig;

  it('warns about a virtio protocol whose R/W section is below 8 KiB', async () => {
    const c = await ready(['-S', sock(), '-l', '8K', '-P', '0x8003']);
    expect(c.stderrLines()[0]).to.match(/^vshm-server: warning: .*8192/);
  });

  it('a runtime failure exits 1 with one line naming the path and the errno', async () => {
    const c = server(['-S', '/nonexistent-vshm-dir/x.sock']);
    expect((await c.exit).code).to.equal(1);
    expect(c.stderrLines()).to.deep.equal(['vshm-server: cannot bind /nonexistent-vshm-dir/x.sock: ENOENT (no such file or directory)']);
  });

  it('-m DIR that does not exist names the directory and the errno', async () => {
    const c = server(['-S', sock(), '-m', '/nonexistent-vshm-dir']);
    expect((await c.exit).code).to.equal(1);
    expect(c.stderrLines()).to.deep.equal(['vshm-server: cannot create memory in /nonexistent-vshm-dir: ENOENT (no such file or directory)']);
  });

  it('-p in a missing directory names the pid file and the errno, and leaves no socket', async () => {
    const path = sock();
    const c = server(['-S', path, '-p', '/nonexistent-vshm-dir/x.pid']);
    expect((await c.exit).code).to.equal(1);
    expect(c.stderrLines()).to.deep.equal(['vshm-server: cannot create pid file /nonexistent-vshm-dir/x.pid: ENOENT (no such file or directory)']);
    expect(existsSync(path)).to.equal(false);
  });

  it('-M NAME that a running server holds: exit 1 with one line; that server keeps its object, not resized', async () => {
    const name = `/vshm-cli-in-use-${process.pid}`;
    try {
      const first = await ready(['-S', sock(), '-M', name, '-l', '64K']);
      const second = server(['-S', sock(), '-M', name, '-l', '128K']);
      // Whichever comes first: its exit, or (the defect) its ready line.
      const outcome = await Promise.race([second.exit, second.line(/listening on/).then(() => 'listening', () => new Promise<never>(() => {}))]);
      expect(outcome, second.stderrLines().join('\n')).to.deep.equal({ code: 1, signal: null });
      expect(second.stderrLines()).to.deep.equal([
        `vshm-server: shared memory object ${name} is in use by process ${first.proc.pid} (another vshm-server?); refusing to reuse it`,
      ]);
      expect(statSync(`/dev/shm${name}`).size).to.equal(65536);
      first.proc.kill('SIGTERM');
      expect((await first.exit).code).to.equal(0);
      expect(existsSync(`/dev/shm${name}`)).to.equal(false);
    } finally {
      // A failed run leaves its servers to the rig's SIGKILL: remove the object here.
      rmSync(`/dev/shm${name}`, { force: true });
    }
  });

  it('--help prints usage on stdout and exits 0; --bogus is one line with (try --help), exit 2', async () => {
    const h = server(['--help']);
    expect((await h.exit).code).to.equal(0);
    expect(h.stdout()).to.match(/^Usage: vshm-server/);
    expect(h.stderrLines()).to.deep.equal([]);
    const b = server(['--bogus']);
    expect((await b.exit).code).to.equal(2);
    expect(b.stderrLines()).to.deep.equal(["vshm-server: unknown option '--bogus' (try --help)"]);
  });

  it('leaks no fds in the server process as clients come, get refused and go', async () => {
    const path = sock();
    const c = await ready(['-v', '-S', path, '-V', '3']);
    const pid = c.proc.pid!;
    let n = 0;
    const cycle = async (): Promise<void> => {
      const a = connect(path);
      await a.take(4);
      const b = connect(path);
      await b.take(7);
      const x = connect(path);
      await x.untilEof();
      a.close();
      await b.next();
      b.write(Buffer.from([1]));
      n++;
      await c.lines(/peer 1 gone/, n);
      rig.closeClients();
    };
    await cycle();
    const before = countFds(pid);
    await cycle();
    await cycle();
    expect(countFds(pid)).to.equal(before);
  });
  it('without -v, a connection refused for want of a free id is one warning line, rate limited (§1.4)', async () => {
    const path = sock();
    const c = await ready(['-S', path]);
    const a = connect(path);
    await a.take(2);
    const b = connect(path);
    await b.take(3);
    // Twelve newcomers while both ids are held: each is closed at once without a message (§1.4).
    for (let k = 0; k < 12; k++) await connect(path).untilEof();
    c.proc.kill('SIGTERM');
    expect((await c.exit).code).to.equal(0);
    const refused = c.stderrLines().filter((l) => l.includes('refused'));
    expect(refused, c.stderrLines().join('\n')).to.deep.equal([
      ...Array<string>(5).fill('vshm-server: warning: connection refused: all 2 peer ids in use (-n 2)'),
      'vshm-server: warning: 7 more refused-connection warnings suppressed in 10 s',
    ]);
  });
});
