/**
 * The `vshm-server` CLI in a child process (spec §1.9), beyond the §8 checklist (whose CLI side of
 * items 8–12 is in conformance/08–12): the small-R/W warning, runtime failures, fd hygiene. Tests
 * wait for stderr lines, the child's exit or messages — never a sleep.
 */
import { expect } from 'chai';
import { countFds } from '../helpers/raw-client.js';
import { useCliRig } from '../helpers/server-cli-rig.js';

describe('vshm-server CLI (§1.9; §8 items 8–12 are in conformance/08–12)', function () {
  const rig = useCliRig();
  const { sock, server, ready, connect } = rig;

  it('warns about a virtio protocol whose R/W section is below 8 KiB', async () => {
    const c = await ready(['-S', sock(), '-l', '8K', '-P', '0x8003']);
    expect(c.stderrLines()[0]).to.match(/^vshm-server: warning: .*8192/);
  });

  it('a runtime failure exits 1', async () => {
    const c = server(['-S', '/nonexistent-vshm-dir/x.sock']);
    expect((await c.exit).code).to.equal(1);
    expect(c.stderrLines()).to.have.length(1);
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
});
