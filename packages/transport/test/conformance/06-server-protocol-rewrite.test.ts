/**
 * §8 item 6: `-P 0x8003` or `0xC003`: peer 0 gets 0xC003, peer 1 0x8003; `-P 0x1234` is unchanged
 * (§1.5).
 */
import { expect } from 'chai';
import type { InitMessage } from '../../src/ivshmem/protocol.js';
import { useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 6: virtio protocol rewrite per peer ID', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, join } = rig;

    for (const [p, p0, p1] of [
      [0x8003, 0xc003, 0x8003],
      [0xc003, 0xc003, 0x8003],
      [0x1234, 0x1234, 0x1234],
    ] as const) {
      it(`item 6: -P 0x${p.toString(16)} gives peer 0 0x${p0.toString(16)} and peer 1 0x${p1.toString(16)}`, async () => {
        await start({ protocol: p });
        const a = await join(0, 1);
        const b = await join(1, 1);
        expect((a.burst[0].msg as InitMessage).protocol).to.equal(p0);
        expect((b.burst[0].msg as InitMessage).protocol).to.equal(p1);
        expect(b.burst[0].bytes.readUInt32LE(28)).to.equal(p1);
      });
    }
  });
});
