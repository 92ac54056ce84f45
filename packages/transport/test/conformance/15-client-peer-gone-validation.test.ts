/**
 * §8 item 15: PEER_GONE for an unknown or the own ID is rejected (§1.8).
 */
import { expect } from 'chai';
import { useReaderRig } from '../fixtures/reader-rig.js';

describe('§8 item 15: PEER_GONE for an unknown or the own ID is rejected', function () {
  describe('ServerReader with a fake server (§1.8)', function () {
    const rig = useReaderRig();

    describe('PEER_GONE (item 15)', () => {
      beforeEach(() => {
        rig.fake.init({ id: 1, maxPeers: 3, vectors: 1 }, rig.mem);
        rig.fake.eventFd(0, 0, rig.fake.eventfd());
      });
      it('is accepted for a present peer, which may then come back', () => {
        rig.fake.peerGone(0);
        rig.fake.eventFd(0, 0, rig.fake.eventfd());
        rig.reader.pump();
        expect(rig.sink.events.map((e) => e[0])).to.deep.equal(['init', 'eventfd', 'gone', 'eventfd']);
      });
      it('rejects an unknown id', () => rig.rejects('VSHM_ERR_PEER_GONE_ID', () => rig.fake.peerGone(2)));
      it('rejects the own id', () => rig.rejects('VSHM_ERR_PEER_GONE_ID', () => rig.fake.peerGone(1)));
      it('rejects an id ≥ max_peers', () => rig.rejects('VSHM_ERR_PEER_GONE_ID', () => rig.fake.peerGone(3)));
      it('rejects a peer gone twice', () =>
        rig.rejects('VSHM_ERR_PEER_GONE_ID', () => {
          rig.fake.peerGone(0);
          rig.fake.peerGone(0);
        }));
      it('rejects an fd on PEER_GONE', () => rig.rejects('VSHM_ERR_MSG_FDS', () => rig.fake.peerGone(0, rig.fake.eventfd())));
    });
  });
});
