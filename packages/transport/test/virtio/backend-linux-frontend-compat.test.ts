/**
 * Compatibility goal (b): the generic VirtioBackend fronted by a double that behaves like the
 * Linux `virtio_ivshmem` driver (fixtures/linux-like-frontend.ts) — probe, negotiation with the
 * immediate FEATURES_OK read-back, Linux's queue setup widths and the 4-byte disable, the three
 * vector modes, config events, reset and re-initialisation, and power-off.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceStatus, VirtioFeatureMask } from 'virtio-spec-types';
import { createLoopbackPair } from '../../src/testing/loopback.js';
import { PEER_STATE_READY, type IvshmemDevice } from '../../src/ivshmem/device.js';
import { VirtioBackend } from '../../src/virtio/backend.js';
import { IvshmemPeer } from '../../src/ivshmem/peer.js';
import { ServerProcess, TransportChild } from '../fixtures/transport-harness.js';
import { echoOps, type RecordingOps } from '../fixtures/backend-devices.js';
import { LinuxFrontendError, LinuxLikeFrontend, type LinuxQueue, type LinuxQueueSpec } from '../fixtures/linux-like-frontend.js';
import { until } from '../fixtures/until.js';

interface Rig {
  be: IvshmemDevice;
  feDev: IvshmemDevice;
  backend: VirtioBackend;
  ops: RecordingOps;
  fe: LinuxLikeFrontend;
  /** Bytes completed per queue, in order. */
  got: Buffer[][];
  needs: Error[];
}

const rigs: Rig[] = [];

function rig(vectors = 3, start = true, tune: (ops: RecordingOps) => void = () => undefined): Rig {
  const [be, feDev] = createLoopbackPair({ size: 65536, vectors, protocol: 0x8003 });
  const ops = echoOps();
  tune(ops);
  const backend = new VirtioBackend(be, ops);
  if (start) backend.start();
  const r: Rig = { be, feDev, backend, ops, fe: new LinuxLikeFrontend(feDev), got: [[], []], needs: [] };
  backend.on('needs-reset', (e: Error) => r.needs.push(e));
  rigs.push(r);
  return r;
}

/** A driver whose queues both take callbacks (D = 3): it collects every completion. */
function specs(r: Rig): LinuxQueueSpec[] {
  return [0, 1].map((i) => ({
    name: `q${i}`,
    callback: (q: LinuxQueue) => {
      for (let c = q.getBuf(); c !== null; c = q.getBuf()) r.got[q.index].push(Buffer.from(c.data));
    },
  }));
}

async function bringUp(r: Rig): Promise<void> {
  r.fe.probe();
  await r.fe.negotiate(1n); // the driver knows feature bit 0 (console SIZE)
  await r.fe.findVqs(specs(r));
  await r.fe.driverOk();
  await until(() => r.backend.currentSession !== null, 'DRIVER_OK at the back-end');
}

/** One request: `text` device-readable, as many bytes device-writable; waits for the echo. */
async function echo(r: Rig, index: number, text: string): Promise<void> {
  const before = r.got[index].length;
  const q = r.fe.queues[index];
  q.add([Buffer.from(text)], [text.length], text);
  q.kick();
  await until(() => r.got[index].length > before, `the echo on queue ${index}`);
  expect(r.got[index][before].toString()).to.equal(text);
}

describe('Linux-like front-end against VirtioBackend (compatibility goal b)', () => {
  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      await r.backend.close();
      r.feDev.close();
      r.be.close();
    }
  });

  it('refuses to probe while the back-end is not READY, without waiting (Linux probe)', () => {
    const r = rig(3, false);
    expect(() => r.fe.probe()).to.throw(LinuxFrontendError).with.property('code', 'ENODEV');
    r.backend.start(); // the loopback BE becomes READY synchronously
    r.fe.probe();
    expect(r.feDev.state).to.equal(1);
    // §5.1 with RW 60 KiB: 64-byte chunks, the 88-byte console-sized header reserves 2 of them.
    expect(r.fe.allocator().chunkSize).to.equal(64);
    expect(r.fe.allocator().usedChunks).to.equal(2);
    // 2^k naturally aligned chunks, lowest free offset first.
    const a = r.fe.allocator();
    expect([a.alloc(100), a.alloc(64), a.alloc(4096), a.alloc(65)]).to.deep.equal([128, 256, 4096, 384]);
  });

  it('refuses an R/W section below 8 KiB (Linux probe)', () => {
    const r = rig(3, false);
    const [be, feDev] = createLoopbackPair({ size: 8192, vectors: 3, protocol: 0x8003 });
    const small = new VirtioBackend(be, r.ops);
    rigs.push({ ...r, be, feDev, backend: small });
    small.start();
    expect(() => new LinuxLikeFrontend(feDev).probe()).to.throw(LinuxFrontendError).with.property('code', 'EINVAL');
  });

  it('negotiates with FEATURES_OK read back at once, and the back-end accepts the set', async () => {
    const r = rig();
    r.fe.probe();
    const f = await r.fe.negotiate(1n);
    expect(r.fe.load32(0x08)).to.equal(0x44); // FEATURES_OK still in flight when it was read back
    const M = VirtioFeatureMask;
    expect(f).to.equal(1n | M.VERSION_1 | M.ACCESS_PLATFORM | M.ORDER_PLATFORM);
    expect(r.fe.featuresOkReadback & DeviceStatus.FEATURES_OK).to.equal(DeviceStatus.FEATURES_OK);
    await r.fe.sync();
    expect(r.backend.negotiatedFeatures).to.equal(f);
    expect(r.fe.status() & DeviceStatus.FEATURES_OK).to.equal(DeviceStatus.FEATURES_OK);
    // Linux's order: select 1 then 0 for device features; sel 1, high, sel 0, low for the driver's.
    const offs = r.fe.txns.map((t) => t.off);
    expect(offs.slice(0, 3)).to.deep.equal([0x44, 0x44, 0x44]);
    expect(offs.slice(3, 9)).to.deep.equal([0x10, 0x10, 0x18, 0x14, 0x18, 0x14]);
    expect(r.fe.txns.slice(5, 9).map((t) => t.value)).to.deep.equal([1n, f >> 32n, 0n, 1n]);
  });

  for (const [vectors, mode, driverVectors, deviceVectors] of [
    [3, 'per-queue', [1, 2], [1, 2]],
    [2, 'shared', [1, 1], [0, 0]],
    [1, 'single', [0, 0], [0, 0]],
  ] as const) {
    it(`moves data on both queues and delivers a config change in ${mode} mode (vectors ${vectors})`, async () => {
      const r = rig(vectors);
      await bringUp(r);
      expect(r.fe.mode).to.equal(mode);
      expect(r.fe.queues.map((q) => q.driverVector)).to.deep.equal(driverVectors);
      expect(r.fe.queues.map((q) => q.deviceVector)).to.deep.equal(deviceVectors);
      // Several rounds: in per-queue mode Linux never clears queue_event, the BE must notify anyway.
      for (let round = 0; round < 3; round++) {
        await echo(r, 0, `queue zero, round ${round}`);
        await echo(r, 1, `queue one, round ${round}`);
      }
      const want = new Set<number>(driverVectors);
      expect(r.fe.irqs.filter((v) => want.has(v)).length).to.be.greaterThan(0);
      expect(r.fe.queues.every((q) => q.vring.badUsed.length === 0)).to.equal(true);

      const before = r.fe.configChanges;
      r.backend.updateConfig((c) => c.write(0, 2, 132));
      await until(() => r.fe.configChanges > before, 'the config change');
      expect(await r.fe.readConfig(0, 2)).to.equal(132);
      expect(r.fe.broken).to.equal(false);
      await echo(r, 0, 'still working after the config change');
    });
  }

  it('sets queues up with Linux widths and accepts the 4-byte queue_enable := 0 on a live queue', async () => {
    const r = rig();
    await bringUp(r);
    const widths = r.fe.txns.filter((t) => t.off >= 0x20 && t.off < 0x40).map((t) => [t.off, t.width]);
    const perQueue = [[0x20, 2], [0x24, 2], [0x28, 8], [0x30, 8], [0x38, 8], [0x26, 2]];
    expect(widths).to.deep.equal([...perQueue, ...perQueue]);
    const q0 = r.fe.queues[0];
    expect(q0.vring.used % 64).to.equal(0);
    expect(q0.vring.desc).to.be.at.least(128); // above the reserved header chunks

    await r.fe.disableQueue(0); // 4 bytes at 0x26: also zeroes 0x28–0x29 (queue_desc's low bytes)
    await r.fe.sync();
    await r.fe.write(0x1c, 4, 0n); // re-select: the window shows the truth again
    await r.fe.sync();
    expect(r.fe.load16(0x26)).to.equal(0);
    expect(r.fe.load16(0x20)).to.equal(8);
    expect(r.needs).to.deep.equal([]);
    expect(r.backend.status & DeviceStatus.DEVICE_NEEDS_RESET).to.equal(0);

    // The BE must not use the disabled queue: a request posted on it before one on queue 1 stays
    // unused after queue 1's completion (the BE scans every queue on each wake-up, §4.9).
    q0.add([Buffer.from('ignored')], [7], 'ignored');
    q0.kick();
    await echo(r, 1, 'queue one still works');
    expect(q0.vring.moreUsed()).to.equal(false);
  });

  it('takes the smaller rings Linux settles for when the offered size does not fit (§7.3)', async () => {
    // 1024 entries need a 32 KiB-aligned 32 KiB block: RW 60 KiB has none, so Linux halves to 512.
    const r = rig(3, true, (ops) => {
      ops.queueMaxSize = () => 1024;
    });
    await bringUp(r);
    expect(r.fe.queues.map((q) => q.vring.size)).to.deep.equal([512, 512]);
    await echo(r, 0, 'on a shrunken ring');
    await echo(r, 1, 'on the other shrunken ring');
    expect(r.needs).to.deep.equal([]);
  });

  it('a device refusing the features: Linux misses it (immediate read-back), the BE flags NEEDS_RESET at its first queue_enable and announces it after DRIVER_OK', async () => {
    const r = rig();
    r.ops.acceptResult = false;
    r.fe.probe();
    await r.fe.negotiate(1n);
    await r.fe.findVqs(specs(r));
    await r.fe.driverOk();
    expect(r.fe.featuresOkReadback & DeviceStatus.FEATURES_OK).to.equal(DeviceStatus.FEATURES_OK);
    await until(() => r.needs.length === 1 && r.fe.configChanges > 0, 'NEEDS_RESET and its config event');
    await r.fe.sync();
    expect(r.fe.status() & DeviceStatus.DEVICE_NEEDS_RESET).to.equal(DeviceStatus.DEVICE_NEEDS_RESET);
    expect(r.backend.currentSession).to.equal(null);
    await r.fe.powerOff(); // still completes transactions
  });

  it('resets and re-initialises through the same front-end', async () => {
    const r = rig();
    await bringUp(r);
    await echo(r, 0, 'first life');
    const baseline = 2; // header chunks
    await r.fe.remove();
    expect(r.fe.allocator().usedChunks).to.equal(baseline);
    await r.fe.negotiate(1n);
    await r.fe.findVqs(specs(r));
    await r.fe.driverOk();
    await until(() => r.ops.sessions.length === 2, 'the second session');
    await echo(r, 0, 'second life');
    await echo(r, 1, 'second life, queue one');
    expect(r.ops.ends).to.include('driver-reset');
    expect(r.backend.status & DeviceStatus.DEVICE_NEEDS_RESET).to.equal(0);
  });

  it('completes the power-off status 0 before the front-end disconnects', async () => {
    const r = rig();
    await bringUp(r);
    await echo(r, 0, 'before power-off');
    await r.fe.powerOff(); // resolves only once the BE completed the transaction
    expect(r.fe.txns[r.fe.txns.length - 1]).to.deep.equal({ off: 0x44, width: 4, value: 0n });
    expect(r.ops.ends[0]).to.equal('driver-reset');
    await until(() => r.backend.phase === 'wait-fe-ready', 'the back-end ready for the next front-end');
  });

  it('completes the reset and queue teardown a Linux FE issues after it left READY (driver unbind)', async () => {
    const r = rig();
    r.fe = new LinuxLikeFrontend(r.feDev, { limitMs: 10_000 });
    await bringUp(r);
    await echo(r, 0, 'before unbind');
    // Linux stores State := 0 before its reset and del_vqs transactions; the BE re-initialises and
    // is READY again before they arrive, so Linux keeps spinning unless the BE completes them.
    await r.fe.unbind();
    expect(r.fe.txns.slice(-5).map((t) => [t.off, t.width])).to.deep.equal([[0x44, 4], [0x1c, 4], [0x26, 4], [0x1c, 4], [0x26, 4]]);
    expect(r.backend.phase).to.equal('wait-fe-ready');
    // Bind again (modprobe): the header the stale transactions hit is sane for the next driver.
    r.fe = new LinuxLikeFrontend(r.feDev);
    r.got = [[], []];
    await bringUp(r);
    await echo(r, 1, 'after rebinding');
    expect(r.needs).to.deep.equal([]);
  });

  it('a back-end restart: the guest breaks, and its unbind/rebind brings it back', async () => {
    const r = rig();
    r.fe = new LinuxLikeFrontend(r.feDev, { limitMs: 10_000 });
    await bringUp(r);
    await echo(r, 0, 'before the restart');
    await r.backend.close();
    r.backend = new VirtioBackend(r.be, r.ops); // the new back-end waits for the FE to reset
    r.backend.start();
    await until(() => r.fe.broken, 'the guest device broken');
    expect(r.backend.phase).to.equal('wait-fe-reset');
    // Linux never recovers by itself; unbinding stores State := 0, the back-end becomes READY,
    // and the driver's reset and queue teardown must complete or fail fast, never hang (which
    // of the two depends on whether the back-end is READY again when each one is issued).
    await r.fe.unbind();
    await until(() => r.backend.phase === 'wait-fe-ready', 'the back-end READY for a new driver');
    r.fe = new LinuxLikeFrontend(r.feDev);
    r.got = [[], []];
    await bringUp(r);
    await echo(r, 0, 'after the rebind');
  });

  it('breaks the device on vector 0 when the back-end leaves READY, and fails later writes', async () => {
    const r = rig();
    await bringUp(r);
    await r.fe.sync();
    await r.backend.close(); // State := RESET: the device model fires the FE's vector 0
    await until(() => r.fe.broken, 'the device broken');
    expect(r.fe.load16(0x40)).to.equal(0); // both event bytes cleared
    expect(r.fe.log).to.include('backend failed!');
    expect(await r.fe.write(0x44, 4, 0n)).to.equal(true); // idle before: the store goes out
    expect(await r.fe.sync()).to.equal(false); // nobody completes it: "backend failed!"
    let err: unknown = null;
    await r.fe.negotiate(1n).catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(LinuxFrontendError);
    expect((err as LinuxFrontendError).code).to.equal('EINVAL'); // features read as 0: no VERSION_1, as in Linux
  });
});

describe('Linux-like front-end against a back-end in another process over vshm-server', function () {
  this.timeout(120000);
  let dir: string;
  let server: ServerProcess | null = null;
  let be: TransportChild | null = null;
  let peer: IvshmemPeer | null = null;

  afterEach(async () => {
    peer?.close();
    be?.kill();
    if (be !== null) await be.exit;
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
    peer = be = server = null;
  });

  it('initialises, moves data, takes a config event, unbinds and rebinds, and powers off', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-linux-fe-'));
    const socketPath = join(dir, 'ivshmem.sock');
    server = new ServerProcess(['-S', socketPath, '-l', '1M', '-V', '3', '-P', '0x8003']);
    await server.ready();
    be = new TransportChild('be', socketPath);
    expect((await be.ready()).id).to.equal(0);
    peer = await IvshmemPeer.connect(socketPath);
    peer.on('error', () => undefined);
    const got: Buffer[][] = [[], []];
    const up = async (): Promise<LinuxLikeFrontend> => {
      const fe = new LinuxLikeFrontend(peer!);
      fe.probe();
      await fe.negotiate(1n);
      await fe.findVqs(
        [0, 1].map((i) => ({
          name: `q${i}`,
          callback: (q: LinuxQueue) => {
            for (let c = q.getBuf(); c !== null; c = q.getBuf()) got[q.index].push(Buffer.from(c.data));
          },
        })),
      );
      await fe.driverOk();
      return fe;
    };
    const echo0 = async (fe: LinuxLikeFrontend, text: string): Promise<void> => {
      const before = got[0].length;
      fe.queues[0].add([Buffer.from(text)], [text.length], text);
      fe.queues[0].kick();
      await until(() => got[0].length > before, `the echo of ${text}`, 30000);
      expect(got[0][before].toString()).to.equal(text);
    };

    let fe = await up();
    expect(fe.mode).to.equal('per-queue');
    expect(fe.allocator().chunkSize).to.equal(256); // RW = 1 MiB − 4 KiB
    await be.event('session');
    await echo0(fe, 'across processes');
    await be.request({ op: 'update-config', cols: 100 });
    await until(() => fe.configChanges > 0, 'the config event', 30000);
    expect(await fe.readConfig(0, 2)).to.equal(100);

    await fe.unbind(); // State := 0 first, then reset and queue teardown by transaction
    const gone = await be.event('deactivate', { reason: 'driver-gone' });
    // The back-end goes RESET after it ended the session and READY again once it re-initialised
    // its header (phase 'wait-fe-ready'); a Linux probe refuses at once (ENODEV) until then, and
    // an operator's rebind comes long after. Wait for READY as that operator would.
    const readyAgain = (): boolean => be!.messages.slice(be!.messages.indexOf(gone)).some((m) => m.type === 'phase' && m.phase === 'wait-fe-ready');
    await until(readyAgain, 'the back-end READY again', 30000);
    expect(peer.peerState(0)).to.equal(PEER_STATE_READY);
    fe = await up();
    await until(() => be!.all('session').length === 2, 'the second session', 30000);
    await echo0(fe, 'after rebinding');

    await fe.powerOff();
    expect(fe.txns[fe.txns.length - 1]).to.deep.equal({ off: 0x44, width: 4, value: 0n });
    peer = null; // powerOff closed it
    const reasons = (): unknown[] => be!.all('deactivate').map((m) => m.reason);
    await until(() => reasons().length === 2, 'the session end at power-off', 30000);
    expect(reasons()).to.deep.equal(['driver-gone', 'driver-reset']);
  });
});
