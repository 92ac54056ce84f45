/**
 * `-M NAME` meets an object someone else prepared. /dev/shm is world-writable like /tmp: another
 * local user can create `/dev/shm/NAME` first, mode 0666 or owned by themselves, and keep it open.
 * A server that reused that object would hand every peer memory the other user reads and writes
 * (console bytes, disk blocks, the rings). Such an object is refused and left as it was.
 */
import { expect } from 'chai';
import { fchmodSync, fchownSync } from 'node:fs';
import binding from '@vshm/addon';
import { IvshmemServer } from '../../src/server/server.js';
import { ServerError } from '../../src/server/socket.js';
import { useServerRig } from '../fixtures/server-rig.js';
import { tmpPath } from '../fixtures/raw-client.js';

describe('vshm-server -M: an existing object another user can reach is refused', function () {
  const rig = useServerRig();
  const sock = (): string => {
    const p = tmpPath('shm-owner');
    rig.paths.push(p);
    return p;
  };

  /** A prepared object of 64 KiB filled with 0xa5; returns its name (removed after the test). */
  function prepare(tag: string, mode: number, uid?: number): string {
    const name = `/vshm-test-${process.pid}-${Date.now().toString(36)}-${tag}`;
    rig.shmNames.push(name);
    const fd = binding.shmOpen(name, binding.O_RDWR | binding.O_CREAT | binding.O_EXCL, 0o600);
    try {
      binding.ftruncate(fd, 65536);
      const v = binding.mmap(fd, 0, 4096, binding.PROT_READ | binding.PROT_WRITE);
      new Uint8Array(v).fill(0xa5);
      binding.munmap(v);
      fchmodSync(fd, mode); // fchmod is not narrowed by the umask, as a creator's explicit chmod
      if (uid !== undefined) fchownSync(fd, uid, uid);
    } finally {
      binding.close(fd);
    }
    return name;
  }

  /** Start must fail with VSHM_ERR_SHM_UNSAFE, and the object keep its size and bytes. */
  async function expectRefused(name: string, why: RegExp): Promise<void> {
    const s = new IvshmemServer({ socketPath: sock(), memorySize: 1 << 20, memory: { kind: 'shm', name } });
    const err = await s.start().then(() => null, (e: unknown) => e);
    if (err === null) await s.stop();
    expect(err).to.be.instanceOf(ServerError);
    expect((err as ServerError).code).to.equal('VSHM_ERR_SHM_UNSAFE');
    expect((err as Error).message).to.include(name).and.match(why);
    const fd = binding.shmOpen(name, binding.O_RDWR, 0);
    try {
      expect(binding.fstat(fd).size, 'not resized').to.equal(65536);
      const v = binding.mmap(fd, 0, 4096, binding.PROT_READ);
      expect(new Uint8Array(v).every((x) => x === 0xa5), 'not zeroed').to.equal(true);
      binding.munmap(v);
    } finally {
      binding.close(fd);
    }
  }

  it('an object that group or others may open (mode 0666) is refused, not resized or zeroed', async () => {
    await expectRefused(prepare('wide', 0o666), /mode 0?666/);
  });

  it('an object mode 0604 (others may read) is refused too', async () => {
    await expectRefused(prepare('read', 0o604), /mode 0?604/);
  });

  it('an object owned by another uid is refused (needs root to prepare)', async function () {
    if (process.getuid?.() !== 0) this.skip();
    await expectRefused(prepare('owner', 0o600, 65534), /uid 65534/);
  });

  it('our own 0600 object is still reused (a crashed server left it)', async () => {
    const name = prepare('ours', 0o600);
    const s = new IvshmemServer({ socketPath: sock(), memorySize: 1 << 20, memory: { kind: 'shm', name } });
    await s.start();
    await s.stop();
  });
});
