import { expect } from 'chai';
import { DeviceStatus } from 'virtio-spec-types';
import { createLoopbackPair, simulateServerGone, type LoopbackOptions } from '../../src/testing/loopback.js';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import { VirtioBackend, type BackendPhase } from '../../src/virtio/backend.js';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import type { DeviceMemory } from '../../src/virtio/device-api.js';
import { ArgumentError, TransportError } from '../../src/errors.js';
import {
  HDR_CONFIG,
  HDR_CONFIG_EVENT,
  HDR_CONFIG_GENERATION,
  HDR_DEVICE_FEATURES,
  HDR_DEVICE_FEATURES_SEL,
  HDR_DEVICE_STATUS,
  HDR_DRIVER_FEATURES,
  HDR_DRIVER_FEATURES_SEL,
  HDR_QUEUE_DESC,
  HDR_QUEUE_DEVICE,
  HDR_QUEUE_DEVICE_VECTOR,
  HDR_QUEUE_DRIVER,
  HDR_QUEUE_DRIVER_VECTOR,
  HDR_QUEUE_ENABLE,
  HDR_QUEUE_EVENT,
  HDR_QUEUE_SEL,
  HDR_QUEUE_SIZE,
  HDR_REVISION,
  HDR_SIZE,
  HDR_WRITE_TRANSACTION,
} from '../../src/virtio/header.js';
import { ScriptedFrontend } from '../fixtures/backend-scripted-frontend.js';
import { consoleLikeOps, type RecordingOps } from '../fixtures/backend-devices.js';
import { until } from '../fixtures/until.js';

const S = DeviceStatus;
/** VERSION_1 | ACCESS_PLATFORM in the high word. */
const HIGH_REQUIRED = 0x3;

interface Rig {
  be: IvshmemDevice;
  feDev: IvshmemDevice;
  backend: VirtioBackend;
  fe: ScriptedFrontend;
  ops: RecordingOps;
  phases: BackendPhase[];
}

const rigs: Rig[] = [];

async function rig(opts: LoopbackOptions = {}, ops: RecordingOps = consoleLikeOps()): Promise<Rig> {
  const [be, feDev] = createLoopbackPair({ protocol: 0x8003, ...opts });
  const backend = new VirtioBackend(be, ops);
  const phases: BackendPhase[] = [];
  backend.on('phase', (p: BackendPhase) => phases.push(p));
  const fe = new ScriptedFrontend(feDev);
  const r = { be, feDev, backend, fe, ops, phases };
  rigs.push(r);
  backend.start();
  await fe.becomeReady();
  await until(() => backend.phase === 'serving', 'serving');
  return r;
}

afterEach(async () => {
  for (const r of rigs.splice(0)) {
    await r.backend.close();
    r.be.close();
    r.feDev.close();
  }
});

describe('VirtioBackend: header and state loop (§4.2, §4.10)', () => {
  it('publishes the golden console header after init (§8 item 23)', async () => {
    const { fe, be } = await rig();
    expect(fe.r32(HDR_REVISION)).to.equal(1);
    expect(fe.r32(HDR_SIZE)).to.equal(88);
    expect(fe.r32(HDR_WRITE_TRANSACTION)).to.equal(0);
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(0x00000001);
    expect(fe.r32(HDR_DEVICE_FEATURES_SEL)).to.equal(0);
    expect(fe.r32(HDR_QUEUE_SEL)).to.equal(0);
    expect(fe.r16(HDR_QUEUE_SIZE)).to.equal(8);
    expect(fe.r16(HDR_QUEUE_DEVICE_VECTOR)).to.equal(1);
    expect(fe.r16(HDR_QUEUE_ENABLE)).to.equal(0);
    expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(0);
    expect(fe.r8(HDR_QUEUE_EVENT)).to.equal(0);
    expect(fe.r32(HDR_DEVICE_STATUS)).to.equal(0);
    expect(fe.r32(HDR_CONFIG_GENERATION)).to.equal(0);
    expect(fe.r16(HDR_CONFIG + 0)).to.equal(80);
    expect(fe.r16(HDR_CONFIG + 2)).to.equal(25);
    expect(fe.r32(HDR_CONFIG + 4)).to.equal(0);
    expect(fe.r32(HDR_CONFIG + 8)).to.equal(0);
    expect(be.peerState(0)).to.equal(1);
  });

  it('waits for the FE entry RESET before initialising, then for READY before serving', async () => {
    const [be, feDev] = createLoopbackPair({ protocol: 0x8003 });
    feDev.setState(7); // neither RESET nor READY: the BE must not initialise
    new Uint8Array(be.window).fill(0xaa, 0, 88);
    const backend = new VirtioBackend(be, consoleLikeOps());
    rigs.push({ be, feDev, backend, fe: new ScriptedFrontend(feDev), ops: consoleLikeOps(), phases: [] });
    backend.start();
    await until(() => backend.phase === 'wait-fe-reset', 'wait-fe-reset');
    expect(be.peerState(0)).to.equal(0);
    expect(new DataView(be.window).getUint32(HDR_REVISION, true)).to.equal(0xaaaaaaaa);
    feDev.setState(0);
    await until(() => backend.phase === 'wait-fe-ready', 'wait-fe-ready');
    expect(new DataView(be.window).getUint32(HDR_REVISION, true)).to.equal(1);
    expect(be.peerState(0)).to.equal(1);
    feDev.setState(1);
    await until(() => backend.phase === 'serving', 'serving');
  });

  it('re-initialises after the FE leaves READY and serves again (§8 item 33)', async () => {
    const { fe, feDev, backend, ops, phases } = await rig();
    await fe.txn(HDR_DEVICE_FEATURES_SEL, 4, 1);
    await fe.txn(HDR_CONFIG + 8, 4, 0x41);
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(HIGH_REQUIRED | 0x10);
    fe.store(HDR_CONFIG_EVENT, 1, 1); // junk the FE leaves behind
    feDev.setState(0);
    await until(() => phases.filter((p) => p === 'wait-fe-ready').length === 2, 're-initialisation');
    expect(fe.r32(HDR_DEVICE_FEATURES_SEL)).to.equal(0);
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(1);
    expect(fe.r32(HDR_CONFIG + 8)).to.equal(0);
    expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(0);
    expect(feDev.peerState(0)).to.equal(1);
    // A transaction while the FE is not READY is completed WITHOUT its action: a Linux FE's
    // driver unbind stores State := 0 before its reset and queue teardown and spins on each.
    fe.begin(HDR_DEVICE_FEATURES_SEL, 4, 1);
    await until(() => !fe.pending(), 'completion without action');
    expect(backend.phase).to.equal('wait-fe-ready');
    expect(fe.r32(HDR_DEVICE_FEATURES_SEL)).to.equal(0);
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(1);
    feDev.setState(1);
    await fe.txn(HDR_DEVICE_FEATURES_SEL, 4, 1);
    expect(backend.phase).to.equal('serving');
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(HIGH_REQUIRED | 0x10);
    expect(ops.ends).to.deep.equal([]);
  });

  it('server gone: ends the session, stays RESET and leaves the header alone (no FE can come on this memory, §1.8)', async () => {
    const { fe, feDev, be, backend, ops, phases } = await rig();
    await fe.negotiate(1, HIGH_REQUIRED); // a FE in the middle of its initialisation
    const header = new Uint8Array(be.window).slice(0, 88);
    const states: number[] = [];
    const setState = be.setState.bind(be);
    be.setState = (v: number) => {
      states.push(v);
      setState(v);
    };
    const before = phases.length;
    simulateServerGone(be);
    await until(() => phases.slice(before).includes('wait-fe-reset'), 'the session ended');
    // The FE still reads READY, and its header must not change under it: a re-initialised header
    // refuses its FEATURES_OK (the race a --no-reconnect console hit when the server was killed).
    // The loop runs its transitions synchronously, so a re-initialisation would be done by now.
    expect(Array.from(new Uint8Array(be.window).slice(0, 88))).to.deep.equal(Array.from(header));
    expect(new DataView(be.window).getUint32(HDR_REVISION, true)).to.equal(1);
    expect(states).to.deep.equal([0]);
    expect(be.peerState(0)).to.equal(0);
    expect(phases.slice(before)).to.deep.equal(['wait-fe-reset']);
    expect(ops.ends).to.deep.equal([]); // no session yet: DRIVER_OK was never written
    expect(feDev.peerState(1)).to.equal(1);
    await backend.close();
    expect(backend.phase).to.equal('closed');
  });

  it('server gone while waiting for a front-end: State RESET, header left alone, no transaction discarded', async () => {
    const [be, feDev] = createLoopbackPair({ protocol: 0x8003 });
    const backend = new VirtioBackend(be, consoleLikeOps());
    const phases: BackendPhase[] = [];
    backend.on('phase', (p: BackendPhase) => phases.push(p));
    try {
      backend.start();
      expect(backend.phase).to.equal('wait-fe-ready');
      expect(be.state).to.equal(1);
      const header = Array.from(new Uint8Array(be.window).slice(0, 88));
      simulateServerGone(be);
      await until(() => backend.phase === 'wait-fe-reset', 'State RESET');
      // §4.10 "Server gone": no front-end can come on this memory any more, so the back-end does
      // not stay READY on it — and it completes nothing: a front-end that went READY just before
      // would otherwise see its set-up thrown away write by write.
      expect(be.state).to.equal(0);
      expect(Array.from(new Uint8Array(be.window).slice(0, 88))).to.deep.equal(header);
      expect(phases.slice(-1)).to.deep.equal(['wait-fe-reset']);
      // A transaction that shows up now is left alone (not completed without action).
      const u32 = new Uint32Array(be.window, 0, 22);
      Atomics.store(u32, HDR_WRITE_TRANSACTION >>> 2, HDR_DEVICE_STATUS);
      feDev.doorbell(0, 0);
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      expect(Atomics.load(u32, HDR_WRITE_TRANSACTION >>> 2)).to.equal(HDR_DEVICE_STATUS);
    } finally {
      await backend.close();
      be.close();
      feDev.close();
    }
  });

  it('rejects a front-end device, a wrong device id and a bad ops table', () => {
    const [be, fe] = createLoopbackPair({ protocol: 0x8003 });
    try {
      expect(() => new VirtioBackend(fe, consoleLikeOps()))
        .to.throw(TransportError)
        .with.property('code', 'VSHM_ERR_ROLE');
      expect(() => new VirtioBackend(be, { ...consoleLikeOps(), deviceId: 4 }))
        .to.throw(TransportError)
        .with.property('code', 'VSHM_ERR_DEVICE_ID');
      expect(() => new VirtioBackend(be, { ...consoleLikeOps(), features: 1n << 34n })).to.throw(ArgumentError);
      expect(() => new VirtioBackend(be, { ...consoleLikeOps(), queueMaxSize: () => 12 })).to.throw(ArgumentError);
      expect(() => new VirtioBackend(be, consoleLikeOps(), { enforceIsolation: true })).to.throw(ArgumentError); // OUT = 0
      expect(() => new VirtioBackend(be, consoleLikeOps(), { enforceIsolaton: true } as never)).to.throw(ArgumentError);
    } finally {
      be.close();
      fe.close();
    }
  });

  it('refuses a closed ivshmem device with a message that says so (not a header size, not a silent wait)', () => {
    const [be, fe] = createLoopbackPair({ protocol: 0x8003 });
    be.close();
    fe.close();
    expect(() => new VirtioBackend(be, consoleLikeOps()))
      .to.throw(TransportError, /device is closed/)
      .with.property('code', 'VSHM_ERR_DEVICE_CLOSED');
    expect(() => new VirtioFrontend(fe, { deviceId: 3, features: 0n, queueCount: () => 2, probe: () => undefined, remove: () => undefined }))
      .to.throw(TransportError, /device is closed/)
      .with.property('code', 'VSHM_ERR_DEVICE_CLOSED');
  });

  it('queueMaxSize sees the sections of the region it is built on, and its answer is offered', async () => {
    const seen: Array<{ index: number; memory: DeviceMemory }> = [];
    // A device whose offer follows the R/W section: one entry per 8 KiB of it, at most 32768.
    const ops = consoleLikeOps();
    ops.queueMaxSize = (index: number, memory: DeviceMemory): number => {
      seen.push({ index, memory });
      return Math.min(32768, 2 ** Math.floor(Math.log2(memory.rwSize / 8192)));
    };
    // -l 256K -o 64K: RW = 256 KiB − 4 KiB − 2 · 64 KiB = 124 KiB → 8 (15.5 → 8).
    const { fe } = await rig({ size: 256 * 1024, outputSectionSize: 65536 }, ops);
    const memory = { rwSize: 124 * 1024, outputSectionSize: 65536, headerSize: 88 };
    expect(seen).to.deep.equal([{ index: 0, memory }, { index: 1, memory }]);
    expect(fe.r16(HDR_QUEUE_SIZE)).to.equal(8);
    // A larger R/W section, no output sections: the same device offers more.
    seen.length = 0;
    const big = await rig({ size: 1 << 20 }, ops);
    expect(seen.map((x) => x.memory)).to.deep.equal(new Array(2).fill({ rwSize: (1 << 20) - 4096, outputSectionSize: 0, headerSize: 88 }));
    expect(big.fe.r16(HDR_QUEUE_SIZE)).to.equal(64);
    expect(Object.isFrozen(seen[0].memory)).to.equal(true);
  });

  it('close() ends the session, writes State RESET and leaves the device open', async () => {
    const { fe, backend, be, ops } = await rig();
    await fe.negotiate(1, HIGH_REQUIRED);
    await fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(ops.sessions).to.have.length(1);
    await backend.close();
    expect(ops.ends).to.deep.equal(['shutdown']);
    expect(be.peerState(0)).to.equal(0);
    expect(be.isPresent(0)).to.equal(true);
    expect(backend.phase).to.equal('closed');
  });
});

describe('VirtioBackend: write transactions (§4.3, §4.4)', () => {
  it('fills the feature window before completing a select; sel > 1 reads 0 (§8 items 25, 26)', async () => {
    const { fe } = await rig();
    await fe.txn(HDR_DEVICE_FEATURES_SEL, 4, 1);
    // VERSION_1, ACCESS_PLATFORM, ORDER_PLATFORM; never RING_PACKED (bit 34 = 0x4).
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(0x13);
    await fe.txn(HDR_DEVICE_FEATURES_SEL, 4, 2);
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(0);
    await fe.txn(HDR_DEVICE_FEATURES_SEL, 4, 0);
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(1);
  });

  it('offers INDIRECT/EVENT_IDX only when the device does', async () => {
    const { fe } = await rig({}, consoleLikeOps((1n << 28n) | (1n << 29n)));
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(0x30000001);
  });

  it('stores driver features per window and accepts FEATURES_OK', async () => {
    const { fe, backend, ops } = await rig();
    await fe.txn(HDR_DRIVER_FEATURES_SEL, 4, 5); // ignored window
    await fe.txn(HDR_DRIVER_FEATURES, 4, 0xffffffff);
    const status = await fe.negotiate(1, HIGH_REQUIRED);
    expect(status).to.equal(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    expect(backend.negotiatedFeatures).to.equal((3n << 32n) | 1n);
    expect(ops.accepted).to.deep.equal([(3n << 32n) | 1n]);
  });

  for (const [name, low, high, accept] of [
    ['a bit not offered', 0x3, HIGH_REQUIRED, true],
    ['missing VERSION_1', 0x1, 0x2, true],
    ['missing ACCESS_PLATFORM', 0x1, 0x1, true],
    ['RING_PACKED', 0x1, HIGH_REQUIRED | 0x4, true],
    ['acceptFeatures() false', 0x1, HIGH_REQUIRED, false],
  ] as const) {
    it(`clears FEATURES_OK for ${name}; a later DRIVER_OK sets NEEDS_RESET (§4.5)`, async () => {
      const ops = consoleLikeOps();
      ops.acceptResult = accept;
      const { fe, backend } = await rig({}, ops);
      const needs: Error[] = [];
      backend.on('needs-reset', (e: Error) => needs.push(e));
      const status = await fe.negotiate(low, high);
      expect(status & S.FEATURES_OK).to.equal(0);
      expect(backend.negotiatedFeatures).to.equal(null);
      fe.irqs.length = 0;
      await fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
      expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(S.DEVICE_NEEDS_RESET);
      expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(1);
      await until(() => fe.irqs.includes(0), 'config event on vector 0');
      expect(ops.sessions).to.have.length(0);
      expect(needs).to.have.length(1);
      expect(needs[0]).to.be.instanceOf(TransportError).with.property('code', 'VSHM_ERR_FEATURES');
      // Set again after every non-zero status transaction while it lasts (§4.5).
      await fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE);
      expect(fe.r32(HDR_DEVICE_STATUS)).to.equal(S.ACKNOWLEDGE | S.DEVICE_NEEDS_RESET);
      // Reset clears it.
      await fe.txn(HDR_DEVICE_STATUS, 4, 0);
      expect(fe.r32(HDR_DEVICE_STATUS)).to.equal(0);
      expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(0);
    });
  }

  it('queue_sel loads the window: size 0 for an absent queue, device vectors 1 + i (§8 items 27, 29)', async () => {
    const { fe } = await rig({ vectors: 3 });
    await fe.txn(HDR_QUEUE_SEL, 4, 1);
    expect([fe.r16(HDR_QUEUE_SIZE), fe.r16(HDR_QUEUE_DEVICE_VECTOR), fe.r16(HDR_QUEUE_ENABLE)]).to.deep.equal([8, 2, 0]);
    fe.store(HDR_QUEUE_SIZE, 2, 0x1234); // stale junk the window load must overwrite
    fe.store(HDR_QUEUE_DESC, 8, 0xdeadn);
    await fe.txn(HDR_QUEUE_SEL, 4, 2);
    expect([fe.r16(HDR_QUEUE_SIZE), fe.r16(HDR_QUEUE_DEVICE_VECTOR), fe.r16(HDR_QUEUE_DRIVER_VECTOR), fe.r16(HDR_QUEUE_ENABLE)]).to.deep.equal([0, 0, 0, 0]);
    expect([fe.r64(HDR_QUEUE_DESC), fe.r64(HDR_QUEUE_DRIVER), fe.r64(HDR_QUEUE_DEVICE)]).to.deep.equal([0n, 0n, 0n]);
    await fe.txn(HDR_QUEUE_SEL, 4, 0x10000);
    expect(fe.r16(HDR_QUEUE_SIZE)).to.equal(0);
  });

  it('uses device vector 0 for every queue when vectors < 1 + Q (§8 item 29)', async () => {
    const { fe } = await rig({ vectors: 2 });
    expect(fe.r16(HDR_QUEUE_DEVICE_VECTOR)).to.equal(0);
    await fe.txn(HDR_QUEUE_SEL, 4, 1);
    expect([fe.r16(HDR_QUEUE_SIZE), fe.r16(HDR_QUEUE_DEVICE_VECTOR)]).to.deep.equal([8, 0]);
  });

  it('records queue fields, latches at enable and accepts the Linux 4-byte queue_enable stores (§8 item 27)', async () => {
    const { fe } = await rig();
    await fe.negotiate(1, HIGH_REQUIRED);
    await fe.txn(HDR_QUEUE_SEL, 4, 0);
    await fe.txn(HDR_QUEUE_SIZE, 2, 4);
    await fe.txn(HDR_QUEUE_DRIVER_VECTOR, 2, 1);
    await fe.txn(HDR_QUEUE_DESC, 8, 0x1010n);
    await fe.txn(HDR_QUEUE_DRIVER, 8, 0x1100n);
    await fe.txn(HDR_QUEUE_DEVICE, 8, 0x1200n);
    await fe.txn(HDR_QUEUE_ENABLE, 4, 1); // clobbers 0x28–0x29 (queue_desc low bytes)
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(0);
    await fe.txn(HDR_QUEUE_SEL, 4, 1);
    await fe.txn(HDR_QUEUE_SEL, 4, 0);
    expect([fe.r16(HDR_QUEUE_SIZE), fe.r16(HDR_QUEUE_DRIVER_VECTOR), fe.r16(HDR_QUEUE_ENABLE)]).to.deep.equal([4, 1, 1]);
    expect([fe.r64(HDR_QUEUE_DESC), fe.r64(HDR_QUEUE_DRIVER), fe.r64(HDR_QUEUE_DEVICE)]).to.deep.equal([0x1010n, 0x1100n, 0x1200n]);
    await fe.txn(HDR_QUEUE_ENABLE, 4, 0); // Linux teardown: 4 bytes of 0
    expect(fe.r16(HDR_QUEUE_ENABLE)).to.equal(0);
    await fe.txn(HDR_QUEUE_SEL, 4, 0);
    expect([fe.r16(HDR_QUEUE_SIZE), fe.r16(HDR_QUEUE_ENABLE)]).to.deep.equal([8, 0]);
    expect(fe.r64(HDR_QUEUE_DESC)).to.equal(0n); // forgotten (§4.3: MUST NOT use queue_desc after a disable)
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(0);
  });

  it('a queue enabled after DRIVER_OK sets NEEDS_RESET (it could never be served); after a reset it enables', async () => {
    const { fe, ops, backend } = await rig();
    const resets: Error[] = [];
    backend.on('needs-reset', (e: Error) => resets.push(e));
    await fe.negotiate(1, HIGH_REQUIRED);
    await fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(ops.sessions).to.have.length(1);
    const setUpQueue1 = async (): Promise<void> => {
      await fe.txn(HDR_QUEUE_SEL, 4, 1);
      await fe.txn(HDR_QUEUE_SIZE, 2, 4);
      await fe.txn(HDR_QUEUE_DESC, 8, 0x1010n);
      await fe.txn(HDR_QUEUE_DRIVER, 8, 0x1100n);
      await fe.txn(HDR_QUEUE_DEVICE, 8, 0x1200n);
      await fe.txn(HDR_QUEUE_ENABLE, 2, 1);
    };
    await setUpQueue1();
    expect(fe.r16(HDR_QUEUE_ENABLE)).to.equal(0);
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(S.DEVICE_NEEDS_RESET);
    expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(1);
    expect(ops.ends).to.deep.equal(['needs-reset']);
    expect(resets.map((e) => (e as Error & { code?: string }).code)).to.deep.equal(['VSHM_ERR_QUEUE']);
    expect(resets[0].message).to.match(/queue 1: queue_enable := 1 after DRIVER_OK/);
    // After the reset the same set-up, before DRIVER_OK, enables the queue.
    await fe.txn(HDR_DEVICE_STATUS, 4, 0);
    await fe.negotiate(1, HIGH_REQUIRED);
    await setUpQueue1();
    expect(fe.r16(HDR_QUEUE_ENABLE)).to.equal(1);
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(0);
  });

  it('a queue enabled before FEATURES_OK was accepted sets NEEDS_RESET: it would run with features never negotiated (VIRTIO 1.2 §3.1.1)', async () => {
    const EVENT_IDX = 1n << 29n;
    const { fe, ops, backend } = await rig({}, consoleLikeOps(EVENT_IDX));
    const resets: Error[] = [];
    backend.on('needs-reset', (e: Error) => resets.push(e));
    const setUpQueue0 = async (): Promise<void> => {
      await fe.txn(HDR_QUEUE_SEL, 4, 0);
      await fe.txn(HDR_QUEUE_SIZE, 2, 4);
      await fe.txn(HDR_QUEUE_DESC, 8, 0x1010n);
      await fe.txn(HDR_QUEUE_DRIVER, 8, 0x1100n);
      await fe.txn(HDR_QUEUE_DEVICE, 8, 0x1200n);
      await fe.txn(HDR_QUEUE_ENABLE, 2, 1);
    };
    // ACKNOWLEDGE | DRIVER, features not even proposed: the offered set (with EVENT_IDX) is all
    // the device knows — the queue would be built for it, whatever the driver negotiates next.
    await fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE | S.DRIVER);
    await setUpQueue0();
    expect(fe.r16(HDR_QUEUE_ENABLE)).to.equal(0);
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(S.DEVICE_NEEDS_RESET);
    expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(1);
    expect(resets.map((e) => (e as Error & { code?: string }).code)).to.deep.equal(['VSHM_ERR_QUEUE']);
    expect(resets[0].message).to.match(/queue 0: queue_enable := 1 before FEATURES_OK/);
    // The driver goes on regardless (features without EVENT_IDX, DRIVER_OK): no session starts.
    expect(await fe.negotiate(1, HIGH_REQUIRED)).to.equal(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DEVICE_NEEDS_RESET);
    await fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(ops.sessions).to.have.length(0);
    expect(resets).to.have.length(1);
    // After a reset, in order: enabled, and DRIVER_OK starts a session with the negotiated set.
    await fe.txn(HDR_DEVICE_STATUS, 4, 0);
    await fe.negotiate(1, HIGH_REQUIRED);
    await setUpQueue0();
    expect(fe.r16(HDR_QUEUE_ENABLE)).to.equal(1);
    await fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(ops.sessions).to.have.length(1);
    expect(ops.sessions[0].features & EVENT_IDX).to.equal(0n);
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(0);
  });

  it('a queue enabled after the device refused FEATURES_OK sets NEEDS_RESET too (the refusal a Linux FE cannot see)', async () => {
    const ops = consoleLikeOps();
    ops.acceptResult = false;
    const { fe, backend } = await rig({}, ops);
    const resets: Error[] = [];
    backend.on('needs-reset', (e: Error) => resets.push(e));
    expect(await fe.negotiate(1, HIGH_REQUIRED)).to.equal(S.ACKNOWLEDGE | S.DRIVER);
    await fe.txn(HDR_QUEUE_SIZE, 2, 4);
    await fe.txn(HDR_QUEUE_DESC, 8, 0x1010n);
    await fe.txn(HDR_QUEUE_DRIVER, 8, 0x1100n);
    await fe.txn(HDR_QUEUE_DEVICE, 8, 0x1200n);
    await fe.txn(HDR_QUEUE_ENABLE, 2, 1);
    expect(fe.r16(HDR_QUEUE_ENABLE)).to.equal(0);
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(S.DEVICE_NEEDS_RESET);
    expect(resets.map((e) => (e as Error & { code?: string }).code)).to.deep.equal(['VSHM_ERR_QUEUE']);
  });

  it('an invalid queue at enable (§6.1) sets NEEDS_RESET', async () => {
    const { fe } = await rig();
    await fe.negotiate(1, HIGH_REQUIRED);
    await fe.txn(HDR_QUEUE_SIZE, 2, 3); // not a power of two
    await fe.txn(HDR_QUEUE_DESC, 8, 0x1000n);
    await fe.txn(HDR_QUEUE_DRIVER, 8, 0x1100n);
    await fe.txn(HDR_QUEUE_DEVICE, 8, 0x1200n);
    await fe.txn(HDR_QUEUE_ENABLE, 2, 1);
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(S.DEVICE_NEEDS_RESET);
    expect(fe.r16(HDR_QUEUE_ENABLE)).to.equal(0);
    expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(1);
  });

  it('a violation during set-up is announced again at DRIVER_OK: a FE whose interrupts were off (Linux, until find_vqs ends) still gets the config event', async () => {
    const { fe, feDev } = await rig();
    feDev.interruptsEnabled = false; // §3: events meanwhile are dropped, not kept
    await fe.negotiate(1, HIGH_REQUIRED);
    await fe.txn(HDR_QUEUE_SIZE, 2, 3); // not a power of two: refused at enable (§6.1)
    await fe.txn(HDR_QUEUE_DESC, 8, 0x1000n);
    await fe.txn(HDR_QUEUE_DRIVER, 8, 0x1100n);
    await fe.txn(HDR_QUEUE_DEVICE, 8, 0x1200n);
    await fe.txn(HDR_QUEUE_ENABLE, 2, 1);
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(S.DEVICE_NEEDS_RESET);
    await new Promise((r) => setImmediate(r)); // the loopback's delivery of that doorbell (FIFO): dropped
    const before = fe.irqs.length;
    feDev.interruptsEnabled = true; // §4.6: Interrupt Control := 1, then DRIVER_OK
    await fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    await until(() => fe.irqs.slice(before).includes(0), 'a config event after DRIVER_OK');
    expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(1);
    expect(fe.r32(HDR_DEVICE_STATUS) & S.DEVICE_NEEDS_RESET).to.equal(S.DEVICE_NEEDS_RESET);
  });

  it('config writes: driver-writable fields at their width, read-only fields restored (§4.8)', async () => {
    const { fe, ops } = await rig();
    await fe.txn(HDR_CONFIG + 8, 4, 0x41);
    expect(fe.r32(HDR_CONFIG + 8)).to.equal(0x41);
    expect(ops.written).to.deep.equal([{ field: 'emerg_wr', value: 0x41 }]);
    await fe.txn(HDR_CONFIG + 0, 2, 132);
    expect(fe.r16(HDR_CONFIG + 0)).to.equal(80);
    await fe.txn(HDR_CONFIG + 1, 1, 0xff); // no field starts here
    expect(fe.r16(HDR_CONFIG + 0)).to.equal(80);
    await fe.txn(HDR_CONFIG + 6, 4, 0xffffffff); // spills into emerg_wr: restored too
    expect([fe.r32(HDR_CONFIG + 4), fe.r32(HDR_CONFIG + 8)]).to.deep.equal([0, 0x41]);
    expect(ops.written).to.have.length(1);
  });

  it('ignores writes to BE-owned fields and restores them', async () => {
    const { fe } = await rig();
    await fe.txn(HDR_SIZE, 4, 0x1000);
    expect(fe.r32(HDR_SIZE)).to.equal(88);
    await fe.txn(HDR_DEVICE_FEATURES, 4, 0xffffffff);
    expect(fe.r32(HDR_DEVICE_FEATURES)).to.equal(1);
    await fe.txn(HDR_CONFIG_GENERATION, 4, 5);
    expect(fe.r32(HDR_CONFIG_GENERATION)).to.equal(0);
    await fe.txn(HDR_QUEUE_DEVICE_VECTOR, 2, 9);
    expect(fe.r16(HDR_QUEUE_DEVICE_VECTOR)).to.equal(1);
    // An 8-byte store at 0x48 reaches past config_generation into the config (cols, rows): the
    // config is BE-owned too (§4.2) and is put back with the rest.
    await fe.txn(HDR_CONFIG_GENERATION, 8, 0xffffffffffffffffn);
    expect(fe.r32(HDR_CONFIG_GENERATION)).to.equal(0);
    expect([fe.r16(HDR_CONFIG + 0), fe.r16(HDR_CONFIG + 2)]).to.deep.equal([80, 25]);
  });

  it('DRIVER_OK activates the device; status 0 resets and ends the session (§4.5)', async () => {
    const { fe, ops, backend } = await rig();
    await fe.negotiate(1, HIGH_REQUIRED);
    await fe.txn(HDR_DEVICE_STATUS, 4, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(ops.sessions).to.have.length(1);
    expect(ops.sessions[0].features).to.equal((3n << 32n) | 1n);
    expect(ops.sessions[0].queues).to.deep.equal([undefined, undefined]);
    fe.store(HDR_QUEUE_EVENT, 1, 1);
    fe.store(HDR_CONFIG_EVENT, 1, 1);
    await fe.txn(HDR_DEVICE_STATUS, 4, 0);
    expect(ops.ends).to.deep.equal(['driver-reset']);
    expect(fe.r32(HDR_DEVICE_STATUS)).to.equal(0);
    expect([fe.r8(HDR_CONFIG_EVENT), fe.r8(HDR_QUEUE_EVENT)]).to.deep.equal([0, 0]);
    expect(backend.negotiatedFeatures).to.equal(null);
    expect(backend.phase).to.equal('serving');
  });
});

describe('VirtioBackend: config updates (§4.8)', () => {
  it('keeps config_generation odd during an update, then fires config_event and vector 0 (§8 item 31)', async () => {
    const { fe, backend } = await rig();
    fe.irqs.length = 0;
    let seen = -1;
    backend.updateConfig((c) => {
      seen = fe.r32(HDR_CONFIG_GENERATION);
      c.write(0, 2, 100);
      expect(fe.r32(HDR_CONFIG_GENERATION) % 2).to.equal(1);
    });
    expect(seen % 2).to.equal(1);
    expect(fe.r32(HDR_CONFIG_GENERATION)).to.equal(2);
    expect(fe.r16(HDR_CONFIG)).to.equal(100);
    expect(fe.r8(HDR_CONFIG_EVENT)).to.equal(1);
    await until(() => fe.irqs.includes(0), 'vector 0');
  });

  it('an update nested in another joins it: the generation stays odd until the outer one ends', async () => {
    const { fe, backend } = await rig();
    const during: number[] = [];
    backend.updateConfig((c) => {
      c.write(0, 2, 7);
      backend.updateConfig((inner) => {
        inner.write(2, 2, 8);
        during.push(fe.r32(HDR_CONFIG_GENERATION));
      });
      during.push(fe.r32(HDR_CONFIG_GENERATION)); // the outer update is still writing
      c.write(0, 2, 9);
    });
    expect(during.map((g) => g % 2)).to.deep.equal([1, 1]);
    expect(fe.r32(HDR_CONFIG_GENERATION)).to.equal(2);
    expect([fe.r16(HDR_CONFIG), fe.r16(HDR_CONFIG + 2)]).to.deep.equal([9, 8]);
  });

  it('refuses config writes outside initConfig/updateConfig', async () => {
    const { backend } = await rig();
    let err: unknown;
    backend.updateConfig((c) => {
      setImmediate(() => {
        try {
          c.write(0, 2, 1);
        } catch (e) {
          err = e;
        }
      });
    });
    await until(() => err !== undefined, 'late write');
    expect(err).to.be.instanceOf(TransportError).with.property('code', 'VSHM_ERR_CONFIG_WRITE');
  });
});
