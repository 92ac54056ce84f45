/**
 * Checklist item 37 (spec §5.2), queue-level part: with OUT ≠ 0 the rings sit in the isolated
 * placement — descriptor table and available ring in the FE's section, used ring in the BE's —
 * the BE zeroes that used ring on enable, and neither engine writes the other side's section.
 * (Choosing the placement is the FE allocator's job and is tested with it.)
 */
import { expect } from 'chai';
import { descTableSize } from 'virtio-spec-types';
import { MemoryView } from '../../src/ring/memory.js';
import { createAccessPolicy } from '../../src/ring/validation.js';
import { DeviceQueue } from '../../src/ring/device-queue.js';
import { DriverQueue } from '../../src/ring/driver-queue.js';

const RW = 0x8000;
const OUT = 0x4000;
const BE = RW; // peer 0's output section
const FE = RW + OUT; // peer 1's output section

describe('checklist 37: isolated ring placement (§5.2)', () => {
  const size = 16;
  const q = { size, desc: FE, avail: FE + descTableSize(size), used: BE };

  function build() {
    const mem = new MemoryView(new ArrayBuffer(RW + 2 * OUT));
    mem.u8.fill(0xcc, BE, FE); // stale contents in the BE section
    const drv = new DriverQueue<number>({ ...q, memory: mem, eventIdx: true, indirect: false });
    const policy = createAccessPolicy({ rwSize: RW, outputSectionSize: OUT, ownPeer: 0, enforceIsolation: true });
    return { mem, drv, make: () => new DeviceQueue({ ...q, memory: mem, policy, eventIdx: true, indirect: false }) };
  }

  it('37-used-ring-zeroed: the BE zeroes the used ring in its section on enable, nothing more', () => {
    const { mem, make } = build();
    make();
    expect(mem.u8.subarray(BE, BE + 6 + 8 * size).every((b) => b === 0)).to.equal(true);
    expect(mem.u8[BE + 6 + 8 * size]).to.equal(0xcc);
  });

  it('37-sections-respected: the FE never writes the BE section, the BE never writes the FE section', () => {
    const { mem, drv, make } = build();
    const dev = make();
    const tmp = new Uint8Array(32);
    for (let round = 0; round < 200; round++) {
      const beBefore = mem.u8.slice(BE, FE);
      for (let i = 0; i < 4; i++) drv.add([FE + 0x1000 + 64 * i, 32], [BE + 0x1000 + 64 * i, 32], i);
      drv.kick();
      expect(Buffer.compare(beBefore, mem.u8.subarray(BE, FE)), 'FE wrote the BE section').to.equal(0);
      const feBefore = mem.u8.slice(FE, FE + OUT);
      for (let c = dev.pop(); c; c = dev.pop()) {
        c.read(tmp);
        c.write(tmp);
        dev.push(c.head, 32);
      }
      dev.publish();
      expect(Buffer.compare(feBefore, mem.u8.subarray(FE, FE + OUT)), 'BE wrote the FE section').to.equal(0);
      const beBefore2 = mem.u8.slice(BE, FE);
      expect(drv.collect(() => {})).to.equal(4);
      expect(Buffer.compare(beBefore2, mem.u8.subarray(BE, FE)), 'FE wrote the BE section while collecting').to.equal(0);
    }
  });
});
