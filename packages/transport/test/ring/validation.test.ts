import { expect } from 'chai';
import { MemoryView, INVALID_U64 } from '../../src/ring/memory.js';
import { createAccessPolicy, rangeInside, u64AddOverflows, checkQueueConfig, RingErrorCode } from '../../src/ring/validation.js';
import { ArgumentError, RingError } from '../../src/errors.js';

describe('MemoryView', () => {
  it('reads and writes little-endian words at the spec offsets', () => {
    const m = new MemoryView(new ArrayBuffer(64));
    m.store16(2, 0x1234);
    m.store32(4, 0xdeadbeef);
    expect([...m.u8.subarray(2, 8)]).to.deep.equal([0x34, 0x12, 0xef, 0xbe, 0xad, 0xde]);
    expect(m.load16(2)).to.equal(0x1234);
    expect(m.get16(2)).to.equal(0x1234);
    expect(m.load32(4)).to.equal(0xdeadbeef);
    expect(m.get32(4)).to.equal(0xdeadbeef);
    expect(m.load32Unaligned(3)).to.equal(0xadbeef12);
    m.fence();
  });

  it('load64 returns numbers below 2^53 and INVALID_U64 (never a truncation) above', () => {
    const m = new MemoryView(new ArrayBuffer(64));
    m.store64(8, 2 ** 53 - 1);
    expect(m.load64(8)).to.equal(2 ** 53 - 1);
    m.store64(8, 0x1_0000_0010);
    expect([m.u32[2], m.u32[3]]).to.deep.equal([0x10, 1]);
    expect(m.load64(8)).to.equal(0x1_0000_0010);
    m.u32[3] = 0x200000; // 2^53
    expect(m.load64(8)).to.equal(INVALID_U64);
    m.u32[3] = 0xffffffff;
    expect(m.load64(8)).to.equal(INVALID_U64);
  });

  it('bytes() and zero() are bounds-checked zero-copy operations', () => {
    const m = new MemoryView(new ArrayBuffer(64));
    const v = m.bytes(60, 4);
    v[0] = 7;
    expect(m.u8[60]).to.equal(7);
    expect(() => m.bytes(61, 4)).to.throw(ArgumentError);
    expect(() => m.bytes(-1, 1)).to.throw(ArgumentError);
    m.zero(60, 4);
    expect(m.u8[60]).to.equal(0);
    expect(() => m.zero(0, 65)).to.throw(ArgumentError);
  });

  it('covers odd-sized buffers with whole-word views', () => {
    const m = new MemoryView(new ArrayBuffer(10));
    expect([m.length, m.u16.length, m.u32.length]).to.deep.equal([10, 5, 2]);
  });
});

describe('validation predicates (§6.2)', () => {
  it('rangeInside refuses overflow, NaN and Infinity', () => {
    expect(rangeInside(0, 10, 0, 10)).to.equal(true);
    expect(rangeInside(1, 10, 0, 10)).to.equal(false);
    expect(rangeInside(10, 0, 0, 10)).to.equal(false);
    expect(rangeInside(Number.POSITIVE_INFINITY, 1, 0, 10)).to.equal(false);
    expect(rangeInside(Number.NaN, 1, 0, 10)).to.equal(false);
    expect(rangeInside(-1, 2, 0, 10)).to.equal(false);
    expect(u64AddOverflows(0xfffffff0, 0xffffffff, 0x10)).to.equal(true);
    expect(u64AddOverflows(0xfffffff0, 0xffffffff, 0x0f)).to.equal(false);
    expect(u64AddOverflows(0xfffffff0, 0xfffffffe, 0x100)).to.equal(false);
  });

  // Example of §5.2: -l 256K -n 2 -o 64K → RW 124 KiB (0x1F000), peer 0 at 0x1F000, peer 1 at 0x2F000.
  const RW = 0x1f000;
  const OUT = 0x10000;
  const be = createAccessPolicy({ rwSize: RW, outputSectionSize: OUT, ownPeer: 0 });
  const fe = createAccessPolicy({ rwSize: RW, outputSectionSize: OUT, ownPeer: 1 });

  it('the BE reads [0, RW + 2·OUT) and writes [0, RW) and its own section, one section at a time', () => {
    expect(be.windowSize).to.equal(0x3f000);
    expect(be.readable(0, RW)).to.equal(true);
    expect(be.readable(RW, OUT)).to.equal(true);
    expect(be.readable(0x2f000, OUT)).to.equal(true);
    expect(be.readable(RW - 1, 2)).to.equal(false); // crosses R/W → BE section
    expect(be.readable(0x2f000 - 1, 2)).to.equal(false); // crosses BE → FE section
    expect(be.readable(0x3f000, 1)).to.equal(false);
    expect(be.writable(0, RW)).to.equal(true);
    expect(be.writable(RW, OUT)).to.equal(true);
    expect(be.writable(0x2f000, 1)).to.equal(false);
    expect(be.inOwnSection(RW, 70)).to.equal(true);
    expect(be.inOwnSection(0, 70)).to.equal(false);
  });

  it('the FE policy mirrors it (own section is peer 1)', () => {
    expect(fe.writable(0x2f000, OUT)).to.equal(true);
    expect(fe.writable(RW, 1)).to.equal(false);
  });

  it('enforced isolation: read only in the partner section, write only in the own one', () => {
    const iso = createAccessPolicy({ rwSize: RW, outputSectionSize: OUT, ownPeer: 0, enforceIsolation: true });
    expect(iso.readable(0x2f000, 16)).to.equal(true);
    expect(iso.readable(0, 16)).to.equal(false);
    expect(iso.readable(RW, 16)).to.equal(false);
    expect(iso.writable(RW, 16)).to.equal(true);
    expect(iso.writable(0, 16)).to.equal(false);
    expect(() => createAccessPolicy({ rwSize: RW, outputSectionSize: 0, ownPeer: 0, enforceIsolation: true })).to.throw(ArgumentError);
  });

  it('OUT = 0 (Linux layout): everything is the R/W section', () => {
    const p = createAccessPolicy({ rwSize: 0xf000, outputSectionSize: 0, ownPeer: 0 });
    expect(p.readable(0, 0xf000)).to.equal(true);
    expect(p.writable(0xeff0, 16)).to.equal(true);
    expect(p.readable(0xf000, 1)).to.equal(false);
    expect(p.inOwnSection(0, 16)).to.equal(false);
  });

  it('rejects bad policy arguments', () => {
    expect(() => createAccessPolicy({ rwSize: -1, outputSectionSize: 0, ownPeer: 0 })).to.throw(ArgumentError);
    expect(() => createAccessPolicy({ rwSize: 0, outputSectionSize: 0, ownPeer: 2 })).to.throw(ArgumentError);
  });

  it('checkQueueConfig accepts a valid queue and names the failing rule', () => {
    checkQueueConfig({ size: 8, desc: 0x100, avail: 0x180, used: 0x198 }, 8, be);
    expect(() => checkQueueConfig({ size: 8, desc: 0x100, avail: 0x180, used: 0x2f000 }, 8, be))
      .to.throw(RingError).with.property('code', RingErrorCode.RING_BOUNDS);
    expect(() => checkQueueConfig({ size: 8, desc: Number.POSITIVE_INFINITY, avail: 0x180, used: 0x198 }, 8, be))
      .to.throw(RingError).with.property('code', RingErrorCode.RING_BOUNDS);
  });
});
