/**
 * BlockDevice behind the project's own front-end transport (VirtioFrontend, the ring engine the
 * userspace driver builds on), with a minimal virtio-blk driver over the single-region
 * `DriverQueueHandle.add(out, inLen)`: header and data share one readable descriptor, data and
 * status one writable descriptor — a segmentation Linux never uses, served all the same.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { BlkFeature, BlkRequestType, BlkStatus, VirtioDeviceId, VirtioFeatureMask, featureBit } from 'virtio-spec-types';
import type { DriverQueueHandle, DriverSession, VirtioDriverOps } from '../../transport/src/virtio/device-api.js';
import { createLoopbackPair } from '../../transport/src/testing/loopback.js';
import { VirtioBackend } from '../../transport/src/virtio/backend.js';
import { VirtioFrontend } from '../../transport/src/virtio/frontend.js';
import { blkHeader } from '../../transport/test/fixtures/linux-like-blk.js';
import { BlockDevice } from '../src/device.js';
import { openImage } from '../src/image.js';
import { SHM, TempImage, pattern } from './fixtures/rig.js';

interface Req {
  resolve(r: { status: number; data: Uint8Array }): void;
  reject(e: Error): void;
}

/** The smallest virtio-blk driver on the single-region API. */
class TinyBlkDriver implements VirtioDriverOps {
  readonly deviceId = VirtioDeviceId.BLOCK;
  readonly features = featureBit(BlkFeature.FLUSH) | VirtioFeatureMask.RING_INDIRECT_DESC;
  q: DriverQueueHandle<Req> | null = null;
  queueCount(): number {
    return 1;
  }
  probe(s: DriverSession): void {
    const q = s.queues[0] as DriverQueueHandle<Req>;
    q.onUsed = (t, data) => t.resolve({ status: data.length > 0 ? data[data.length - 1] : -1, data: data.slice(0, Math.max(0, data.length - 1)) });
    q.onFailed = (t, err) => t.reject(err);
    this.q = q;
  }
  remove(): void {
    this.q = null;
  }
  submit(out: Uint8Array, inLen: number): Promise<{ status: number; data: Uint8Array }> {
    return new Promise((resolve, reject) => {
      if (!this.q!.add(out, inLen, { resolve, reject })) throw new Error('queue full');
      this.q!.kick();
    });
  }
}

describe('virtio-blk device behind VirtioFrontend (single-region requests)', () => {
  it('writes, reads back and flushes with header+data in one descriptor and data+status in another', async () => {
    const img = new TempImage(1 << 20);
    const image = await openImage(img.path);
    const device = new BlockDevice(image, await image.size());
    const [be, fe] = createLoopbackPair({ size: SHM, vectors: 3, protocol: 0x8002 });
    const backend = new VirtioBackend(be, device);
    const drv = new TinyBlkDriver();
    const frontend = new VirtioFrontend(fe, drv);
    try {
      backend.start();
      await frontend.start();
      const data = pattern(32768, 3);
      const w = await drv.submit(Buffer.concat([blkHeader(BlkRequestType.OUT, 64), data]), 1);
      expect(w.status).to.equal(BlkStatus.OK);
      const reads = [0, 1, 2, 3].map((i) => drv.submit(blkHeader(BlkRequestType.IN, 64 + i * 16), 8192 + 1));
      const got = await Promise.all(reads);
      got.forEach((g, i) => expect(Buffer.from(g.data).equals(data.subarray(i * 8192, (i + 1) * 8192))).to.equal(true));
      expect((await drv.submit(blkHeader(BlkRequestType.FLUSH, 0), 1)).status).to.equal(BlkStatus.OK);
      expect(readFileSync(img.path).subarray(64 * 512, 64 * 512 + data.length).equals(data)).to.equal(true);
    } finally {
      await frontend.close();
      await backend.close();
      fe.close();
      be.close();
      await image.close();
      img.remove();
    }
  });
});
