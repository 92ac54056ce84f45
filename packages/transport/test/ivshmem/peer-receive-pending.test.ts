/**
 * IvshmemPeer.receivePending(): the server messages already received are handled at once, not
 * on the socket watcher's next turn — what VirtioBackend relies on to tell a new front-end on a
 * departed one's id from the departed one (docs/decisions.md, "A new front-end on a departed
 * one's id").
 */
import { expect } from 'chai';
import { writeSync } from 'node:fs';
import { eventfdCount, usePeerRig } from '../fixtures/device-rigs.js';
import { until } from '../fixtures/until.js';

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

describe('IvshmemPeer: a newcomer on a departed peer\'s id (spec §3 peer-state)', () => {
  const rig = usePeerRig();

  it('reports the newcomer\'s state even when it equals the departed peer\'s last one', async () => {
    const p = await rig.connect();
    const events: string[] = [];
    p.on('peer-state', (id: number, s: number) => events.push(`state ${id} ${s}`));
    p.on('peer-gone', (id: number) => events.push(`gone ${id}`));
    rig.table[0] = 1; // the back-end READY
    signal(rig.efd[1][0]);
    await until(() => events.length === 1, 'the first peer-state');
    // It leaves; a newcomer takes id 0 and is READY (and rings us) before we handled the
    // PEER_GONE: one batch of server messages, one vector-0 wake-up after it.
    const fresh = [0, 1, 2].map(() => rig.fake.eventfd());
    rig.fake.peerGone(0);
    for (let v = 0; v < 3; v++) rig.fake.eventFd(0, v, fresh[v]);
    p.receivePending();
    signal(rig.efd[1][0]);
    await until(() => events.length === 4, 'peer-gone and the newcomer\'s state');
    expect(events).to.deep.equal(['state 0 1', 'gone 0', 'state 0 0', 'state 0 1']);
  });
});

function signal(efd: number): void {
  const one = Buffer.alloc(8);
  one.writeBigUInt64LE(1n);
  writeSync(efd, one);
}
