/**
 * §8 item 12: the state table is zero after start, even for a reused `-M` object.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { useCliRig } from '../fixtures/server-cli-rig.js';
import { useServerRig } from '../fixtures/server-rig.js';

describe('§8 item 12: the state table is zero after start, even for a reused -M object', function () {
  describe('IvshmemServer in process, raw clients', function () {
    const rig = useServerRig();
    const { start, join } = rig;

    it('item 12: the state table is zero after start even for a reused -M object, which is unlinked at stop', async () => {
      const name = `/vshm-test-${process.pid}-${Date.now().toString(36)}`;
      rig.shmNames.push(name);
      const fd = binding.shmOpen(name, binding.O_RDWR | binding.O_CREAT, 0o600);
      binding.ftruncate(fd, 65536);
      const junk = binding.mmap(fd, 0, 8192, binding.PROT_READ | binding.PROT_WRITE);
      new Uint8Array(junk).fill(0xa5);
      binding.munmap(junk);
      binding.close(fd);

      const s = await start({ memory: { kind: 'shm', name } });
      const a = await join(0, 1);
      const view = binding.mmap(a.burst[0].fds[0], 0, 8192, binding.PROT_READ);
      try {
        const bytes = new Uint8Array(view);
        expect(bytes.subarray(0, 4096).every((x) => x === 0), 'state table zeroed').to.equal(true);
        expect(bytes[4096], 'data sections untouched').to.equal(0xa5);
      } finally {
        binding.munmap(view);
      }
      await s.stop();
      expect(() => binding.shmOpen(name, binding.O_RDWR, 0)).to.throw().with.property('code', 'ENOENT');
    });
  });

  describe('vshm-server CLI in a child process (§1.9)', function () {
    const rig = useCliRig();
    const { sock, ready, connect } = rig;

    it('item 12: the state table is zero after start for a reused -M object', async () => {
      const name = `/vshm-cli-${process.pid}-${Date.now().toString(36)}-z`;
      const fd = binding.shmOpen(name, binding.O_RDWR | binding.O_CREAT, 0o600);
      try {
        binding.ftruncate(fd, 65536);
        const junk = binding.mmap(fd, 0, 4096, binding.PROT_READ | binding.PROT_WRITE);
        new Uint32Array(junk).fill(0xdeadbeef);
        binding.munmap(junk);
        const path = sock();
        await ready(['-S', path, '-M', name, '-l', '64K']);
        const [init] = await connect(path).take(2);
        const view = binding.mmap(init.fds[0], 0, 4096, binding.PROT_READ);
        expect(new Uint32Array(view).every((x) => x === 0)).to.equal(true);
        binding.munmap(view);
      } finally {
        binding.close(fd);
        try {
          binding.shmUnlink(name);
        } catch {
          // the server unlinked it
        }
      }
    });
  });
});
