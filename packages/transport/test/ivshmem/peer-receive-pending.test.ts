/**
 * IvshmemPeer.receivePending(): the server messages already received are handled at once, not
 * on the socket watcher's next turn — what VirtioBackend relies on to tell a new front-end on a
 * departed one's id from the departed one (docs/decisions.md, "A new front-end on a departed
 * one's id").
 */
import { expect } from 'chai';
import { eventfdCount, usePeerRig } from '../fixtures/device-rigs.js';

describe('IvshmemPeer.receivePending (spec §1.6, §1.3)', () => {
  const rig = usePeerRig();

  it('handles a queued PEER_GONE and the EVENT_FDs of a newcomer on that id before this turn ends', async () => {
    const p = await rig.connect();
    const seen: string[] = [];
    p.on('peer-gone', (id: number) => {
      // Inside the batch: a nested call takes nothing (the newcomer is not known yet).
      p.receivePending();
      seen.push(`gone ${id}, present ${String(p.isPresent(id))}`);
    });
    const fresh = [0, 1, 2].map(() => rig.fake.eventfd());
    rig.fake.peerGone(0);
    for (let v = 0; v < 3; v++) rig.fake.eventFd(0, v, fresh[v]);
    // No await since the messages were sent: the socket watcher has not run.
    expect(p.isPresent(0)).to.equal(true);
    p.receivePending();
    expect(seen).to.deep.equal(['gone 0, present false']);
    expect(p.isPresent(0)).to.equal(true);
    p.doorbell(0, 1); // the newcomer's eventfd, not the departed peer's
    expect(eventfdCount(fresh[1])).to.equal(1);
    expect(eventfdCount(rig.efd[0][1])).to.equal(0);
    p.receivePending(); // nothing queued: a no-op
    expect(seen.length).to.equal(1);
  });

  it('after server EOF and after close it is a no-op', async () => {
    const p = await rig.connect();
    let gone = 0;
    p.on('server-gone', () => gone++);
    rig.fake.hangUp();
    p.receivePending();
    expect(gone).to.equal(1);
    p.receivePending();
    expect(gone).to.equal(1);
    p.close();
    p.receivePending();
  });
});
