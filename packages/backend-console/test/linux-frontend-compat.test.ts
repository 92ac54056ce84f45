/**
 * Compatibility goal (b) for the console: ConsoleDevice on the real VirtioBackend, fronted by a
 * double of a Linux guest's virtio_console over virtio_ivshmem (fixtures/linux-like-console.ts).
 * Spec §7.3 "Behaviour of a Linux guest front-end", §7.1 sizing, §5.1 bounce buffers.
 */
import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { createLoopbackPair } from '../../transport/src/testing/loopback.js';
import type { IvshmemDevice } from '../../transport/src/ivshmem/device.js';
import { VirtioBackend } from '../../transport/src/virtio/backend.js';
import { ConsoleDevice, type ConsoleDeviceOptions } from '../src/device.js';
import { feed, sink } from './fixtures/console-streams.js';
import { LinuxLikeConsole, RX_BUFFER, TX_MAX, type LinuxConsoleOptions } from './fixtures/linux-like-console.js';
import { until } from '../../transport/test/fixtures/until.js';

interface Rig {
  be: IvshmemDevice;
  feDev: IvshmemDevice;
  device: ConsoleDevice;
  backend: VirtioBackend;
  guest: LinuxLikeConsole;
  input: PassThrough;
  output: ReturnType<typeof sink>;
  needs: Error[];
}

const rigs: Rig[] = [];

function rig(size: number, dev: ConsoleDeviceOptions, opts: LinuxConsoleOptions = {}): Rig {
  const [be, feDev] = createLoopbackPair({ size, vectors: 3, protocol: 0x8003 });
  const device = new ConsoleDevice({ size: { cols: 80, rows: 24 }, ...dev });
  const input = new PassThrough();
  const output = sink();
  device.port(0).attach(input, output.stream);
  const backend = new VirtioBackend(be, device);
  const needs: Error[] = [];
  backend.on('needs-reset', (e: Error) => needs.push(e));
  backend.start();
  const r: Rig = { be, feDev, device, backend, guest: new LinuxLikeConsole(feDev, opts), input, output, needs };
  rigs.push(r);
  return r;
}

/** Printable bytes with a position-dependent pattern, so reordering or loss shows. */
function pattern(n: number, seed: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(0x21 + ((i * 7 + seed) % 90));
  return s;
}

describe('Linux-like console front-end against ConsoleDevice (compatibility goal b, §7.3)', () => {
  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      await r.backend.close();
      r.feDev.close();
      r.be.close();
    }
  });

  it('holds typed input until the guest shows life, then fills the 4 KiB receive buffers in order', async () => {
    const r = rig(65536, { settleMs: 60_000 }, { autoRegister: false });
    const typed = pattern(10_000, 1);
    await feed(r.input, r.device.port(0), typed); // typed before the guest even probes
    await r.guest.start();
    await until(() => r.device.active, 'DRIVER_OK at the device');
    // Give the BE every chance to deliver early: service it, then let the guest see any completion.
    r.backend.poll();
    await until(() => !r.guest.rxq.vring.moreUsed(), 'the guest to consume used entries');
    expect(r.guest.discarded).to.equal(0); // nothing completed before the port exists (§7.3)
    expect(r.guest.rxPosted).to.deep.equal(new Array<number>(8).fill(RX_BUFFER));

    r.guest.registerPort();
    await r.guest.write(Buffer.from('login: ')); // the first transmit buffer: the guest shows life
    await until(() => r.output.text() === 'login: ', 'the guest output at the device');
    await until(() => r.guest.text().length === typed.length, 'all input in the guest');
    expect(r.guest.text()).to.equal(typed);
    expect(r.guest.received.length).to.be.at.least(3);
    expect(r.guest.received.every((b) => b.length > 0 && b.length <= RX_BUFFER)).to.equal(true);
    expect(r.guest.rxq.vring.badUsed).to.deep.equal([]);
    expect(r.needs).to.deep.equal([]);
  });

  it('delivers input after the settle time to a guest that never transmits', async () => {
    const r = rig(65536, { settleMs: 20 });
    await r.guest.start(); // registers its port before the BE even sees DRIVER_OK (loopback)
    await feed(r.input, r.device.port(0), 'typed while the guest is silent');
    await until(() => r.guest.text() === 'typed while the guest is silent', 'input after the settle time');
    expect(r.guest.discarded).to.equal(0);
    expect(r.guest.txPosted).to.deep.equal([]);
  });

  it('outputs what the guest writes in ≤ 2048-byte buffers, in order', async () => {
    const r = rig(65536, {});
    await r.guest.start();
    const text = pattern(10_000, 5);
    await r.guest.write(Buffer.from(text, 'latin1'));
    await until(() => r.output.text().length === text.length, 'all output at the device');
    expect(r.output.text()).to.equal(text);
    expect(r.guest.txPosted).to.deep.equal([TX_MAX, TX_MAX, TX_MAX, TX_MAX, 10_000 - 4 * TX_MAX]);
  });

  it('reads cols/rows at probe and again after a resize config event', async () => {
    const r = rig(65536, {});
    await r.guest.start();
    expect([r.guest.cols, r.guest.rows]).to.deep.equal([80, 24]);
    r.device.resize(132, 43);
    await until(() => r.guest.cols === 132 && r.guest.rows === 43, 'the new size in the guest');
    expect(r.guest.fe.broken).to.equal(false);
  });

  it('-l 64K with a 16-entry receive queue: "shared memory is full", the port fails cleanly, power-off completes', async () => {
    const r = rig(65536, { queueSize: 16 });
    await r.guest.start();
    // RW 60 KiB: 64 B chunks; header and both rings sit in the first 4 KiB, so 14 page-sized
    // receive buffers fit and the 15th does not.
    expect(r.guest.portError?.code).to.equal('ENOMEM');
    expect(r.guest.fe.allocator().warnings).to.deep.equal(['shared memory is full (size: 4096 bytes)']);
    expect(r.guest.fe.log).to.include('Error allocating inbufs');
    expect(r.guest.rxPosted).to.have.length(14);
    await until(() => r.device.active, 'DRIVER_OK at the device');
    r.backend.poll(); // the BE took none of those buffers (no input), so the rewound avail.idx is no violation
    expect(r.needs).to.deep.equal([]);
    await r.guest.fe.powerOff();
    await until(() => r.backend.phase === 'wait-fe-ready', 'the back-end ready for the next guest');
    expect(r.needs).to.deep.equal([]);
  });

  it('-l 1M with the same 16-entry receive queue: every buffer fits and input arrives', async () => {
    const r = rig(1 << 20, { queueSize: 16, settleMs: 60_000 });
    await r.guest.start();
    expect(r.guest.fe.allocator().chunkSize).to.equal(256);
    expect(r.guest.portError).to.equal(null);
    expect(r.guest.rxPosted).to.deep.equal(new Array<number>(16).fill(RX_BUFFER));
    await r.guest.write(Buffer.from('$ '));
    const typed = pattern(70_000, 9); // more than the 16 posted buffers: they are re-posted
    await feed(r.input, r.device.port(0), typed);
    await until(() => r.guest.text().length === typed.length, 'all input in the guest');
    expect(r.guest.text()).to.equal(typed);
    await r.guest.fe.powerOff();
    expect(r.needs).to.deep.equal([]);
  });

  it('-l 64K with the default 8-entry queues fits a Linux guest (8 × 4 KiB of 60 KiB)', async () => {
    const r = rig(65536, { settleMs: 0 });
    await r.guest.start();
    expect(r.guest.portError).to.equal(null);
    await feed(r.input, r.device.port(0), 'fits');
    await until(() => r.guest.text() === 'fits', 'input in the guest');
    await r.guest.fe.powerOff();
  });
});
