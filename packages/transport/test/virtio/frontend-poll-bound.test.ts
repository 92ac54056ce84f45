// FrontendQueue.poll() against a device that completes as fast as the driver posts: every
// completion's onUsed posts the next request, and the device (played by hand on the rings)
// completes it at once. poll() must hand back the event loop after a bounded number of
// deliveries and leave the rest to a later turn — never run for as long as the device keeps up.
import { expect } from 'chai';
import { standaloneQueue } from '../fixtures/standalone-queue.js';

function handDevice(mem: { u8: Uint8Array }, r: { desc: number; avail: number; used: number; size: number }) {
  const dv = new DataView(mem.u8.buffer);
  let usedIdx = 0;
  let availSeen = 0;
  return {
    /** Complete every published chain with `len` bytes written; returns how many. */
    completeAll(len: number): number {
      let n = 0;
      while (dv.getUint16(r.avail + 2, true) !== availSeen) {
        const head = dv.getUint16(r.avail + 4 + 2 * (availSeen % r.size), true);
        availSeen = (availSeen + 1) & 0xffff;
        const e = r.used + 4 + 8 * (usedIdx % r.size);
        dv.setUint32(e, head, true);
        dv.setUint32(e + 4, len, true);
        usedIdx = (usedIdx + 1) & 0xffff;
        dv.setUint16(r.used + 2, usedIdx, true);
        n++;
      }
      return n;
    },
  };
}

describe('FrontendQueue.poll bounds its work per call', () => {
  for (const size of [8, 256]) {
    it(`size ${size}: a device that completes each re-posted request at once does not hold poll() (the rest comes on later turns)`, async () => {
      const { mem, q, broken } = standaloneQueue<number>({ size, memory: 1 << 20 });
      const device = handDevice(mem, q.rings);
      const total = 200 * size; // far more than any bound poll() may have
      let delivered = 0;
      let posted = 0;
      const post = (): void => {
        expect(q.add(null, 64, posted++)).to.equal(true);
        q.kick();
      };
      q.onUsed = () => {
        delivered++;
        if (posted < total) {
          post();
          device.completeAll(1); // the device keeps up: the next entry is there before we look
        }
      };
      post();
      device.completeAll(1);
      const first = q.poll();
      expect(broken).to.deep.equal([]);
      expect(first).to.be.greaterThan(0);
      expect(first, 'completions delivered by one poll()').to.be.at.most(16 * size);
      // The rest is not lost: poll() re-queued itself for the next turn of the event loop.
      for (let turns = 0; delivered < total && turns < 100000; turns++) await new Promise<void>((res) => setImmediate(res));
      expect(delivered).to.equal(total);
      expect(q.inFlight).to.equal(0);
      expect(broken).to.deep.equal([]);
    });
  }
});
