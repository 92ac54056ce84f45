/**
 * §8 item 8: SIGTERM (and SIGINT, SIGHUP — a closed terminal) sends PEER_GONE for each departing
 * peer, removes the socket file, exits 0 (§1.7, §1.9). The in-process shutdown order is also asserted by 02-server-newcomer-burst.
 */
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import binding from '@vshm/addon';
import { tmpPath } from '../fixtures/raw-client.js';
import { useCliRig } from '../fixtures/server-cli-rig.js';

describe('§8 item 8: SIGTERM sends PEER_GONE, removes the socket, exits 0', function () {
  describe('vshm-server CLI in a child process (§1.9)', function () {
    const rig = useCliRig();
    const { sock, ready, connect } = rig;

    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      it(`item 8: ${sig} sends PEER_GONE for departing peers, removes socket, pid file and -M object, exits 0`, async () => {
        const path = sock();
        const pid = tmpPath('cli', '.pid');
        rig.paths.push(pid);
        const name = `/vshm-cli-${process.pid}-${Date.now().toString(36)}`;
        const c = await ready(['-S', path, '-p', pid, '-M', name, '-l', '64K', '-V', '2']);
        expect(readFileSync(pid, 'utf8')).to.equal(`${c.proc.pid}\n`);
        const a = connect(path);
        await a.take(3);
        const b = connect(path);
        await b.take(5);
        await a.take(2);
        c.proc.kill(sig);
        expect(await c.exit).to.deep.equal({ code: 0, signal: null });
        expect((await a.untilEof()).map((m) => m.msg)).to.deep.equal([]);
        expect((await b.untilEof()).map((m) => m.msg)).to.deep.equal([{ type: 2, len: 12, id: 0 }]);
        expect(existsSync(path), 'socket removed').to.equal(false);
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
    }
  });
});
