/**
 * §8 item 9: `-l 60K` yields a 65536-byte memfd sealed against shrink and grow.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { useCliRig } from '../fixtures/server-cli-rig.js';
import { useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 9: -l 60K yields a sealed 65536-byte memfd', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, join } = rig;

    it('item 9: -l 60K yields a 65536-byte memfd sealed against shrink and grow (and further seals)', async () => {
      const s = await start({ memorySize: 60 * 1024 });
      expect(s.memorySize).to.equal(65536);
      const a = await join(0, 1);
      const fd = a.burst[0].fds[0];
      expect(binding.fstat(fd).size).to.equal(65536);
      const seals = binding.getSeals(fd);
      expect(seals & binding.F_SEAL_SHRINK).to.not.equal(0);
      expect(seals & binding.F_SEAL_GROW).to.not.equal(0);
      expect(seals & binding.F_SEAL_SEAL).to.not.equal(0);
      expect(() => binding.ftruncate(fd, 4096)).to.throw().with.property('code', 'EPERM');
    });
  });

  describe('vshm-server CLI in a child process (§1.9)', function () {
    const rig = useCliRig();
    const { sock, ready, connect } = rig;

    it('item 9: -l 60K gives a 65536-byte memfd sealed against shrink and grow', async () => {
      const path = sock();
      await ready(['-S', path, '-l', '60K']);
      const [init] = await connect(path).take(2);
      const fd = init.fds[0];
      expect(binding.fstat(fd).size).to.equal(65536);
      const seals = binding.getSeals(fd);
      expect(seals & (binding.F_SEAL_SHRINK | binding.F_SEAL_GROW)).to.equal(binding.F_SEAL_SHRINK | binding.F_SEAL_GROW);
    });
  });
});
