/**
 * Checklist item 39 (spec §6.4) at queue level: the driver queue rejects a used `id` not in
 * flight and a used `len` above the buffer size (and a `used.idx` jump), with a RingError code,
 * breaks, and hands every in-flight token back through failAll() so the transport can fail them
 * (§4.10: never dropped silently). Resetting and re-initialising is the transport's part.
 */
import { expect } from 'chai';
import { RingError } from '../../src/errors.js';
import { MemoryView } from '../../src/ring/memory.js';
import { packedRingAddresses } from '../../src/ring/ring-layout.js';
import { RingErrorCode as E } from '../../src/ring/validation.js';
import { DriverQueue } from '../../src/ring/driver-queue.js';
import { MockDevice } from '../../src/testing/mock-device.js';

const SIZE = 8;

function setup() {
  const mem = new MemoryView(new ArrayBuffer(65536));
  const q = packedRingAddresses(SIZE, 0x100);
  const drv = new DriverQueue<string>({ ...q, memory: mem, eventIdx: true, indirect: false });
  const dev = new MockDevice(mem, q);
  // Two requests in flight: 'rx' with 16 writable bytes (head 0), 'tx' read-only (head 1).
  drv.add(null, [0x2000, 8, 0x2008, 8], 'rx');
  drv.add([0x3000, 4], null, 'tx');
  drv.publish();
  return { mem, drv, dev };
}

function expectViolation(drv: DriverQueue<string>, code: string, delivered: string[] = []): void {
  const got: string[] = [];
  let err: unknown;
  try {
    drv.collect((t) => got.push(t));
  } catch (e) {
    err = e;
  }
  expect(err).to.be.instanceOf(RingError);
  expect((err as RingError).code).to.equal(code);
  expect((err as RingError).section).to.equal('6.4');
  expect(got).to.deep.equal(delivered);
  expect(drv.broken).to.equal(true);
  expect(drv.getUsed()).to.equal(undefined);
  expect(drv.publish()).to.equal(false);
}

describe('checklist 39: driver-side used-ring violations (§6.4)', () => {
  it('39-used-id-range: used id ≥ queue size → VSHM_ERR_USED_ID', () => {
    const { drv, dev } = setup();
    dev.pushUsed(SIZE, 0);
    dev.publish();
    expectViolation(drv, E.USED_ID);
    expect(drv.failAll().sort()).to.deep.equal(['rx', 'tx']);
  });

  it('39-used-id-not-in-flight: id of a free descriptor → VSHM_ERR_USED_ID', () => {
    const { drv, dev } = setup();
    dev.pushUsed(5, 0);
    dev.publish();
    expectViolation(drv, E.USED_ID);
  });

  it('39-used-id-not-a-head: id of a non-head descriptor of a chain in flight → VSHM_ERR_USED_ID', () => {
    const { drv, dev } = setup();
    dev.pushUsed(1, 0); // descriptor 1 is the second descriptor of 'rx' (heads are 0 and 2)
    dev.publish();
    expectViolation(drv, E.USED_ID);
  });

  it('39-used-id-twice: the same chain completed twice → VSHM_ERR_USED_ID after the first', () => {
    const { drv, dev } = setup();
    dev.pushUsed(0, 16);
    dev.pushUsed(0, 16);
    dev.publish();
    expectViolation(drv, E.USED_ID, ['rx']);
    expect(drv.failAll()).to.deep.equal(['tx']);
  });

  it('39-used-len: len above the writable buffer size → VSHM_ERR_USED_LEN', () => {
    const { drv, dev } = setup();
    dev.pushUsed(0, 17);
    dev.publish();
    expectViolation(drv, E.USED_LEN);
    expect(drv.failAll().sort()).to.deep.equal(['rx', 'tx']);
  });

  it('39-used-len-readonly: non-zero len for a chain without writable buffers → VSHM_ERR_USED_LEN', () => {
    const { drv, dev } = setup();
    dev.pushUsed(2, 1);
    dev.publish();
    expectViolation(drv, E.USED_LEN);
  });

  it('39-used-jump: used.idx more than queue size ahead → VSHM_ERR_USED_JUMP', () => {
    const { drv, dev } = setup();
    dev.setUsedIdx(SIZE + 1);
    expectViolation(drv, E.USED_JUMP);
  });

  it('len exactly the writable size and 0 for read-only chains are accepted', () => {
    const { drv, dev } = setup();
    dev.pushUsed(0, 16);
    dev.pushUsed(2, 0);
    dev.publish();
    const got: [string, number][] = [];
    drv.collect((t, len) => got.push([t, len]));
    expect(got).to.deep.equal([['rx', 16], ['tx', 0]]);
    expect(drv.broken).to.equal(false);
  });
});
