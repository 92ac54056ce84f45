/**
 * IvshmemPeer and the memory fd it is handed (issue: read-only fds and shrinkable memory). A
 * read-only fd must be named as such (it used to surface as a socket permission error); an fd
 * sealed without F_SEAL_SHRINK is refused; an unsealed one is accepted with one warning per
 * process, because a shrink while mapped would end the process with SIGBUS.
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { execFile } from 'node:child_process';
import { closeSync, openSync, constants as fsc } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LayoutError } from '../../src/errors.js';
import { IvshmemPeer } from '../../src/ivshmem/peer.js';
import { checkMemorySeals } from '../../src/ivshmem/peer-mapping.js';
import { FakeServer } from '../fixtures/peer-fake-server.js';

const b = binding;

describe('IvshmemPeer memory fd checks', () => {
  let fake: FakeServer;
  let peer: IvshmemPeer | undefined;
  const extra: number[] = [];
  beforeEach(() => {
    fake = new FakeServer(b);
    peer = undefined;
  });
  afterEach(() => {
    peer?.close();
    for (const fd of extra.splice(0)) closeSync(fd);
    fake.close();
  });

  /** A sealable memfd of `size` bytes carrying `seals`. */
  function sealedMemfd(size: number, seals: number): number {
    const fd = b.memfdCreate('sealed', true);
    extra.push(fd);
    b.ftruncate(fd, size);
    if (seals !== 0) b.addSeals(fd, seals);
    return fd;
  }

  /** Hand the peer a complete INIT + own EVENT_FD with `memFd`; resolve/reject like connect(). */
  function connectWith(memFd: number): Promise<IvshmemPeer> {
    fake.init({ id: 1, maxPeers: 2, vectors: 1 }, memFd);
    fake.eventFd(0, 0, fake.eventfd());
    fake.eventFd(1, 0, fake.eventfd());
    return IvshmemPeer.fromSocket(fake.cli, { binding: b });
  }

  it('a read-only memory fd is refused as read-only (VSHM_ERR_MEMORY_READONLY), not as EACCES', async () => {
    const mem = fake.memfd(65536);
    const ro = openSync(`/proc/self/fd/${mem}`, fsc.O_RDONLY);
    extra.push(ro);
    const err = await connectWith(ro).then(
      (p) => {
        peer = p;
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(LayoutError);
    expect((err as LayoutError).code).to.equal('VSHM_ERR_MEMORY_READONLY');
    expect((err as Error).message).to.match(/read-only/);
  });

  it('an fd sealed against growing but not shrinking is refused (VSHM_ERR_MEMORY_SEALS)', async () => {
    const mem = sealedMemfd(65536, b.F_SEAL_GROW | b.F_SEAL_SEAL);
    const err = await connectWith(mem).then(
      (p) => {
        peer = p;
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(LayoutError);
    expect((err as LayoutError).code).to.equal('VSHM_ERR_MEMORY_SEALS');
  });

  it('classifies seals: SHRINK sealed; none, SEAL-only or unsealable unsealed', () => {
    expect(checkMemorySeals(b, sealedMemfd(8192, b.F_SEAL_SHRINK | b.F_SEAL_GROW | b.F_SEAL_SEAL))).to.equal('sealed');
    expect(checkMemorySeals(b, sealedMemfd(8192, 0))).to.equal('unsealed');
    expect(checkMemorySeals(b, fake.memfd(8192))).to.equal('unsealed'); // no MFD_ALLOW_SEALING: F_SEAL_SEAL only
    const file = b.openTmpfile('/tmp', 0o600);
    extra.push(file);
    expect(checkMemorySeals(b, file)).to.equal('unsealed'); // a regular file cannot carry seals
  });

  /** Run the warning child with the given connection kinds; resolve with its warning count. */
  function warningsIn(...kinds: string[]): Promise<number> {
    const child = fileURLToPath(new URL('../fixtures/memory-warning-child.ts', import.meta.url));
    return new Promise((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', child, ...kinds], (err, stdout) => {
        if (err) reject(err);
        else resolve(Number(stdout.trim()));
      });
    });
  }

  it('an unsealed memory fd is accepted with exactly one warning per process; a sealed one with none', async () => {
    expect(await warningsIn('unsealed', 'unsealed', 'sealed')).to.equal(1);
    expect(await warningsIn('sealed', 'sealed')).to.equal(0);
  });
});
