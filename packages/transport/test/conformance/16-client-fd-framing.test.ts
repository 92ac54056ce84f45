/**
 * §8 item 16: back-to-back messages keep their fds; truncated control data is an error and leaks
 * no fd (§1.8).
 */
import { expect } from 'chai';
import binding from '@vshm/addon';
import { encodeInit, type InitMessage } from '../../src/ivshmem/protocol.js';
import { useReaderRig } from '../fixtures/reader-rig.js';

const b = binding;

describe('§8 item 16: back-to-back messages keep their fds; truncated control data leaks nothing', function () {
  describe('ServerReader with a fake server (§1.8)', function () {
    const rig = useReaderRig();

    it('attributes each fd to its message in a back-to-back burst (item 16)', () => {
      // Tag every eventfd by its counter so the receiving side can tell which fd it got.
      const tags = new Map<string, number>();
      rig.fake.init({ id: 1 }, rig.mem);
      for (const id of [0, 1]) {
        for (let v = 0; v < 3; v++) {
          const tag = 10 * (id + 1) + v;
          tags.set(`${id}/${v}`, tag);
          rig.fake.eventFd(id, v, rig.fake.eventfd(tag));
        }
      }
      expect(rig.reader.pump()).to.equal('again');
      expect(rig.reader.burstComplete).to.equal(true);
      expect(rig.sink.events.map((e) => e[0])).to.deep.equal(['init', ...Array(6).fill('eventfd')]);
      const [, init, memFd, size] = rig.sink.events[0] as ['init', InitMessage, number, number];
      expect(init).to.include({ id: 1, maxPeers: 2, vectors: 3 });
      expect(size).to.equal(65536);
      expect(b.fstat(memFd).ino).to.equal(b.fstat(rig.mem).ino);
      for (const e of rig.sink.events.slice(1)) {
        const [, id, v, fd] = e as ['eventfd', number, number, number];
        expect(b.eventfdRead(fd), `fd of ${id}/${v}`).to.equal(tags.get(`${id}/${v}`));
      }
    });

    it('rejects truncated control data (two fds on one message) without leaking (item 16)', () =>
      rig.rejects('VSHM_ERR_MSG_CTRUNC', () => {
        const msg = encodeInit({ id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0 });
        rig.fake.send(msg, [rig.mem, rig.fake.eventfd()]);
      }));
  });
});
