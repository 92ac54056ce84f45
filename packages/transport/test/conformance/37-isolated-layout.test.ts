/**
 * §8 item 37: with OUT ≠ 0, descriptor and available rings are in the FE's section, the used ring
 * in the BE's, zeroed on enable (§5.2). Device-readable buffers come from the FE's section,
 * device-writable ones from the BE's, which the FE never writes (not even to zero it).
 * Layout of the spec example `-l 256K -n 2 -o 64K`: RW 124 KiB, BE section at 0x1F000, FE at 0x2F000.
 */
import { expect } from 'chai';
import type { FrontendQueue } from '../../src/virtio/frontend-queues.js';
import { useEchoRigs } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

const BE_SECTION = 0x1f000;
const FE_SECTION = 0x2f000;
const OUT = 0x10000;

const inFe = (a: number, len: number): boolean => a >= FE_SECTION && a + len <= FE_SECTION + OUT;
const inBe = (a: number, len: number): boolean => a >= BE_SECTION && a + len <= BE_SECTION + OUT;

describe('§8 item 37: isolated layout (§5.2)', () => {
  const rig = useEchoRigs();

  it('places rings and buffers per section; a BE enforcing isolation moves data', async () => {
    const { fe, backend, frontend, drv } = rig({ loopback: { size: 256 * 1024, outputSectionSize: OUT }, backend: { enforceIsolation: true } });
    expect(fe.layout.rwSize).to.equal(124 * 1024);
    const bytes = new Uint8Array(fe.window);
    bytes.fill(0xee, BE_SECTION, BE_SECTION + OUT); // stale garbage in the BE's section
    backend.start();
    const s = await frontend.start();
    for (const q of s.queues as FrontendQueue[]) {
      const r = q.rings;
      expect(inFe(r.desc, r.descBytes), 'desc in FE section').to.equal(true);
      expect(inFe(r.avail, r.availBytes), 'avail in FE section').to.equal(true);
      expect(inBe(r.used, r.usedBytes), 'used in BE section').to.equal(true);
      // Zeroed on enable (by the BE: the FE never writes there).
      expect([...bytes.subarray(r.used, r.used + r.usedBytes)].every((b) => b === 0)).to.equal(true);
    }
    const q0 = s.queues[0] as FrontendQueue;
    expect(q0.add(Buffer.from('hello'), 64, 'h')).to.equal(true);
    const dv = new DataView(fe.window);
    const outAddr = Number(dv.getBigUint64(q0.rings.desc, true));
    const inAddr = Number(dv.getBigUint64(q0.rings.desc + 16, true));
    expect(inFe(outAddr, 5)).to.equal(true);
    expect(inBe(inAddr, 64)).to.equal(true);
    expect(bytes[inAddr + 10]).to.equal(0xee); // not zeroed by the FE
    q0.kick();
    await until(() => drv.used.length === 1, 'echo');
    expect(drv.used[0].data.toString()).to.equal('hello');
    expect(bytes[inAddr + 10]).to.equal(0xee); // the BE wrote 5 bytes, nobody else touched it
    expect(backend.status & 0x40).to.equal(0); // no DEVICE_NEEDS_RESET: placement accepted
  });

  it('no silent fallback: with the output section exhausted, add() fails instead of using R/W', async () => {
    const { backend, frontend } = rig({ loopback: { size: 256 * 1024, outputSectionSize: OUT } });
    backend.start();
    const s = await frontend.start();
    const q1 = s.queues[1]; // held by the device
    expect(q1.add(new Uint8Array(OUT), 0, 'too big')).to.equal(false);
    expect(q1.add(new Uint8Array(OUT / 2), 0, 'half')).to.equal(true);
    expect(q1.add(new Uint8Array(OUT / 2), 0, 'second half')).to.equal(false); // rings live there too
  });
});
