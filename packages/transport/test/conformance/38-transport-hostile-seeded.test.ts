/**
 * §8 item 38, seeded: random hostile descriptor tables and avail rings (the engine's Prng and
 * MockDriver) against the whole VirtioBackend on the isolated layout. Per seed: nothing escapes
 * poll(), the FE's output section and everything past the BE's section stay untouched, and either
 * every published chain is used or DEVICE_NEEDS_RESET is set with a config event. A failure names
 * its seed; raise SEEDS by hand for a longer run.
 */
import { expect } from 'chai';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from 'virtio-spec-types';
import { Prng } from '../../src/testing/prng.js';
import { HDR_CONFIG_EVENT, HDR_DEVICE_STATUS } from '../../src/virtio/header.js';
import { LIVE, S, negotiate, queueRig, setupQueue, type QueueRig } from '../fixtures/backend-rig.js';
import { echoOps } from '../fixtures/backend-devices.js';

const SEEDS = Number(process.env.VSHM_HOSTILE_SEEDS ?? 60);
const RW = 0x1f000;
const OUT = 0x10000;
const FE_SEC = RW + OUT;
const END = RW + 2 * OUT;

function randomAddr(p: Prng): number {
  switch (p.int(6)) {
    case 0:
      return p.int(RW); // R/W
    case 1:
      return RW + p.int(OUT); // BE section
    case 2:
      return FE_SEC + p.int(OUT); // FE section (read-only for the BE)
    case 3:
      return p.pick([RW, FE_SEC, END]) - p.int(16); // straddling a section end
    case 4:
      return END + p.int(0x10000); // beyond the window
    default:
      return 0x8000 + 16 * p.int(64); // plausible buffers
  }
}

describe('conformance 38 (transport): seeded hostile rings', () => {
  let r: QueueRig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it(`${SEEDS} seeds: no escape, no write outside RW + own section, used or NEEDS_RESET`, async () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const p = new Prng(seed);
      const indirect = p.bool();
      r = await queueRig({ size: 256 * 1024, outputSectionSize: OUT }, echoOps(3, indirect ? 1n << 28n : 0n));
      const errors: unknown[] = [];
      r.backend.on('error', (e: unknown) => errors.push(e));
      await negotiate(r.fe, 1 | (indirect ? 1 << 28 : 0));
      const d = await setupQueue(r, 0, { size: 8, desc: FE_SEC, avail: FE_SEC + 0x100, used: RW }, 1);
      await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
      r.be.interruptsEnabled = false; // drive the BE by poll() alone: deterministic

      // Hostile contents: random descriptors, random heads, maybe a jump.
      for (let i = 0; i < 8; i++) {
        const flags = (p.bool(0.5) ? VIRTQ_DESC_F_NEXT : 0) | (p.bool(0.5) ? VIRTQ_DESC_F_WRITE : 0) | (p.bool(0.15) ? VIRTQ_DESC_F_INDIRECT : 0);
        if (p.bool(0.05)) d.writeDescRaw(i, p.next(), 0xffffffff, p.next(), flags, p.int(10));
        else d.writeDesc(i, randomAddr(p), p.pick([0, 1, 16, 48, p.int(0x3000)]), flags, p.int(10));
      }
      const heads = 1 + p.int(4);
      for (let k = 0; k < heads; k++) d.makeAvail(p.bool(0.9) ? p.int(8) : 8 + p.int(4));
      if (p.bool(0.1)) d.availIdx = (d.availIdx + 8) & 0xffff;
      d.publish();
      const before = Buffer.from(r.mem.u8);
      r.backend.poll();

      const after = Buffer.from(r.mem.u8);
      const where = `seed ${seed}`;
      expect(errors, where).to.deep.equal([]);
      expect(Buffer.compare(after.subarray(FE_SEC), before.subarray(FE_SEC)), `${where}: FE section or beyond written`).to.equal(0);
      const status = r.fe.r32(HDR_DEVICE_STATUS);
      if (r.needs.length > 0) {
        expect(status, where).to.equal(LIVE | S.DEVICE_NEEDS_RESET);
        expect(r.fe.r8(HDR_CONFIG_EVENT), where).to.equal(1);
      } else {
        expect(status, where).to.equal(LIVE);
        expect(d.usedIdx(), `${where}: every published chain used`).to.equal(d.availIdx);
      }
      // The BE still completes transactions and resets.
      r.be.interruptsEnabled = true;
      await r.fe.txn(HDR_DEVICE_STATUS, 4, 0);
      expect(r.fe.r32(HDR_DEVICE_STATUS), where).to.equal(0);
      await r.close();
      r = null;
    }
  });
});
