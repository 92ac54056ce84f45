import { expect } from 'chai';
import { ProtocolError } from '../../src/errors.js';
import {
  decodeHeader,
  decodeMessage,
  encodeEventFd,
  encodeInit,
  encodePeerGone,
  EVENT_FD_LEN,
  HEADER_SIZE,
  INIT_LEN,
  IVSHMEM_VERSION,
  MAX_MESSAGE_LEN,
  minLength,
  MSG_EVENT_FD,
  MSG_INIT,
  MSG_PEER_GONE,
  OFFSETS,
  PEER_GONE_LEN,
  protocolForPeer,
  validateInit,
  type InitMessage,
} from '../../src/ivshmem/protocol.js';

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

function expectProtocolError(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).to.be.instanceOf(ProtocolError);
  expect((caught as ProtocolError).code).to.equal(code);
  expect((caught as ProtocolError).section).to.equal('1.8');
}

const INIT_GOLDEN = hex(`
  00000000 28000000
  02000000 02000000
  01000000 02000000
  03000000 03800000
  0010000000000000`);

const goodInit: InitMessage = {
  type: 0,
  len: 40,
  version: 2,
  compatibleVersion: 2,
  id: 1,
  maxPeers: 2,
  vectors: 3,
  protocol: 0x8003,
  outputSectionSize: 0,
};

describe('ivshmem protocol (§1.2 wire format)', () => {
  describe('constants and offsets', () => {
    it('pins the message types, lengths and version', () => {
      expect([MSG_INIT, MSG_EVENT_FD, MSG_PEER_GONE]).to.deep.equal([0, 1, 2]);
      expect([HEADER_SIZE, INIT_LEN, EVENT_FD_LEN, PEER_GONE_LEN, MAX_MESSAGE_LEN]).to.deep.equal([8, 40, 16, 12, 4096]);
      expect(IVSHMEM_VERSION).to.equal(2);
      expect([minLength(0), minLength(1), minLength(2), minLength(7)]).to.deep.equal([40, 16, 12, 8]);
    });

    it('pins every field offset of §1.2', () => {
      expect(OFFSETS).to.deep.equal({
        type: 0,
        len: 4,
        init: { version: 8, compatibleVersion: 12, id: 16, maxPeers: 20, vectors: 24, protocol: 28, outputSectionSize: 32 },
        eventFd: { id: 8, vector: 12 },
        peerGone: { id: 8 },
      });
    });

    it('places each INIT field at its offset (distinct values)', () => {
      const b = encodeInit({
        id: 0x11,
        maxPeers: 0x22,
        vectors: 0x33,
        protocol: 0x44,
        outputSectionSize: 0x0102_0304_0506,
        version: 0x55,
        compatibleVersion: 0x66,
      });
      expect(b.readUInt32LE(0)).to.equal(0);
      expect(b.readUInt32LE(4)).to.equal(40);
      expect(b.readUInt32LE(8)).to.equal(0x55);
      expect(b.readUInt32LE(12)).to.equal(0x66);
      expect(b.readUInt32LE(16)).to.equal(0x11);
      expect(b.readUInt32LE(20)).to.equal(0x22);
      expect(b.readUInt32LE(24)).to.equal(0x33);
      expect(b.readUInt32LE(28)).to.equal(0x44);
      expect(b.readBigUInt64LE(32)).to.equal(0x0102_0304_0506n);
    });
  });

  describe('golden bytes', () => {
    it('INIT is exactly 40 bytes', () => {
      const b = encodeInit({ id: 1, maxPeers: 2, vectors: 3, protocol: 0x8003, outputSectionSize: 4096 });
      expect(b.length).to.equal(40);
      expect(b.toString('hex')).to.equal(INIT_GOLDEN.toString('hex'));
    });

    it('EVENT_FD is exactly 16 bytes', () => {
      const b = encodeEventFd(5, 0x0102);
      expect(b.toString('hex')).to.equal(hex('01000000 10000000 05000000 02010000').toString('hex'));
    });

    it('PEER_GONE is exactly 12 bytes', () => {
      const b = encodePeerGone(0x01020304);
      expect(b.toString('hex')).to.equal(hex('02000000 0c000000 04030201').toString('hex'));
    });

    it('encodes a 64-bit output_section_size little-endian', () => {
      const b = encodeInit({ id: 0, maxPeers: 1, vectors: 1, protocol: 0, outputSectionSize: 2 ** 40 });
      expect(b.subarray(32).toString('hex')).to.equal('0000000000010000');
    });

    it('refuses values that do not fit the fields', () => {
      expect(() => encodeEventFd(-1, 0)).to.throw(RangeError);
      expect(() => encodeEventFd(0, 2 ** 32)).to.throw(RangeError);
      expect(() => encodePeerGone(1.5)).to.throw(RangeError);
      expect(() => encodeInit({ id: 0, maxPeers: 1, vectors: 1, protocol: 0, outputSectionSize: -1 })).to.throw(RangeError);
    });
  });

  describe('decode', () => {
    it('round-trips INIT', () => {
      const m = decodeMessage(INIT_GOLDEN);
      expect(m).to.deep.equal({ ...goodInit, outputSectionSize: 4096 });
      expect(encodeInit(m as InitMessage).equals(INIT_GOLDEN)).to.equal(true);
    });

    it('round-trips EVENT_FD and PEER_GONE', () => {
      expect(decodeMessage(encodeEventFd(3, 63))).to.deep.equal({ type: 1, len: 16, id: 3, vector: 63 });
      expect(decodeMessage(encodePeerGone(1023))).to.deep.equal({ type: 2, len: 12, id: 1023 });
    });

    it('decodes the header alone', () => {
      expect(decodeHeader(INIT_GOLDEN.subarray(0, 8))).to.deep.equal({ type: 0, len: 40 });
      expect(decodeHeader(new Uint8Array(encodePeerGone(1)))).to.deep.equal({ type: 2, len: 12 });
    });

    it('reads from a Uint8Array at a non-zero byte offset', () => {
      const big = Buffer.alloc(64, 0xee);
      encodeEventFd(7, 2).copy(big, 13);
      const slice = new Uint8Array(big.buffer, big.byteOffset + 13, 16);
      expect(decodeMessage(slice)).to.deep.equal({ type: 1, len: 16, id: 7, vector: 2 });
    });

    it('skips bytes beyond the minimum (a 48-byte INIT is accepted)', () => {
      const b = Buffer.concat([INIT_GOLDEN, Buffer.alloc(8, 0xff)]);
      b.writeUInt32LE(48, 4);
      const m = decodeMessage(b);
      expect(m.len).to.equal(48);
      expect((m as InitMessage).outputSectionSize).to.equal(4096);
      expect((m as InitMessage).protocol).to.equal(0x8003);
    });

    it('passes unknown types through as {type, len}', () => {
      const b = Buffer.alloc(20);
      b.writeUInt32LE(9, 0);
      b.writeUInt32LE(20, 4);
      expect(decodeMessage(b)).to.deep.equal({ type: 9, len: 20 });
    });

    it('rejects len below 8 or above 4096', () => {
      const b = Buffer.alloc(8);
      b.writeUInt32LE(7, 4);
      expectProtocolError(() => decodeHeader(b), 'VSHM_ERR_MSG_LEN');
      b.writeUInt32LE(4097, 4);
      expectProtocolError(() => decodeHeader(b), 'VSHM_ERR_MSG_LEN');
      b.writeUInt32LE(4096, 4);
      expect(decodeHeader(b).len).to.equal(4096);
    });

    it('rejects a header shorter than 8 bytes and a body shorter than len', () => {
      expectProtocolError(() => decodeHeader(new Uint8Array(7)), 'VSHM_ERR_MSG_TRUNCATED');
      expectProtocolError(() => decodeMessage(INIT_GOLDEN.subarray(0, 39)), 'VSHM_ERR_MSG_TRUNCATED');
    });

    it('rejects len below the type minimum (INIT 39, EVENT_FD 15, PEER_GONE 11)', () => {
      for (const [msg, len] of [
        [INIT_GOLDEN, 39],
        [encodeEventFd(0, 0), 15],
        [encodePeerGone(0), 11],
      ] as const) {
        const b = Buffer.from(msg);
        b.writeUInt32LE(len, 4);
        expectProtocolError(() => decodeMessage(b), 'VSHM_ERR_MSG_SHORT');
      }
    });

    it('rejects an output_section_size ≥ 2^53', () => {
      const b = Buffer.from(INIT_GOLDEN);
      b.writeBigUInt64LE(2n ** 53n, 32);
      expectProtocolError(() => decodeMessage(b), 'VSHM_ERR_INIT_OUTPUT_SIZE');
      b.writeBigUInt64LE(2n ** 53n - 1n, 32);
      expect((decodeMessage(b) as InitMessage).outputSectionSize).to.equal(Number.MAX_SAFE_INTEGER);
    });
  });

  describe('validateInit (§1.8)', () => {
    it('accepts a good INIT with enough memory', () => {
      validateInit(goodInit, 4096);
      validateInit({ ...goodInit, outputSectionSize: 4096 }, 3 * 4096);
      validateInit({ ...goodInit, maxPeers: 1024, id: 1023, vectors: 1024, protocol: 0x7fff });
    });

    const cases: [string, Partial<InitMessage>, string, number?][] = [
      ['compatible_version 3', { compatibleVersion: 3 }, 'VSHM_ERR_INIT_VERSION'],
      ['compatible_version 1', { compatibleVersion: 1 }, 'VSHM_ERR_INIT_VERSION'],
      ['max_peers 0', { maxPeers: 0, protocol: 0 }, 'VSHM_ERR_INIT_MAX_PEERS'],
      ['max_peers 1025', { maxPeers: 1025, protocol: 0 }, 'VSHM_ERR_INIT_MAX_PEERS'],
      ['id = max_peers', { id: 2 }, 'VSHM_ERR_INIT_ID'],
      ['vectors 0', { vectors: 0 }, 'VSHM_ERR_INIT_VECTORS'],
      ['vectors 1025', { vectors: 1025 }, 'VSHM_ERR_INIT_VECTORS'],
      ['virtio protocol with 3 peers', { maxPeers: 3, protocol: 0x8000 }, 'VSHM_ERR_INIT_PROTOCOL'],
      ['memory below 4096', {}, 'VSHM_ERR_INIT_MEMORY', 4095],
      ['memory below 4096 + N·OUT', { outputSectionSize: 4096 }, 'VSHM_ERR_INIT_MEMORY', 3 * 4096 - 1],
      ['N·OUT beyond 2^53 (no overflow)', { maxPeers: 1024, id: 0, protocol: 0, outputSectionSize: 2 ** 52 }, 'VSHM_ERR_INIT_MEMORY', Number.MAX_SAFE_INTEGER],
    ];
    for (const [name, patch, code, size] of cases) {
      it(`rejects ${name} with ${code}`, () => {
        expectProtocolError(() => validateInit({ ...goodInit, ...patch }, size), code);
      });
    }

    it('accepts protocol < 0x8000 with any max_peers', () => {
      validateInit({ ...goodInit, maxPeers: 3, protocol: 0x7fff });
    });
  });

  describe('protocolForPeer (§1.5)', () => {
    it('rewrites virtio protocols per peer and leaves others unchanged', () => {
      expect(protocolForPeer(0x8003, 0)).to.equal(0xc003);
      expect(protocolForPeer(0x8003, 1)).to.equal(0x8003);
      expect(protocolForPeer(0xc003, 0)).to.equal(0xc003);
      expect(protocolForPeer(0xc003, 1)).to.equal(0x8003);
      expect(protocolForPeer(0x1234, 0)).to.equal(0x1234);
      expect(protocolForPeer(0x1234, 1)).to.equal(0x1234);
      expect(protocolForPeer(0x5234, 0)).to.equal(0x5234);
    });
  });
});
