/**
 * §8 item 38 at transport level: each hostile ring below makes the VirtioBackend set
 * DEVICE_NEEDS_RESET and fire a config event (config_event := 1, Doorbell(FE, 0)) without any
 * access outside the permitted regions; it keeps completing transactions and recovers on reset.
 * The driver is the engine's MockDriver writing raw ring contents.
 */
import { expect } from 'chai';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from 'virtio-spec-types';
import { RingError } from '../../src/errors.js';
import { HDR_CONFIG_EVENT, HDR_DEVICE_STATUS } from '../../src/virtio/header.js';
import { packedRingAddresses } from '../../src/ring/ring-layout.js';
import type { MockDriver } from '../../src/testing/mock-driver.js';
import { LIVE, S, kick, liveRig, negotiate, setupQueue, type QueueRig } from '../fixtures/backend-rig.js';
import { echoOps } from '../fixtures/backend-devices.js';
import { until, turn } from '../fixtures/until.js';

const INDIRECT_BIT = 1 << 28;

interface Case {
  name: string;
  code: string;
  loop?: { size: number; outputSectionSize: number };
  indirect?: boolean;
  /** Write the hostile ring contents (not published). */
  poison(d: MockDriver, rw: number): void;
}

const cases: Case[] = [
  {
    name: 'head index ≥ queue size',
    code: 'VSHM_ERR_DESC_INDEX',
    poison: (d) => d.makeAvail(9),
  },
  {
    name: 'next index ≥ queue size',
    code: 'VSHM_ERR_DESC_INDEX',
    poison: (d) => {
      d.writeDesc(0, 0x3000, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 8);
      d.makeAvail(0);
    },
  },
  {
    name: 'descriptor loop',
    code: 'VSHM_ERR_DESC_LOOP',
    poison: (d) => {
      d.writeDesc(0, 0x3000, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
      d.writeDesc(1, 0x3004, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
      d.makeAvail(0);
    },
  },
  {
    name: 'buffer crossing its section end',
    code: 'VSHM_ERR_DESC_BOUNDS',
    poison: (d, rw) => {
      d.writeDesc(0, rw - 2, 4, VIRTQ_DESC_F_WRITE, 0);
      d.makeAvail(0);
    },
  },
  {
    name: 'writable buffer in a read-only section (the FE output section)',
    code: 'VSHM_ERR_DESC_WRITE_PERM',
    loop: { size: 256 * 1024, outputSectionSize: 64 * 1024 },
    poison: (d) => {
      d.writeDesc(0, 0x2f000 + 0x100, 16, VIRTQ_DESC_F_WRITE, 0);
      d.makeAvail(0);
    },
  },
  {
    name: 'overflowing addr + len',
    code: 'VSHM_ERR_DESC_OVERFLOW',
    poison: (d) => {
      d.writeDescRaw(0, 0xfffffff0, 0xffffffff, 0x20, VIRTQ_DESC_F_WRITE, 0);
      d.makeAvail(0);
    },
  },
  {
    name: 'malformed indirect table (length not a multiple of 16)',
    code: 'VSHM_ERR_INDIRECT',
    indirect: true,
    poison: (d) => {
      d.writeDesc(0, 0x2000, 15, VIRTQ_DESC_F_INDIRECT, 0);
      d.makeAvail(0);
    },
  },
  {
    name: 'nested indirect table',
    code: 'VSHM_ERR_INDIRECT',
    indirect: true,
    poison: (d) => {
      d.writeDescAt(0x2000, 0x2100, 16, VIRTQ_DESC_F_INDIRECT, 0);
      d.writeDesc(0, 0x2000, 16, VIRTQ_DESC_F_INDIRECT, 0);
      d.makeAvail(0);
    },
  },
  {
    name: 'INDIRECT without negotiation',
    code: 'VSHM_ERR_INDIRECT',
    poison: (d) => {
      d.writeDescAt(0x2000, 0x3000, 16, VIRTQ_DESC_F_WRITE, 0);
      d.writeDesc(0, 0x2000, 16, VIRTQ_DESC_F_INDIRECT, 0);
      d.makeAvail(0);
    },
  },
  {
    name: 'avail.idx jumping beyond the queue size',
    code: 'VSHM_ERR_AVAIL_JUMP',
    poison: (d) => {
      d.availIdx = (d.availIdx + 9) & 0xffff; // 9 ahead of the last seen index, queue size 8
    },
  },
];

describe('conformance 38 (transport): hostile rings set DEVICE_NEEDS_RESET and fire a config event', () => {
  let rig: QueueRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  for (const c of cases) {
    it(c.name, async () => {
      const ops = echoOps(3, c.indirect === true ? BigInt(INDIRECT_BIT) : 0n);
      const { r, q0 } = await liveRig(c.loop ?? {}, ops, 1 | (c.indirect === true ? INDIRECT_BIT : 0));
      rig = r;
      const rw = r.be.layout.rwSize;
      // A valid chain first: the queue works before the violation.
      q0.addChain([{ addr: 0x3000, len: 4, write: true }]);
      kick(r, q0, 1);
      await until(() => q0.usedIdx() === 1, 'first used entry');
      q0.readUsed();

      c.poison(q0, rw);
      q0.publish();
      const before = Buffer.from(r.mem.u8);
      r.fe.irqs.length = 0;
      r.feDev.doorbell(0, 1);
      await until(() => r.needs.length === 1, 'needs-reset');

      const err = r.needs[0];
      expect(err).to.be.instanceOf(RingError);
      expect(err).to.have.property('code', c.code);
      expect(r.fe.r32(HDR_DEVICE_STATUS)).to.equal(LIVE | S.DEVICE_NEEDS_RESET);
      expect(r.fe.r8(HDR_CONFIG_EVENT)).to.equal(1);
      await until(() => r.fe.irqs.includes(0), 'config event on vector 0');
      expect(r.ends).to.deep.equal(['needs-reset']);
      // Nothing changed outside the header (status, config_event), the used ring included.
      const after = Buffer.from(r.mem.u8);
      expect(Buffer.compare(after.subarray(0x100), before.subarray(0x100))).to.equal(0);

      // Stopped: a further valid chain is not served.
      q0.addChain([{ addr: 0x3100, len: 4, write: true }]);
      kick(r, q0, 1);
      for (let i = 0; i < 5; i++) await turn();
      expect(r.backend.poll()).to.equal(0);
      expect(q0.usedIdx()).to.equal(1);

      // Transactions still complete; NEEDS_RESET is set again after each status write (§4.5).
      await r.fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE);
      expect(r.fe.r32(HDR_DEVICE_STATUS)).to.equal(S.ACKNOWLEDGE | S.DEVICE_NEEDS_RESET);

      // Reset recovers the device.
      await r.fe.txn(HDR_DEVICE_STATUS, 4, 0);
      expect(r.fe.r32(HDR_DEVICE_STATUS)).to.equal(0);
      await negotiate(r.fe, 1);
      const fresh = await setupQueue(r, 0, packedRingAddresses(8, 0x1800), 1);
      await r.fe.txn(HDR_DEVICE_STATUS, 4, LIVE);
      fresh.addChain([{ addr: 0x3000, len: 4, write: true }]);
      kick(r, fresh, 1);
      await until(() => fresh.usedIdx() === 1, 'used entry after recovery');
      expect(r.needs).to.have.length(1);
    });
  }
});
