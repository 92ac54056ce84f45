/**
 * A newcomer's initial burst is as long as the options make it — up to max_peers × vectors
 * EVENT_FDs (§1.3 steps 6–7). The server sends it in one go, faster than any client reads, so
 * most of it waits in the newcomer's queue; a peer that reads must still get it whole (§1.3: the
 * queue exists so that every message arrives), not be dropped as a peer that never reads.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { countFds } from '../fixtures/raw-client.js';
import { useServerRig } from '../fixtures/server-rig.js';

describe('IvshmemServer: a legitimate burst longer than the stalled-peer bound (§1.3)', function () {
  const rig = useServerRig();

  it('-n 10 -V 64: every newcomer gets its whole burst and stays connected', async () => {
    const s = await rig.start({ maxPeers: 10, vectors: 64 });
    const fdsAtStart = countFds();
    const gone: string[] = [];
    s.on('peer-gone', (id: number, reason: string) => gone.push(`${id}: ${reason}`));
    const joined = [];
    for (let k = 0; k < 10; k++) {
      const j = await rig.join(k, 64);
      expect(j.id).to.equal(k);
      expect(j.burst.length).to.equal(1 + (k + 1) * 64);
      joined.push(j);
      // The earlier peers read what they are owed (EVENT_FD(new, v)) so that only the newcomer's
      // burst is under test here. (About 6000 received fds in all; the rig closes them.)
      for (const p of joined.slice(0, -1)) await p.c.take(64);
    }
    expect(gone).to.deep.equal([]);
    expect(s.peerIds).to.have.length(10);
    // Every peer leaves: the server's eventfds and any queued dups are closed again.
    for (const j of joined) {
      const left = once(s, 'peer-gone');
      j.c.close();
      await left;
    }
    expect(countFds(), 'fds after every peer left').to.equal(fdsAtStart);
  });
});
