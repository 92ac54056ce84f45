/**
 * DriverQueue against DeviceQueue over one buffer: the two real engines, batched exchanges, and
 * notification counts with and without EVENT_IDX. Deterministic: both sides run in one thread,
 * "notifications" are counted return values.
 */
import { expect } from 'chai';
import { MemoryView } from '../../src/ring/memory.js';
import { packedRingAddresses } from '../../src/ring/ring-layout.js';
import { createAccessPolicy } from '../../src/ring/validation.js';
import { DeviceQueue } from '../../src/ring/device-queue.js';
import { DriverQueue } from '../../src/ring/driver-queue.js';

interface Counts {
  kicks: number;
  interrupts: number;
  messages: number;
}

function pair(size: number, eventIdx: boolean, indirect = false) {
  const mem = new MemoryView(new ArrayBuffer(65536));
  const q = packedRingAddresses(size, 0x100);
  const policy = createAccessPolicy({ rwSize: 65536, outputSectionSize: 0, ownPeer: 0 });
  const drv = new DriverQueue<number>({ ...q, memory: mem, eventIdx, indirect });
  const dev = new DeviceQueue({ ...q, memory: mem, policy, eventIdx, indirect });
  return { mem, drv, dev };
}

/**
 * A batched echo: the driver posts `batch` 64-byte requests per round and kicks once; the device,
 * when kicked (or when it re-checks after enabling notifications), drains everything, echoes and
 * publishes once; the driver collects on an interrupt the same way. Returns the counts.
 */
function exchange(size: number, eventIdx: boolean, rounds: number, batch: number, deviceEvery = 1, simpleDevice = false, indirect = false): Counts {
  const { mem, drv, dev } = pair(size, eventIdx, indirect);
  const counts: Counts = { kicks: 0, interrupts: 0, messages: 0 };
  const MSG = 64;
  const tmp = new Uint8Array(MSG);
  let seq = 0;
  let deviceWake = false;
  let driverWake = false;
  /** Echo every available chain, publish, and count the interrupt if one is due. */
  const serve = () => {
    for (let c = dev.pop(); c; c = dev.pop()) {
      c.read(tmp);
      c.write(tmp);
      dev.push(c.head, MSG);
    }
    if (dev.publish()) {
      counts.interrupts++;
      driverWake = true;
    }
  };
  const deviceRun = () => {
    if (simpleDevice) {
      // No explicit notification protocol: pop until null, publish (pop re-arms avail_event).
      serve();
      return;
    }
    do {
      dev.disableNotifications();
      serve();
    } while (dev.enableNotifications());
  };
  const driverRun = () => {
    do {
      drv.disableCallbacks();
      drv.collect((token, len) => {
        if (len !== MSG || mem.u8[0x4000 + (token % size) * 2 * MSG + MSG] !== (token & 0xff)) expect.fail(`bad echo of ${token}`);
        counts.messages++;
      });
    } while (drv.enableCallbacks());
  };
  for (let r = 0; r < rounds; r++) {
    for (let b = 0; b < batch && drv.numFree > 0; b++) {
      const slot = 0x4000 + (seq % size) * 2 * MSG;
      mem.u8[slot] = seq & 0xff;
      // Indirect: one descriptor (and avail entry) per request, so a batch can fill the ring.
      if (indirect) drv.addIndirect([slot, MSG], [slot + MSG, MSG], seq, 0x8000 + (seq++ % size) * 32);
      else drv.add([slot, MSG], [slot + MSG, MSG], seq++);
    }
    if (drv.kick()) {
      counts.kicks++;
      deviceWake = true;
    }
    // A slow device: it gets to run only every `deviceEvery` rounds (kicks stay pending).
    if ((r + 1) % deviceEvery !== 0) continue;
    // Deliver wake-ups; a side only runs when notified (as with doorbells).
    while (deviceWake || driverWake) {
      if (deviceWake) {
        deviceWake = false;
        deviceRun();
      }
      if (driverWake) {
        driverWake = false;
        driverRun();
      }
    }
  }
  expect(counts.messages).to.equal(seq); // nothing lost
  expect(drv.inFlightCount).to.equal(0);
  return counts;
}

describe('DriverQueue ↔ DeviceQueue', () => {
  for (const eventIdx of [false, true]) {
    it(`completes every batched request without lost wake-ups (eventIdx=${eventIdx})`, () => {
      const c = exchange(64, eventIdx, 500, 32);
      expect(c.messages).to.equal(500 * 32);
      expect(c.kicks).to.equal(500); // one kick per batch, each needed (device idle between rounds)
      expect(c.interrupts).to.equal(500);
    });
  }

  // Past the u16 wrap of avail.idx / used.idx (65535 → 0) and with batches of exactly the queue
  // size (vring_need_event's window is then the whole ring): still one kick and one interrupt per
  // batch, nothing lost — also with a slow device and a device that only pops until null.
  for (const eventIdx of [false, true]) {
    it(`across the u16 index wrap, batches of exactly the queue size lose nothing (eventIdx=${eventIdx})`, () => {
      const full = exchange(64, eventIdx, 1100, 64, 1, false, true);
      expect(full.messages).to.equal(1100 * 64);
      expect([full.kicks, full.interrupts]).to.deep.equal([1100, 1100]);
      const slow = exchange(16, eventIdx, 17000, 4, 4, false, true);
      expect(slow.messages).to.equal(17000 * 4);
      expect(slow.interrupts).to.equal(4250);
      expect(slow.kicks).to.equal(eventIdx ? 4250 : 17000);
      if (eventIdx) {
        const simple = exchange(8, true, 8300, 8, 1, true, true);
        expect(simple.messages).to.equal(8300 * 8);
        expect(simple.kicks).to.equal(8300);
      }
    });
  }

  it('a slow device: EVENT_IDX needs one kick per device run, flags mode one per batch', () => {
    const flags = exchange(64, false, 400, 8, 4);
    const ev = exchange(64, true, 400, 8, 4);
    expect(flags.messages).to.equal(400 * 8);
    expect(ev.messages).to.equal(400 * 8);
    expect(flags.kicks).to.equal(400);
    expect(ev.kicks).to.equal(100);
    expect(flags.interrupts).to.equal(100);
    expect(ev.interrupts).to.equal(100);
  });

  it('EVENT_IDX with a device that only pops until null loses no kick', () => {
    const c = exchange(32, true, 300, 16, 1, true);
    expect(c.messages).to.equal(300 * 16);
    expect(c.kicks).to.equal(300);
    const slow = exchange(32, true, 300, 4, 3, true);
    expect(slow.messages).to.equal(300 * 4);
    expect(slow.kicks).to.equal(100);
  });

  it('EVENT_IDX suppresses kicks while the device has not caught up', () => {
    const { drv, dev } = pair(16, true);
    let kicks = 0;
    // Device consumed nothing and left avail_event at 0: only the first publish crosses it.
    for (let i = 0; i < 8; i++) {
      drv.add1(0x2000, 64, false, i);
      if (drv.kick()) kicks++;
    }
    expect(kicks).to.equal(1);
    // Device drains, re-enables: avail_event = 8, so the next publish kicks again.
    for (let c = dev.pop(); c; c = dev.pop()) dev.push(c.head, 0);
    expect(dev.enableNotifications()).to.equal(false);
    drv.add1(0x2000, 64, false, 99);
    expect(drv.kick()).to.equal(true);
  });

  it('EVENT_IDX suppresses interrupts while the driver has not collected', () => {
    const { drv, dev } = pair(16, true);
    for (let i = 0; i < 8; i++) drv.add1(0x2000, 64, true, i);
    drv.kick();
    let interrupts = 0;
    for (let i = 0; i < 8; i++) {
      const c = dev.pop()!;
      dev.push(c.head, 1);
      if (dev.publish()) interrupts++;
    }
    expect(interrupts).to.equal(1); // used_event stayed 0
    expect(drv.collect(() => {})).to.equal(8);
    const c = dev.pop();
    expect(c).to.equal(null);
  });

  it('flags mode: NO_NOTIFY / NO_INTERRUPT suppress while disabled', () => {
    const { drv, dev } = pair(16, false);
    dev.disableNotifications();
    drv.add1(0x2000, 64, true, 1);
    expect(drv.kick()).to.equal(false);
    drv.disableCallbacks();
    dev.push(dev.pop()!.head, 0);
    expect(dev.publish()).to.equal(false);
    expect(drv.enableCallbacks()).to.equal(true);
    expect(drv.getUsed()).to.equal(1);
  });

  it('indirect chains end to end', () => {
    const { mem, drv, dev } = pair(8, false, true);
    mem.u8.set([7, 8, 9], 0x2000);
    drv.addIndirect([0x2000, 3], [0x3000, 2, 0x3010, 2], 'ind' as unknown as number, 0x1000);
    drv.kick();
    const c = dev.pop()!;
    const b = new Uint8Array(3);
    c.read(b);
    expect([...b]).to.deep.equal([7, 8, 9]);
    expect(c.write(b)).to.equal(3);
    dev.push(c.head, 3);
    dev.publish();
    expect(mem.u8[0x3010]).to.equal(9);
    expect(drv.getUsed()).to.equal('ind');
    expect(drv.lastLen).to.equal(3);
  });
});
