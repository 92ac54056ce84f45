/**
 * §8 item 14: EVENT_FD out of order, with vector ≥ `vectors`, or without fd is rejected (§1.8).
 */
import { useReaderRig } from '../fixtures/reader-rig.js';

describe('§8 item 14: EVENT_FD out of order, vector ≥ vectors or without fd is rejected', function () {
  describe('ServerReader with a fake server (§1.8)', function () {
    const rig = useReaderRig();

    describe('rejects EVENT_FD (item 14)', () => {
      beforeEach(() => rig.fake.init({ id: 1, vectors: 3 }, rig.mem));
      it('out of order', () => rig.rejects('VSHM_ERR_EVENTFD_ORDER', () => rig.fake.eventFd(0, 1, rig.fake.eventfd())));
      it('repeated vector', () =>
        rig.rejects('VSHM_ERR_EVENTFD_ORDER', () => {
          rig.fake.eventFd(0, 0, rig.fake.eventfd());
          rig.fake.eventFd(0, 0, rig.fake.eventfd());
        }));
      it('vector ≥ vectors', () =>
        rig.rejects('VSHM_ERR_EVENTFD_VECTOR', () => {
          for (let v = 0; v < 3; v++) rig.fake.eventFd(0, v, rig.fake.eventfd());
          rig.fake.eventFd(0, 3, rig.fake.eventfd());
        }));
      it('id ≥ max_peers', () => rig.rejects('VSHM_ERR_EVENTFD_ID', () => rig.fake.eventFd(2, 0, rig.fake.eventfd())));
      it('without fd', () => rig.rejects('VSHM_ERR_MSG_NO_FD', () => rig.fake.eventFd(0, 0, null)));
    });
  });
});
