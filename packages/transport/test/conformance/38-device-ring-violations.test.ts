/**
 * Checklist item 38 (spec §6.1, §6.3, §5.2) at queue level: each ring violation makes the device
 * queue throw a RingError with its code, leaves it broken, and touches no memory at all on the
 * way (the whole buffer is compared byte for byte, guard region beyond the window included).
 * Setting DEVICE_NEEDS_RESET and the config event on that RingError is the transport's part.
 *
 * Layout: RW 32 KiB, OUT 8 KiB, two peers, the device is peer 0 → window [0, 48 KiB):
 *   R/W [0, 0x8000) · BE section [0x8000, 0xA000) · FE section [0xA000, 0xC000) (read-only to
 *   the BE) · guard [0xC000, 0x10000) outside the window, filled with 0xA5.
 */
import { expect } from 'chai';
import { VIRTQ_DESC_F_NEXT as NEXT, VIRTQ_DESC_F_WRITE as WRITE, VIRTQ_DESC_F_INDIRECT as INDIRECT } from 'virtio-spec-types';
import { RingError } from '../../src/errors.js';
import { MemoryView } from '../../src/ring/memory.js';
import { packedRingAddresses, type QueueAddresses } from '../../src/ring/ring-layout.js';
import { createAccessPolicy, RingErrorCode as E } from '../../src/ring/validation.js';
import { DeviceQueue } from '../../src/ring/device-queue.js';
import { MockDriver } from '../../src/testing/mock-driver.js';

const RW = 0x8000;
const OUT = 0x2000;
const BE_SECTION = RW;
const FE_SECTION = RW + OUT;
const WINDOW = RW + 2 * OUT;
const SIZE = 8;
const BUF = 0x2000; // a valid buffer area in R/W
const TABLE = 0x1000; // where indirect tables go

function setup(opts: { indirect?: boolean; isolation?: boolean; q?: QueueAddresses } = {}) {
  const mem = new MemoryView(new ArrayBuffer(0x10000));
  mem.u8.fill(0xa5, WINDOW);
  const policy = createAccessPolicy({ rwSize: RW, outputSectionSize: OUT, ownPeer: 0, enforceIsolation: opts.isolation ?? false });
  const q = opts.q ?? packedRingAddresses(SIZE, 0x100);
  const drv = new MockDriver(mem, q);
  const make = () => new DeviceQueue({ ...q, memory: mem, policy, eventIdx: true, indirect: opts.indirect ?? true });
  return { mem, drv, make };
}

/** Pop on a queue whose ring the driver just made hostile: RingError `code`, no byte changed, broken. */
function expectViolation(mem: MemoryView, dev: DeviceQueue, code: string): void {
  const before = mem.u8.slice();
  let err: unknown;
  try {
    while (dev.pop() !== null);
  } catch (e) {
    err = e;
  }
  expect(err).to.be.instanceOf(RingError);
  expect((err as RingError).code).to.equal(code);
  expect((err as RingError).section).to.match(/^6\./);
  expect(Buffer.compare(before, mem.u8)).to.equal(0, 'memory changed during the failing pop');
  expect(dev.broken).to.equal(true);
  expect(dev.error).to.equal(err);
  // Broken: nothing more happens, nothing is written.
  expect(dev.pop()).to.equal(null);
  expect(dev.publish()).to.equal(false);
  expect(dev.enableNotifications()).to.equal(false);
  dev.disableNotifications();
  expect(Buffer.compare(before, mem.u8)).to.equal(0, 'memory changed after the queue broke');
}

/** One chain of raw descriptors at indices 0…, head 0, published. */
function postRaw(drv: MockDriver, descs: [number, number, number, number][]): void {
  descs.forEach(([addr, len, flags, next], i) => drv.writeDesc(i, addr, len, flags, next));
  drv.makeAvail(0);
  drv.publish();
}

describe('checklist 38: device-side ring violations (§6.3)', () => {
  describe('6.3.1 avail.idx', () => {
    it('38-avail-jump: avail.idx more than queue size ahead → VSHM_ERR_AVAIL_JUMP', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.setAvailIdx(SIZE + 1);
      expectViolation(mem, dev, E.AVAIL_JUMP);
    });

    it('38-avail-jump-backwards: avail.idx moving backwards (jump ≥ 2^16 − size) → VSHM_ERR_AVAIL_JUMP', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.addChain([{ addr: BUF, len: 4 }]);
      drv.publish();
      dev.push(dev.pop()!.head, 0);
      drv.setAvailIdx(0);
      expectViolation(mem, dev, E.AVAIL_JUMP);
    });

    it('a jump of exactly the queue size is accepted', () => {
      const { drv, make } = setup();
      const dev = make();
      for (let i = 0; i < SIZE; i++) drv.writeDesc(i, BUF, 4, 0, 0);
      for (let i = 0; i < SIZE; i++) drv.makeAvail(i);
      drv.publish();
      for (let i = 0; i < SIZE; i++) expect(dev.pop()!.head).to.equal(i);
      expect(dev.pop()).to.equal(null);
    });
  });

  describe('6.3.2 indices', () => {
    it('38-head-index: head ≥ queue size → VSHM_ERR_DESC_INDEX', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.makeAvail(SIZE);
      drv.publish();
      expectViolation(mem, dev, E.DESC_INDEX);
    });

    it('38-next-index: next ≥ queue size → VSHM_ERR_DESC_INDEX', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[BUF, 4, NEXT, 0xffff]]);
      expectViolation(mem, dev, E.DESC_INDEX);
    });

    it('38-indirect-next-index: next beyond the indirect table → VSHM_ERR_DESC_INDEX', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.writeDescAt(TABLE, BUF, 4, NEXT, 2); // table of 2 entries
      drv.writeDescAt(TABLE + 16, BUF, 4, 0, 0);
      postRaw(drv, [[TABLE, 32, INDIRECT, 0]]);
      expectViolation(mem, dev, E.DESC_INDEX);
    });
  });

  describe('6.3.3 loops', () => {
    it('38-desc-loop: a two-descriptor cycle → VSHM_ERR_DESC_LOOP', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[BUF, 4, NEXT, 1], [BUF, 4, NEXT, 0]]);
      expectViolation(mem, dev, E.DESC_LOOP);
    });

    it('38-desc-self-loop: a descriptor pointing to itself → VSHM_ERR_DESC_LOOP', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[BUF, 4, NEXT, 0]]);
      expectViolation(mem, dev, E.DESC_LOOP);
    });

    it('38-indirect-loop: a cycle inside an indirect table → VSHM_ERR_DESC_LOOP', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.writeDescAt(TABLE, BUF, 4, NEXT, 1);
      drv.writeDescAt(TABLE + 16, BUF, 4, NEXT, 0);
      postRaw(drv, [[TABLE, 32, INDIRECT, 0]]);
      expectViolation(mem, dev, E.DESC_LOOP);
    });

    it('a chain of exactly queue-size descriptors is accepted', () => {
      const { drv, make } = setup();
      const dev = make();
      postRaw(drv, Array.from({ length: SIZE }, (_, i) => [BUF, 4, i < SIZE - 1 ? NEXT : 0, i + 1] as [number, number, number, number]));
      expect(dev.pop()!.descriptorCount).to.equal(SIZE);
    });
  });

  describe('6.3.4 bounds', () => {
    it('38-cross-section: readable buffer crossing the R/W section end → VSHM_ERR_DESC_BOUNDS', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[RW - 8, 16, 0, 0]]);
      expectViolation(mem, dev, E.DESC_BOUNDS);
    });

    it('38-cross-output-section: writable buffer crossing the own section end → VSHM_ERR_DESC_BOUNDS', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[FE_SECTION - 4, 8, WRITE, 0]]);
      expectViolation(mem, dev, E.DESC_BOUNDS);
    });

    it('38-beyond-window: buffer beyond the window (into the guard) → VSHM_ERR_DESC_BOUNDS', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[WINDOW, 4, 0, 0]]);
      expectViolation(mem, dev, E.DESC_BOUNDS);
    });

    it('38-huge-address: address ≥ 2^53 → VSHM_ERR_DESC_BOUNDS (never truncated)', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.writeDescRaw(0, BUF, 0x00200000, 4, 0, 0); // 2^53 + BUF: low bits look valid
      drv.makeAvail(0);
      drv.publish();
      expectViolation(mem, dev, E.DESC_BOUNDS);
    });

    it('38-write-readonly: writable buffer in the FE output section → VSHM_ERR_DESC_WRITE_PERM', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[BUF, 4, NEXT, 1], [FE_SECTION + 0x100, 16, WRITE, 0]]);
      expectViolation(mem, dev, E.DESC_WRITE_PERM);
    });

    it('38-overflow: addr + len wrapping past 2^64 → VSHM_ERR_DESC_OVERFLOW', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.writeDescRaw(0, 0xfffffff0, 0xffffffff, 0x20, 0, 0);
      drv.makeAvail(0);
      drv.publish();
      expectViolation(mem, dev, E.DESC_OVERFLOW);
    });

    it('38-indirect-table-bounds: indirect table beyond the window → VSHM_ERR_DESC_BOUNDS', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[WINDOW - 16, 32, INDIRECT, 0]]);
      expectViolation(mem, dev, E.DESC_BOUNDS);
    });

    it('zero-length descriptors are never accessed, so any address is accepted', () => {
      const { drv, make } = setup();
      const dev = make();
      postRaw(drv, [[0xfffffff0, 0, NEXT, 1], [BUF, 4, 0, 0]]);
      expect(dev.pop()!.segmentCount).to.equal(1);
    });
  });

  describe('6.3.5 ordering', () => {
    it('38-order: readable after writable → VSHM_ERR_DESC_ORDER', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[BUF, 4, WRITE | NEXT, 1], [BUF + 16, 4, 0, 0]]);
      expectViolation(mem, dev, E.DESC_ORDER);
    });
  });

  describe('6.3.6 indirect (malformed indirect table)', () => {
    it('38-indirect-not-negotiated → VSHM_ERR_INDIRECT', () => {
      const { mem, drv, make } = setup({ indirect: false });
      const dev = make();
      drv.writeDescAt(TABLE, BUF, 4, 0, 0);
      postRaw(drv, [[TABLE, 16, INDIRECT, 0]]);
      expectViolation(mem, dev, E.INDIRECT);
    });

    it('38-indirect-with-next → VSHM_ERR_INDIRECT', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.writeDescAt(TABLE, BUF, 4, 0, 0);
      postRaw(drv, [[TABLE, 16, INDIRECT | NEXT, 1], [BUF, 4, 0, 0]]);
      expectViolation(mem, dev, E.INDIRECT);
    });

    it('38-indirect-nested → VSHM_ERR_INDIRECT', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.writeDescAt(TABLE, TABLE + 0x100, 16, INDIRECT, 0);
      drv.writeDescAt(TABLE + 0x100, BUF, 4, 0, 0);
      postRaw(drv, [[TABLE, 16, INDIRECT, 0]]);
      expectViolation(mem, dev, E.INDIRECT);
    });

    it('38-indirect-len-zero → VSHM_ERR_INDIRECT', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      postRaw(drv, [[TABLE, 0, INDIRECT, 0]]);
      expectViolation(mem, dev, E.INDIRECT);
    });

    it('38-indirect-len-not-multiple-of-16 → VSHM_ERR_INDIRECT', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.writeDescAt(TABLE, BUF, 4, 0, 0);
      postRaw(drv, [[TABLE, 24, INDIRECT, 0]]);
      expectViolation(mem, dev, E.INDIRECT);
    });
  });

  describe('6.3.7 head in flight', () => {
    it('38-head-in-flight: the same head made available twice → VSHM_ERR_HEAD_IN_FLIGHT', () => {
      const { mem, drv, make } = setup();
      const dev = make();
      drv.writeDesc(0, BUF, 4, 0, 0);
      drv.makeAvail(0);
      drv.makeAvail(0);
      drv.publish();
      expect(dev.pop()!.head).to.equal(0);
      expectViolation(mem, dev, E.HEAD_IN_FLIGHT);
    });
  });

  describe('6.1 enable', () => {
    const bad: [string, Partial<QueueAddresses>, string][] = [
      ['size not a power of two', { size: 6 }, E.QUEUE_SIZE],
      ['size above 32768', { size: 65536 }, E.QUEUE_SIZE],
      ['size 0', { size: 0 }, E.QUEUE_SIZE],
      ['descriptor table misaligned', { desc: 0x108 }, E.RING_ALIGN],
      ['available ring misaligned', { avail: 0x181 }, E.RING_ALIGN],
      ['used ring misaligned', { used: 0x19a }, E.RING_ALIGN],
      ['descriptor table crossing the R/W end', { desc: RW - 64 }, E.RING_BOUNDS],
      ['available ring beyond the window', { avail: WINDOW }, E.RING_BOUNDS],
      ['used ring in the read-only FE section', { used: FE_SECTION }, E.RING_BOUNDS],
      ['used ring crossing into the own section', { used: RW - 32 }, E.RING_BOUNDS],
    ];
    for (const [name, patch, code] of bad) {
      it(`38-enable: ${name} → ${code}`, () => {
        const q = { ...packedRingAddresses(SIZE, 0x100), ...patch };
        const { mem, make } = setup({ q });
        const before = mem.u8.slice();
        expect(make).to.throw(RingError).with.property('code', code);
        expect(Buffer.compare(before, mem.u8)).to.equal(0);
      });
    }

    it('38-enable: size above the offered maximum → VSHM_ERR_QUEUE_SIZE', () => {
      const mem = new MemoryView(new ArrayBuffer(0x10000));
      const policy = createAccessPolicy({ rwSize: RW, outputSectionSize: OUT, ownPeer: 0 });
      const q = packedRingAddresses(16, 0x100);
      expect(() => new DeviceQueue({ ...q, memory: mem, policy, offeredMax: 8, eventIdx: false, indirect: false }))
        .to.throw(RingError).with.property('code', E.QUEUE_SIZE);
    });
  });

  describe('5.2 enforced isolation', () => {
    const iso = { size: SIZE, desc: FE_SECTION, avail: FE_SECTION + 0x80, used: BE_SECTION };

    it('accepts the isolated layout and zeroes the used ring in the own section', () => {
      const { mem, drv, make } = setup({ isolation: true, q: iso });
      mem.u8.fill(0x77, BE_SECTION, BE_SECTION + 0x100);
      const dev = make();
      expect(mem.u8.subarray(BE_SECTION, BE_SECTION + 70).every((b) => b === 0)).to.equal(true);
      drv.addChain([{ addr: FE_SECTION + 0x400, len: 8 }, { addr: BE_SECTION + 0x400, len: 8, write: true }]);
      drv.publish();
      expect(dev.pop()!.writableLength).to.equal(8);
    });

    it('38-isolation-ring: descriptor table in the R/W section → VSHM_ERR_RING_BOUNDS', () => {
      const { make } = setup({ isolation: true, q: { ...iso, desc: 0x100 } });
      expect(make).to.throw(RingError).with.property('code', E.RING_BOUNDS);
    });

    it('38-isolation-buffer: readable buffer in the R/W section → VSHM_ERR_DESC_BOUNDS', () => {
      const { mem, drv, make } = setup({ isolation: true, q: iso });
      const dev = make();
      drv.addChain([{ addr: BUF, len: 8 }]);
      drv.publish();
      expectViolation(mem, dev, E.DESC_BOUNDS);
    });

    it('38-isolation-write: writable buffer in the R/W section → VSHM_ERR_DESC_BOUNDS', () => {
      const { mem, drv, make } = setup({ isolation: true, q: iso });
      const dev = make();
      drv.addChain([{ addr: BUF, len: 8, write: true }]);
      drv.publish();
      expectViolation(mem, dev, E.DESC_BOUNDS);
    });
  });
});
