/**
 * §8 item 13: INIT with `compatible_version` 3, `len` 39, `vectors` 0 or 1025, `id` ≥ `max_peers`,
 * or too little memory is rejected; `len` 48 is accepted (§1.8).
 */
import { expect } from 'chai';
import { encodeInit } from '../../src/ivshmem/protocol.js';
import { useReaderRig } from '../fixtures/reader-rig.js';

describe('§8 item 13: INIT validation — bad versions, lengths, vectors, ids, memory rejected; len 48 accepted', function () {
  describe('ServerReader with a fake server (§1.8)', function () {
    const rig = useReaderRig();

    it('accepts an INIT with len 48, skipping the extra bytes (item 13)', () => {
      const msg = Buffer.alloc(48);
      encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 }).copy(msg);
      msg.writeUInt32LE(48, 4);
      msg.fill(0xee, 40);
      rig.fake.send(msg, [rig.mem]);
      rig.fake.eventFd(0, 0, rig.fake.eventfd());
      rig.reader.pump();
      expect(rig.sink.events.map((e) => e[0])).to.deep.equal(['init', 'eventfd']);
      expect(rig.reader.burstComplete).to.equal(true);
    });

    describe('rejects INIT (item 13)', () => {
      it('compatible_version 3', () => rig.rejects('VSHM_ERR_INIT_VERSION', () => rig.fake.init({ compatibleVersion: 3 }, rig.mem)));
      it('len 39', () =>
        rig.rejects('VSHM_ERR_MSG_SHORT', () => {
          const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 }).subarray(0, 39);
          msg.writeUInt32LE(39, 4);
          rig.fake.send(msg, [rig.mem]);
        }));
      it('vectors 0', () => rig.rejects('VSHM_ERR_INIT_VECTORS', () => rig.fake.init({ vectors: 0 }, rig.mem)));
      it('vectors 1025', () => rig.rejects('VSHM_ERR_INIT_VECTORS', () => rig.fake.init({ vectors: 1025 }, rig.mem)));
      it('id ≥ max_peers', () => rig.rejects('VSHM_ERR_INIT_ID', () => rig.fake.init({ id: 2, maxPeers: 2 }, rig.mem)));
      it('max_peers 0', () => rig.rejects('VSHM_ERR_INIT_MAX_PEERS', () => rig.fake.init({ maxPeers: 0 }, rig.mem)));
      it('too little memory', () =>
        rig.rejects('VSHM_ERR_INIT_MEMORY', () => rig.fake.init({ maxPeers: 2, outputSectionSize: 32768 }, rig.fake.memfd(65536))));
      it('virtio protocol with max_peers 3', () =>
        rig.rejects('VSHM_ERR_INIT_PROTOCOL', () => rig.fake.init({ maxPeers: 3, protocol: 0x8003 }, rig.mem)));
      it('without the memory fd', () => rig.rejects('VSHM_ERR_MSG_NO_FD', () => rig.fake.init({}, null)));
      it('a second INIT', () =>
        rig.rejects('VSHM_ERR_MSG_ORDER', () => {
          rig.fake.init({}, rig.mem);
          rig.fake.init({}, rig.mem);
        }));
      it('len above 4096', () =>
        rig.rejects('VSHM_ERR_MSG_LEN', () => {
          const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 });
          msg.writeUInt32LE(4097, 4);
          rig.fake.send(msg, [rig.mem]);
        }));
    });
  });
});
