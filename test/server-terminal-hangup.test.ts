/**
 * Issue 10 item 6: `vshm-server -v` in a terminal that is closed (tmux server killed: the kernel
 * hangs up the pane's session with SIGHUP, and later writes to the terminal fail with EIO) stops
 * cleanly: the socket, the pid file and the `-M` object are removed and the process is gone.
 * (SIGHUP with stderr on a pipe — exit 0, PEER_GONE to peers — is conformance/08.)
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import binding from '@vshm/addon';
import { SERVER_BIN, useScratch } from './e2e-procs.js';
import { alive, processesMentioning, until } from './e2e-system.js';

describe('vshm-server: its terminal closing (SIGHUP)', function () {
  const s = useScratch(this);

  it('removes the socket, pid file and -M object, and exits', async () => {
    const sock = s.server;
    const pid = s.path('server.pid');
    const name = `/vshm-hup-${process.pid}-${Date.now().toString(36)}`;
    const t = s.tmux(`${process.execPath} ${SERVER_BIN} -v -S ${sock} -p ${pid} -M ${name} -l 64K`);
    await t.untilPane(/listening on/);
    const pids = processesMentioning(sock); // the server (and the pane's sh -c, if any)
    expect(pids).to.not.deep.equal([]);
    t.kill();
    await until(() => pids.filter(alive).length === 0, 'the server gone');
    expect(existsSync(sock), 'socket removed').to.equal(false);
    expect(existsSync(pid), 'pid file removed').to.equal(false);
    let err: unknown;
    try {
      binding.close(binding.shmOpen(name, binding.O_RDWR, 0));
      binding.shmUnlink(name);
    } catch (e) {
      err = e;
    }
    expect(err, '-M object unlinked').to.have.property('code', 'ENOENT');
  });
});
