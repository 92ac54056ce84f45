/**
 * IvshmemPeer against the real IvshmemServer, one peer per child process (spec §1.8, §2, §3),
 * beyond the §8 checklist (items 17–22, including the two-process cases, are in
 * conformance/17–22). Children are fixtures/peer-child.ts, driven over IPC.
 */
import { expect } from 'chai';
import { useConsolePair, useTwoProcRig } from '../fixtures/device-rigs.js';

describe('IvshmemPeer with the real server, two processes (spec §2, §3)', () => {
  const rig = useTwoProcRig();

  describe('virtio console layout (-l 64K -V 3 -P 0x8003)', () => {
    const pair = useConsolePair(rig);

    it('a peer that closes leaves no fds behind and is announced to the other', async () => {
      const gone = pair.be.nextNew('peer-gone', { id: 1 });
      const ready = pair.fe.messages.find((m) => m.type === 'ready')!;
      const after = await pair.fe.request({ op: 'close' });
      expect(after).to.equal(ready.fdsBeforeConnect);
      await gone;
    });
  });
});
