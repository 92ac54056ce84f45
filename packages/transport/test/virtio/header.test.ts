/**
 * The §4.2 header wire format (header.ts): every offset and width as the spec's table gives it,
 * the honest `size`, and HeaderView — the ordered accessors both sides share — reading and
 * writing little-endian at those offsets.
 */
import { expect } from 'chai';
import { TransportError } from '../../src/errors.js';
import * as H from '../../src/virtio/header.js';
import { BackendHeader, FrontendHeader } from '../../src/virtio/header.js';
import { headerFieldWidth } from '../fixtures/transport-scripted-backend.js';

/** §4.2 table: [constant, offset the spec gives, width]. */
const TABLE: [number, number, number][] = [
  [H.HDR_REVISION, 0x00, 4],
  [H.HDR_SIZE, 0x04, 4],
  [H.HDR_WRITE_TRANSACTION, 0x08, 4],
  [H.HDR_DEVICE_FEATURES, 0x0c, 4],
  [H.HDR_DEVICE_FEATURES_SEL, 0x10, 4],
  [H.HDR_DRIVER_FEATURES, 0x14, 4],
  [H.HDR_DRIVER_FEATURES_SEL, 0x18, 4],
  [H.HDR_QUEUE_SEL, 0x1c, 4],
  [H.HDR_QUEUE_SIZE, 0x20, 2],
  [H.HDR_QUEUE_DEVICE_VECTOR, 0x22, 2],
  [H.HDR_QUEUE_DRIVER_VECTOR, 0x24, 2],
  [H.HDR_QUEUE_ENABLE, 0x26, 2],
  [H.HDR_QUEUE_DESC, 0x28, 8],
  [H.HDR_QUEUE_DRIVER, 0x30, 8],
  [H.HDR_QUEUE_DEVICE, 0x38, 8],
  [H.HDR_CONFIG_EVENT, 0x40, 1],
  [H.HDR_QUEUE_EVENT, 0x41, 1],
  [H.HDR_RESERVED, 0x42, 2],
  [H.HDR_DEVICE_STATUS, 0x44, 4],
  [H.HDR_CONFIG_GENERATION, 0x48, 4],
];

describe('§4.2 header layout and HeaderView', () => {
  it('pins every field offset and width of the §4.2 table', () => {
    for (const [constant, off, width] of TABLE) {
      expect(constant, `field at 0x${off.toString(16)}`).to.equal(off);
      expect(headerFieldWidth(off), `width at 0x${off.toString(16)}`).to.equal(width);
    }
    expect(H.HDR_CONFIG).to.equal(0x4c);
    expect(headerFieldWidth(0x4c)).to.equal(0); // config: no header field
    expect(headerFieldWidth(0x21)).to.equal(0); // inside queue_size
  });

  it('size is 0x4C + config length rounded up to 8', () => {
    expect(H.headerSize(0)).to.equal(0x50);
    expect(H.headerSize(12)).to.equal(88); // console config
    expect(H.headerSize(4)).to.equal(0x50);
  });

  it('accessors are little-endian at the field offsets, and one view sees the other side\'s stores', () => {
    const window = new ArrayBuffer(4096);
    const be = new BackendHeader(window, H.headerSize(12));
    const fe = new FrontendHeader(window, 1024);
    const dv = new DataView(window);
    be.loadQueueWindow(0x100, 2, 3, 1, 0x1122_3344_5566n, 0x2000n, 0x3000n);
    expect(dv.getUint16(H.HDR_QUEUE_SIZE, true)).to.equal(0x100);
    expect(dv.getUint16(H.HDR_QUEUE_DEVICE_VECTOR, true)).to.equal(2);
    expect(dv.getBigUint64(H.HDR_QUEUE_DESC, true)).to.equal(0x1122_3344_5566n);
    expect(fe.load64(H.HDR_QUEUE_DRIVER)).to.equal(0x2000n);
    expect(fe.load(H.HDR_QUEUE_DRIVER_VECTOR, 2)).to.equal(3);
    be.writeIdentity(7);
    expect(fe.load32(H.HDR_REVISION)).to.equal(1);
    expect(fe.load(H.HDR_SIZE, 4)).to.equal(88);
    expect(fe.configGeneration).to.equal(7);
    fe.writeTransaction = H.HDR_QUEUE_SEL;
    expect(dv.getUint32(H.HDR_WRITE_TRANSACTION, true)).to.equal(H.HDR_QUEUE_SEL);
    expect(be.loadTransaction()).to.equal(H.HDR_QUEUE_SEL);
    be.completeTransaction();
    expect(fe.writeTransaction).to.equal(0);
    be.raiseQueueEvent();
    expect(fe.queueEvent).to.equal(true);
    fe.clearQueueEvent();
    expect(dv.getUint8(H.HDR_QUEUE_EVENT)).to.equal(0);
  });

  it('word views over an R/W section of exactly 4 GiB reach the header (no 32-bit wrap of the length)', function () {
    let big: ArrayBuffer;
    try {
      big = new ArrayBuffer(2 ** 32); // lazily backed: only the header page is touched
    } catch {
      this.skip();
    }
    const h = new FrontendHeader(big, 2 ** 32);
    new DataView(big).setUint32(H.HDR_SIZE, 88, true);
    expect(h.load(H.HDR_SIZE, 4)).to.equal(88);
    expect(h.load(H.HDR_QUEUE_SIZE, 2)).to.equal(0);
    expect(h.load64(H.HDR_QUEUE_DESC)).to.equal(0n);
  });

  it('refuses a window too small for the header', () => {
    expect(() => new H.HeaderView(new ArrayBuffer(64), H.headerSize(0)))
      .to.throw(TransportError)
      .with.property('code', 'VSHM_ERR_HEADER_SIZE');
  });
});
