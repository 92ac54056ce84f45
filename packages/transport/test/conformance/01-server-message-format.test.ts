/**
 * §8 item 1: messages are exactly 40/16/12 bytes as in §1.2, INIT with `version` and
 * `compatible_version` 2; INIT carries the memory fd, EVENT_FD one eventfd, PEER_GONE none.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { encodeEventFd, encodeInit, encodePeerGone, MSG_INIT } from '../../src/ivshmem/protocol.js';
import { evs, sig, useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 1: messages 40/16/12 bytes, version 2, fds per type', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, join } = rig;

    it('item 1: sends exactly 40/16/12-byte messages with the golden contents and fds', async () => {
      const s = await start({ vectors: 3, protocol: 0x1234, outputSectionSize: 4096 });
      const a = await join(0, 3);
      expect(a.burst[0].bytes.toString('hex')).to.equal(
        encodeInit({ id: 0, maxPeers: 2, vectors: 3, protocol: 0x1234, outputSectionSize: 4096 }).toString('hex'),
      );
      expect(a.burst[0].bytes.readUInt32LE(8)).to.equal(2); // version
      expect(a.burst[0].bytes.readUInt32LE(12)).to.equal(2); // compatible_version
      expect(binding.fstat(a.burst[0].fds[0]).size).to.equal(s.memorySize);
      for (let v = 0; v < 3; v++) {
        const m = a.burst[1 + v];
        expect(m.bytes.length).to.equal(16);
        expect(m.bytes.toString('hex')).to.equal(encodeEventFd(0, v).toString('hex'));
        // It is an eventfd: a write is read back as the counter.
        expect(binding.eventfdWrite(m.fds[0], 3)).to.equal(true);
        expect(binding.eventfdRead(m.fds[0])).to.equal(3);
      }
      const b = await join(1, 3);
      await a.c.take(3);
      b.c.close();
      const gone = await a.c.next();
      expect(gone.bytes.toString('hex')).to.equal(encodePeerGone(1).toString('hex'));
      expect(gone.bytes.length).to.equal(12);
      expect(gone.fds).to.deep.equal([]);
    });

    it('item 1: INIT carries exactly the memory fd, each EVENT_FD one eventfd, PEER_GONE none', async () => {
      await start({ maxPeers: 2, vectors: 2 });
      const a = await join(0, 2);
      for (const m of a.burst) {
        expect(m.bytes.length).to.equal(m.msg.type === MSG_INIT ? 40 : 16);
        expect(m.bytes.readUInt32LE(4), 'len field').to.equal(m.bytes.length);
      }
      expect(a.burst.map(sig)).to.deep.equal(['INIT 0', ...evs(0, 2)]);
      expect(binding.getSeals(a.burst[0].fds[0]) & binding.F_SEAL_GROW, 'a memfd').to.not.equal(0);
      const b = await join(1, 2);
      const forA = await a.c.take(2);
      expect(forA.map(sig)).to.deep.equal(evs(1, 2));
      // Each EVENT_FD fd is an eventfd whose counter B's own copy reads back.
      binding.eventfdWrite(forA[1].fds[0], 2);
      expect(binding.eventfdRead(b.burst[4].fds[0])).to.equal(2);
      b.c.close();
      const gone = await a.c.next();
      expect(sig(gone)).to.equal('GONE 1');
      expect(gone.bytes.readUInt32LE(4)).to.equal(12);
    });
  });
});
