/**
 * The image path may name something that is not a disk: another user can put a FIFO where a
 * /tmp image was expected. open(O_RDONLY) of a FIFO waits for a writer — forever, on one of
 * libuv's four pool threads — so `vshm-blk-backend --read-only` hung instead of saying "not a
 * regular file or block device". openImage must refuse it at once, in both modes.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError, openImage } from '../src/image.js';

describe('virtio-blk image: a FIFO at the image path', function () {
  this.timeout(10_000);
  let dir: string;
  let fifo: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-blk-fifo-'));
    fifo = join(dir, 'disk.img');
    execFileSync('mkfifo', ['-m', '0600', fifo]);
  });
  afterEach(() => {
    // A reader still blocked in open() (the defect) is released by a writer.
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // no reader waiting: ENXIO
    }
    rmSync(dir, { recursive: true, force: true });
  });

  for (const readOnly of [true, false]) {
    it(`is refused at once${readOnly ? ' read-only' : ''}: not a regular file or block device`, async () => {
      const err = await openImage(fifo, { readOnly }).then(async (img) => (await img.close(), null), (e: unknown) => e);
      expect(err).to.be.instanceOf(ImageError);
      expect((err as Error).message).to.match(/not a regular file or block device/);
    });
  }

  it('a regular image still opens, reads and writes (the fd has no O_NONBLOCK left to matter)', async () => {
    const path = join(dir, 'real.img');
    writeFileSync(path, Buffer.alloc(8192, 0x5a));
    const img = await openImage(path);
    try {
      expect(await img.size()).to.equal(8192);
    } finally {
      await img.close();
    }
    expect(readFileSync(path)[0]).to.equal(0x5a);
  });
});
