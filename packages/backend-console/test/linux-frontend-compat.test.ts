/**
 * Compatibility goal (b) for the console: ConsoleDevice on the real VirtioBackend, fronted by a
 * double of a Linux guest's virtio_console over virtio_ivshmem (fixtures/linux-like-console.ts).
 * Spec §7.3 "Behaviour of a Linux guest front-end", §7.1 sizing, §5.1 bounce buffers.
 */
import { expect } from 'chai';
import { PassThrough, Writable } from 'node:stream';
import { createLoopbackPair } from '../../transport/src/testing/loopback.js';
import type { IvshmemDevice } from '../../transport/src/ivshmem/device.js';
import { VirtioBackend } from '../../transport/src/virtio/backend.js';
import { ConsoleDevice, type ConsoleDeviceOptions } from '../src/device.js';
import { feed, sink } from './fixtures/console-streams.js';
import { LinuxLikeConsole, RX_BUFFER, TX_MAX, type LinuxConsoleOptions } from './fixtures/linux-like-console.js';
import { LinuxLikeMultiportConsole, PORT_WRITE_MAX } from './fixtures/linux-like-multiport.js';
import { LinuxFrontendError } from '../../transport/test/fixtures/linux-like-frontend.js';
import { linuxMultiportVectorLimit, linuxVectorWarning } from '../src/linux-vectors.js';
import { DeviceStatus } from 'virtio-spec-types';
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

/** A MULTIPORT rig as `vshm-console-backend --port org.test.log` builds it: max_nr_ports 2. */
interface MultiRig {
  be: IvshmemDevice;
  feDev: IvshmemDevice;
  device: ConsoleDevice;
  backend: VirtioBackend;
  guest: LinuxLikeMultiportConsole;
  inputs: PassThrough[];
  outputs: Array<ReturnType<typeof sink>>;
  needs: Error[];
}

const multiRigs: MultiRig[] = [];

function multiRig(size: number, dev: ConsoleDeviceOptions = {}, vectors = 3, guest: ConstructorParameters<typeof LinuxLikeMultiportConsole>[1] = {}): MultiRig {
  const [be, feDev] = createLoopbackPair({ size, vectors, protocol: 0x8003 });
  const device = new ConsoleDevice({ size: { cols: 80, rows: 24 }, ports: ['org.test.log'], ...dev });
  const inputs = [new PassThrough(), new PassThrough()];
  const outputs = [sink(), sink()];
  for (const id of [0, 1]) device.port(id).attach(inputs[id], outputs[id].stream);
  const backend = new VirtioBackend(be, device);
  const needs: Error[] = [];
  backend.on('needs-reset', (e: Error) => needs.push(e));
  backend.start();
  const r: MultiRig = { be, feDev, device, backend, guest: new LinuxLikeMultiportConsole(feDev, guest), inputs, outputs, needs };
  multiRigs.push(r);
  return r;
}

/** Bytes of the R/W section the guest's allocator still has free. */
function freeBytes(fe: LinuxLikeConsole['fe']): number {
  const a = fe.allocator();
  return (a.chunks - a.usedChunks) * a.chunkSize;
}

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
    for (const r of [...rigs.splice(0), ...multiRigs.splice(0)]) {
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

  it('with dropBlockedOutputMs, a guest writing to a console nobody reads finishes its writes (its hvc spins meanwhile)', async () => {
    const r = rig(65536, { dropBlockedOutputMs: 20 });
    // The host side stops reading after 4 KiB: a terminal on XOFF, a socket client that stalled.
    const taken: Buffer[] = [];
    let room = 4096;
    let held = 0; // the chunk never called back, counted in writableLength too
    const stalled = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, cb) {
        taken.push(Buffer.from(chunk));
        room -= chunk.length;
        if (room > 0) cb(); // past that, never called back
        else held = chunk.length;
      },
    });
    const port = r.device.port(0);
    port.attach(r.input, stalled);
    const dropped = new Promise<number>((resolve) => port.once('output-resumed', resolve));
    await r.guest.start();
    const text = pattern(40_000, 9);
    await r.guest.write(Buffer.from(text, 'latin1')); // with the default it would wait for ever
    expect(Buffer.concat(taken).toString('latin1')).to.equal(text.slice(0, Buffer.concat(taken).length));
    expect(Buffer.concat(taken).length).to.be.at.least(4096);
    port.detach(); // the host side goes away: the port reports what it discarded
    const n = await dropped;
    expect(n).to.be.greaterThan(0);
    // Every byte either reached the host side (taken, or waiting in its buffer) or was counted
    // as dropped: none is lost silently.
    expect(Buffer.concat(taken).length + stalled.writableLength - held + n).to.equal(text.length);
    expect(r.needs).to.deep.equal([]);
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

/**
 * The default queue size follows the region (queueSize 'auto', src/queue-size.ts): at every size
 * the Linux-like guest adds its port(s), fills its receive queue(s) with 4 KiB pages, transmits
 * and receives; and where auto chose more than the floor of 8, at least half of the R/W section
 * is still free once the guest is up — the room its transmit copies need. A greedier rule (such
 * as N × 4 KiB ≤ RW) fails the second check at 128K, 256K and 1M, and MULTIPORT at 128K outright.
 */
describe("Linux-like guest against the console's default queue size ('auto', follows the region)", () => {
  afterEach(async () => {
    for (const r of [...rigs.splice(0), ...multiRigs.splice(0)]) {
      await r.backend.close();
      r.feDev.close();
      r.be.close();
    }
  });

  const KIB = 1024;
  for (const [label, size, n] of [['64K', 64 * KIB, 8], ['128K', 128 * KIB, 8], ['256K', 256 * KIB, 16], ['1M', 1024 * KIB, 64], ['4M', 4096 * KIB, 256]] as const) {
    it(`-l ${label}: queues of ${n}; the console port is added with ${n} receive pages, output and input flow`, async () => {
      const r = rig(size, { settleMs: 60_000 });
      await r.guest.start();
      expect(r.guest.portError).to.equal(null);
      expect([r.guest.rxq.vring.size, r.guest.txq.vring.size]).to.deep.equal([n, n]);
      expect(r.guest.rxPosted).to.deep.equal(new Array<number>(n).fill(RX_BUFFER));
      const rw = r.feDev.layout.rwSize;
      if (n > 8) expect(freeBytes(r.guest.fe)).to.be.at.least(rw / 2);
      const text = pattern(10_000, 3);
      await r.guest.write(Buffer.from(text, 'latin1')); // the first transmit also opens the input gate
      await until(() => r.output.text() === text, 'the guest output at the device');
      const typed = pattern(n * RX_BUFFER + 5000, 4); // more than the posted pages: they are re-posted
      await feed(r.input, r.device.port(0), typed);
      await until(() => r.guest.text().length === typed.length, 'all input in the guest');
      expect(r.guest.text()).to.equal(typed);
      expect(r.guest.fe.allocator().warnings).to.deep.equal([]);
      await r.guest.fe.powerOff();
      expect(r.needs).to.deep.equal([]);
    });
  }

  // --port org.test.log: max_nr_ports 2, six queues; the control receiveq and both ports' receive
  // queues are kept full. With MULTIPORT the quarter rule goes below 8: at 64K one page per
  // receive queue, and no 32 KiB block exists in 60 KiB with the header in the first one (the
  // bounce allocator aligns a block to its size), so one write(2) of 16 KiB is the most the port
  // takes there; from 128K full 32 KiB writes find their block.
  for (const [label, size, n, portWrite] of [['64K', 64 * KIB, 1, PORT_WRITE_MAX / 2], ['128K', 128 * KIB, 2, 3 * PORT_WRITE_MAX], ['256K', 256 * KIB, 4, 3 * PORT_WRITE_MAX], ['512K', 512 * KIB, 8, 3 * PORT_WRITE_MAX], ['1M', 1024 * KIB, 16, 3 * PORT_WRITE_MAX], ['4M', 4096 * KIB, 64, 3 * PORT_WRITE_MAX]] as const) {
    it(`MULTIPORT, one named port, -l ${label}: queues of ${n}; both ports are added with their receive pages and carry data`, async () => {
      const r = multiRig(size);
      const g = r.guest;
      await g.start();
      const up = (): boolean => g.ports.get(0)?.console === true && g.ports.get(1)?.name === 'org.test.log';
      await until(() => up() || g.deviceError !== null || g.portErrors.size > 0, 'both ports added (or a failure)');
      await g.settled();
      expect(g.deviceError).to.equal(null);
      expect([...g.portErrors.keys()]).to.deep.equal([]);
      expect(g.fe.log).to.deep.equal([]);
      expect(g.fe.queues.map((q) => q.vring.size)).to.deep.equal(new Array<number>(6).fill(n));
      for (const q of [0, 2, 4]) expect(g.queue(q).vring.inFlight).to.equal(n);
      const rw = r.feDev.layout.rwSize;
      if (n > 8) expect(freeBytes(g.fe)).to.be.at.least(rw / 2);
      const text = pattern(10_000, 6);
      await g.write(0, Buffer.from(text, 'latin1'));
      await until(() => r.outputs[0].text() === text, 'console output at the device');
      await g.open(1);
      const log = pattern(portWrite, 7);
      await g.write(1, Buffer.from(log, 'latin1'));
      await until(() => r.outputs[1].text() === log, 'port output at the device');
      const typed = pattern(n * RX_BUFFER + 5000, 8);
      await feed(r.inputs[1], r.device.port(1), typed);
      await until(() => g.text(1).length === typed.length, 'all port input in the guest');
      expect(g.text(1)).to.equal(typed);
      await g.settled();
      expect(g.fe.allocator().warnings).to.deep.equal([]);
      await g.fe.powerOff();
      expect(r.needs).to.deep.equal([]);
    });
  }

  it('MULTIPORT, a guest from before the 2025 RESIZE fix: the size swapped by default, right with resizeOrder rows-cols', async () => {
    // The default follows VIRTIO 1.2, so such a guest reads the size the wrong way round...
    const swapped = multiRig(1024 * KIB, {}, 3, { resizeOrder: 'rows-cols' });
    await swapped.guest.start();
    await until(() => swapped.guest.ports.get(0)?.console === true, 'the console port added');
    await until(() => swapped.guest.cols !== 0, 'a RESIZE in the guest');
    expect([swapped.guest.cols, swapped.guest.rows]).to.deep.equal([24, 80]);
    await swapped.guest.fe.powerOff();
    // ...and with the option in its order: at PORT_READY and on every later resize.
    const r = multiRig(1024 * KIB, { resizeOrder: 'rows-cols' }, 3, { resizeOrder: 'rows-cols' });
    const g = r.guest;
    await g.start();
    await until(() => g.cols !== 0, 'a RESIZE in the guest');
    expect([g.cols, g.rows]).to.deep.equal([80, 24]);
    r.device.resize(132, 43);
    await until(() => g.cols === 132 && g.rows === 43, 'the new size in the guest');
    await g.settled();
    expect(g.fe.log).to.deep.equal([]);
    await g.fe.powerOff();
    expect(r.needs).to.deep.equal([]);
  });

  it('MULTIPORT: the guest gets the size by RESIZE on its console port, and the last one of a resize storm', async () => {
    const r = multiRig(1024 * KIB);
    const g = r.guest;
    await g.start();
    await until(() => g.ports.get(0)?.console === true && g.ports.get(1)?.name === 'org.test.log', 'both ports added');
    await until(() => g.cols === 80 && g.rows === 24, 'the size of PORT_READY time');
    for (let i = 0; i < 300; i++) r.device.resize(40 + (i % 120), 10 + (i % 50));
    r.device.resize(132, 43);
    await until(() => g.cols === 132 && g.rows === 43, 'the last size in the guest');
    await g.settled();
    expect(g.fe.log).to.deep.equal([]);
    await g.fe.powerOff();
    expect(r.needs).to.deep.equal([]);
  });

  // virtio_console's in_intr discards what arrives on a port no guest program has open
  // (discard_port_data): the device must hold a named port's input until PORT_OPEN(id, 1) and
  // stop delivering at PORT_OPEN(id, 0), or the input is lost in the guest.
  it('MULTIPORT: input for a named port waits while no guest program has it open, and none is discarded', async () => {
    const r = multiRig(1024 * KIB);
    const g = r.guest;
    const early = pattern(3 * RX_BUFFER + 100, 11);
    await feed(r.inputs[1], r.device.port(1), early); // typed before the guest even probes
    await g.start();
    await until(() => g.ports.get(1)?.hostOpen === true, 'port 1 added, host side open');
    const quiet = async (): Promise<void> => {
      r.backend.poll();
      await until(() => !g.rxq(1).vring.moreUsed(), 'the guest to take any completion');
      await g.settled();
    };
    await quiet();
    expect(g.ports.get(1)?.discarded).to.equal(0);
    expect(g.text(1)).to.equal('');

    await g.open(1);
    await until(() => g.text(1) === early, 'the early input once the port is open');
    await g.close(1);
    const later = pattern(2 * RX_BUFFER, 12);
    await feed(r.inputs[1], r.device.port(1), later);
    await quiet();
    expect(g.text(1)).to.equal(early);
    await g.open(1);
    await until(() => g.text(1) === early + later, 'the input typed while it was closed');
    expect(g.ports.get(1)?.discarded).to.equal(0);
    await g.fe.powerOff();
    expect(r.needs).to.deep.equal([]);
  });

  // virtio_ivshmem's vi_find_vqs: per-queue mode takes 1 + (queues with a callback) vectors but
  // numbers every queue, the control transmitq (no callback) included, so the last transmitq asks
  // for a vector it never allocated. One vector fewer and the guest shares a vector: it works.
  it('MULTIPORT with 2·(max_nr_ports + 1) vectors: the guest numbers one vector too many and fails its probe; one fewer works', async () => {
    const limit = linuxMultiportVectorLimit(2);
    expect(limit).to.equal(6);
    const bad = multiRig(1024 * KIB, {}, limit);
    let err: unknown = null;
    await bad.guest.start().catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(LinuxFrontendError);
    expect((err as LinuxFrontendError).code).to.equal('EINVAL');
    expect(bad.guest.fe.mode).to.equal('per-queue');
    expect(bad.guest.fe.status() & DeviceStatus.FAILED).to.equal(DeviceStatus.FAILED);
    expect(bad.guest.fe.queues).to.deep.equal([]); // vi_del_vqs tore the others down
    expect(bad.device.active).to.equal(false);
    expect(linuxVectorWarning(true, 2, limit)).to.match(/-V 5 or fewer/);

    const good = multiRig(1024 * KIB, {}, limit - 1);
    await good.guest.start();
    expect(good.guest.fe.mode).to.equal('shared');
    await until(() => good.guest.ports.get(0)?.console === true && good.guest.ports.get(1)?.name === 'org.test.log', 'both ports added');
    await good.guest.write(0, Buffer.from('shared vector'));
    await until(() => good.outputs[0].text() === 'shared vector', 'console output at the device');
    await good.guest.settled();
    expect(linuxVectorWarning(true, 2, limit - 1)).to.equal(null);
    await good.guest.fe.powerOff();
    expect(good.needs).to.deep.equal([]);
  });

  it('MULTIPORT at -l 64K with 8-entry queues (the floor before, now only by --queue-size 8): a Linux guest cannot fill three receive queues', async () => {
    const r = multiRig(64 * KIB, { queueSize: 8 });
    const g = r.guest;
    await g.start();
    expect(g.fe.queues.map((q) => q.vring.size)).to.deep.equal(new Array<number>(6).fill(8));
    expect(g.deviceError).to.equal(null); // the control receiveq (8 pages) fits
    await until(() => g.portErrors.size + g.ports.size === 2, 'both port adds tried');
    await g.settled();
    expect(g.portErrors.size).to.be.at.least(1);
    expect(g.fe.log).to.include('Error allocating inbufs');
    await g.fe.powerOff();
    expect(r.needs).to.deep.equal([]);
  });
});
