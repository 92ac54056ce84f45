/**
 * §8 item 36: chunks are 64 B for RW 60 KiB and 256 B for RW 1 MiB; header chunks are reserved.
 * Checked on a live FE: where its rings and buffers land in the R/W section (§5.1, OUT = 0).
 */
import { expect } from 'chai';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import type { FrontendQueue } from '../../src/virtio/frontend-queues.js';
import { type RecordingDriver } from '../fixtures/transport-devices.js';
import { useEchoRigs } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

describe('§8 item 36: allocator chunks on a live front-end (§5.1)', () => {
  const rig = useEchoRigs();

  async function start(size: number): Promise<{ qs: FrontendQueue[]; drv: RecordingDriver; fe: IvshmemDevice }> {
    const { backend, frontend, drv, fe } = rig({ loopback: { size } }); // console-shaped: header size 88
    backend.start();
    const s = await frontend.start();
    return { qs: s.queues as FrontendQueue[], drv, fe };
  }

  /** The descriptor at index `i` of queue `q` of the front-end device `fe`: [addr, len]. */
  function desc(fe: IvshmemDevice, q: FrontendQueue, i: number): [number, number] {
    const dv = new DataView(fe.window);
    return [Number(dv.getBigUint64(q.rings.desc + 16 * i, true)), dv.getUint32(q.rings.desc + 16 * i + 8, true)];
  }

  it('RW 60 KiB: 64-byte chunks, the 88-byte header takes 128 B, rings follow lowest-first', async () => {
    const { qs, drv, fe } = await start(64 * 1024);
    expect(fe.layout.rwSize).to.equal(60 * 1024);
    const [q0, q1] = qs;
    // Queue 0: desc 128 B (2 chunks at 128), avail 22 B (1 chunk at 256), used 70 B (2 chunks, aligned: 384).
    expect([q0.rings.desc, q0.rings.avail, q0.rings.used]).to.deep.equal([128, 256, 384]);
    // Queue 1: avail fills the hole at 320, desc at 512, used at 640.
    expect([q1.rings.desc, q1.rings.avail, q1.rings.used]).to.deep.equal([512, 320, 640]);
    // A 100-byte request buffer takes 2 chunks (128 B), a 10-byte reply buffer 1 chunk.
    q0.add(new Uint8Array(100).fill(7), 10, 't');
    expect(desc(fe, q0, 0)).to.deep.equal([768, 100]);
    expect(desc(fe, q0, 1)).to.deep.equal([896, 10]); // chunks 0–13 are taken
    q0.kick();
    await until(() => drv.used.length === 1, 'completion');
  });

  it('RW 1 MiB: 256-byte chunks, the header takes one chunk', async () => {
    const { qs, fe } = await start(1024 * 1024 + 4096);
    expect(fe.layout.rwSize).to.equal(1024 * 1024);
    const [q0] = qs;
    // desc 128 B → 1 chunk at 256; avail → 512; used → 768.
    expect([q0.rings.desc, q0.rings.avail, q0.rings.used]).to.deep.equal([256, 512, 768]);
    q0.add(new Uint8Array(300), 1, 't');
    const [addr, len] = desc(fe, q0, 0);
    expect(len).to.equal(300);
    expect(addr % 512).to.equal(0); // 2 chunks, naturally aligned
  });
});
