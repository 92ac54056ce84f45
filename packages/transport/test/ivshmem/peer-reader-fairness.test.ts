/**
 * ServerReader fairness (§1.8 client): a server that keeps the socket full of valid messages must
 * not hold the peer's event loop inside one pump() forever; the reader yields after a bounded
 * batch and the (level-triggered) watcher calls it again.
 */
import { expect } from 'chai';
import { MAX_MESSAGES_PER_PUMP } from '../../src/ivshmem/peer-reader.js';
import { useReaderRig } from '../fixtures/reader-rig.js';

describe('ServerReader fairness (spec §1.8)', () => {
  const rig = useReaderRig();

  it('dispatches at most MAX_MESSAGES_PER_PUMP messages per pump(), the rest on later pumps', () => {
    rig.fake.init({ id: 1, maxPeers: 2, vectors: 1 }, rig.mem);
    rig.fake.eventFd(1, 0, rig.fake.eventfd());
    const pairs = MAX_MESSAGES_PER_PUMP; // 2 × as many messages as one pump may take
    const efd = rig.fake.eventfd();
    for (let i = 0; i < pairs; i++) {
      rig.fake.eventFd(0, 0, efd);
      rig.fake.peerGone(0);
    }
    const total = 2 + 2 * pairs;
    expect(rig.reader.pump()).to.equal('again');
    expect(rig.sink.events.length).to.equal(MAX_MESSAGES_PER_PUMP);
    let pumps = 1;
    while (rig.sink.events.length < total && pumps < 100) {
      rig.reader.pump();
      pumps++;
    }
    expect(rig.sink.events.length).to.equal(total);
    expect(pumps).to.be.greaterThan(2);
  });
});
