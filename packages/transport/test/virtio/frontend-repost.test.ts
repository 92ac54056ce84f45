// FrontendQueue.repost() (device-api.ts DriverQueueHandle.repost): inside onUsed of a
// one-writable-buffer request, the same shared buffer goes back on the ring with the same token,
// neither freed nor zeroed; everywhere else it is refused and the buffer is freed as before. The
// test plays the device by hand on the rings in a plain ArrayBuffer.
import { expect } from 'chai';
import { standaloneQueue } from '../fixtures/standalone-queue.js';

const VIRTQ_DESC_F_WRITE = 2;

function setup() {
  const { mem, alloc, q, broken } = standaloneQueue();
  const dv = new DataView(mem.u8.buffer);
  const r = q.rings;
  let usedIdx = 0;
  let availSeen = 0;
  const device = {
    /** The next published avail entry: its head and first descriptor. */
    next(): { head: number; addr: number; len: number; flags: number } {
      expect(dv.getUint16(r.avail + 2, true)).to.be.greaterThan(availSeen, 'a published avail entry');
      const head = dv.getUint16(r.avail + 4 + 2 * (availSeen++ % r.size), true);
      const d = r.desc + 16 * head;
      return { head, addr: Number(dv.getBigUint64(d, true)), len: dv.getUint32(d + 8, true), flags: dv.getUint16(d + 12, true) };
    },
    /** Write `bytes` into the buffer and publish the used entry. */
    complete(head: number, addr: number, bytes: Uint8Array): void {
      mem.u8.set(bytes, addr);
      const e = r.used + 4 + 8 * (usedIdx % r.size);
      dv.setUint32(e, head, true);
      dv.setUint32(e + 4, bytes.length, true);
      dv.setUint16(r.used + 2, ++usedIdx, true);
    },
  };
  return { mem, alloc, q, device, broken };
}

describe('FrontendQueue.repost', () => {
  it('puts the same buffer back with the same token, unfreed and not zeroed again', () => {
    const { mem, alloc, q, device } = setup();
    expect(q.add(null, 256, 'rx')).to.equal(true);
    q.kick();
    const chunks = alloc.devicePool.usedChunks;
    const first = device.next();
    expect(first.flags & VIRTQ_DESC_F_WRITE).to.equal(VIRTQ_DESC_F_WRITE);
    const got: string[] = [];
    q.onUsed = (token, data) => {
      got.push(`${token}:${Buffer.from(data).toString()}`);
      expect(q.repost()).to.equal(true);
    };
    device.complete(first.head, first.addr, Buffer.from('hello'));
    expect(q.poll()).to.equal(1);
    expect(q.inFlight).to.equal(1);
    expect(alloc.devicePool.usedChunks).to.equal(chunks); // nothing freed, nothing allocated
    q.kick();
    const again = device.next();
    expect([again.addr, again.len, again.flags & VIRTQ_DESC_F_WRITE]).to.deep.equal([first.addr, 256, VIRTQ_DESC_F_WRITE]);
    // Not zeroed: the device finds what it wrote itself, nothing else.
    expect(Buffer.from(mem.u8.subarray(again.addr, again.addr + 5)).toString()).to.equal('hello');
    device.complete(again.head, again.addr, Buffer.from('world'));
    q.onUsed = (token, data) => got.push(`${token}:${Buffer.from(data).toString()}`);
    expect(q.poll()).to.equal(1);
    expect(got).to.deep.equal(['rx:hello', 'rx:world']);
    expect(q.inFlight).to.equal(0);
    expect(alloc.devicePool.usedChunks).to.equal(chunks - alloc.devicePool.allocationSize(256) / alloc.devicePool.chunkSize);
  });

  it('is refused outside onUsed and for a request with device-readable bytes (freed as before)', () => {
    const { alloc, q, device } = setup();
    expect(q.repost()).to.equal(false);
    const before = alloc.driverPool.usedChunks;
    expect(q.add(Buffer.from('question'), 64, 'rpc')).to.equal(true);
    q.kick();
    const d = device.next();
    let answer: boolean | null = null;
    q.onUsed = () => {
      answer = q.repost();
    };
    device.complete(d.head, d.addr, new Uint8Array(0)); // used len 0: nothing written

    expect(q.poll()).to.equal(1);
    expect(answer).to.equal(false);
    expect(q.inFlight).to.equal(0);
    expect(alloc.driverPool.usedChunks).to.equal(before);
  });

  it('is refused once the queue is no longer live, and a throwing onUsed frees the buffer anyway', () => {
    const { alloc, q, device, broken } = setup();
    const before = alloc.devicePool.usedChunks;
    expect(q.add(null, 128, 'a')).to.equal(true);
    expect(q.add(null, 128, 'b')).to.equal(true);
    q.kick();
    const a = device.next();
    const b = device.next();
    q.onUsed = (token) => {
      if (token === 'a') {
        q.live = false; // the session ends while the completion is delivered
        expect(q.repost()).to.equal(false);
        q.live = true;
        return;
      }
      expect(q.repost()).to.equal(true);
      throw new Error('consumer failed');
    };
    device.complete(a.head, a.addr, Buffer.from('x'));
    device.complete(b.head, b.addr, Buffer.from('y'));
    q.poll();
    expect(broken).to.have.length(1); // the throw breaks the device, as any throwing onUsed does
    expect(q.inFlight).to.equal(0);
    expect(alloc.devicePool.usedChunks).to.equal(before);
  });

  describe('on a full ring, where the completion freed the only descriptor and slot', () => {
    function full() {
      const t = setup();
      for (let i = 0; i < t.q.size; i++) expect(t.q.add(null, 64, `rx${i}`)).to.equal(true);
      t.q.kick();
      expect(t.q.freeDescriptors).to.equal(0);
      const first = t.device.next();
      for (let i = 1; i < t.q.size; i++) t.device.next();
      return { ...t, first };
    }

    it('repost() then add(): the repost is kept, the add is turned away (nothing dropped silently)', () => {
      const { q, device, first } = full();
      let reposted: boolean | null = null;
      let added: boolean | null = null;
      q.onUsed = () => {
        reposted = q.repost();
        added = q.add(null, 64, 'extra');
      };
      device.complete(first.head, first.addr, Buffer.from('a'));
      expect(q.poll()).to.equal(1);
      expect([reposted, added]).to.deep.equal([true, false]);
      expect(q.inFlight).to.equal(q.size);
      q.kick();
      const again = device.next();
      expect(again.addr).to.equal(first.addr); // the same buffer, back on the ring
    });

    it('add() then repost(): the add took the room, so repost() says false and the buffer is freed', () => {
      const { alloc, q, device, first } = full();
      const chunks = alloc.devicePool.usedChunks;
      let reposted: boolean | null = null;
      let added: boolean | null = null;
      q.onUsed = () => {
        added = q.add(null, 64, 'extra');
        reposted = q.repost();
      };
      device.complete(first.head, first.addr, Buffer.from('a'));
      expect(q.poll()).to.equal(1);
      expect([added, reposted]).to.deep.equal([true, false]);
      expect(q.inFlight).to.equal(q.size);
      expect(alloc.devicePool.usedChunks).to.equal(chunks); // one buffer freed, one allocated
    });
  });
});
