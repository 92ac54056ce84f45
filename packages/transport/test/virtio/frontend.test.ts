import { expect } from 'chai';
import { VirtioFeatureMask } from 'virtio-spec-types';
import { createLoopbackPair, type LoopbackOptions } from '../../src/testing/loopback.js';
import { VirtioBackend } from '../../src/virtio/backend.js';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import { ArgumentError, TransportError } from '../../src/errors.js';
import { SharedMemoryLayout } from '../../src/ivshmem/layout.js';
import type { DriverSession } from '../../src/virtio/device-api.js';
import type { FrontendQueue } from '../../src/virtio/frontend-queues.js';
import { echoDevice, recordingDriver } from '../fixtures/transport-devices.js';
import { useEchoRigs, type EchoRig } from '../fixtures/transport-rigs.js';
import { until } from '../fixtures/until.js';

describe('VirtioFrontend ↔ VirtioBackend on the loopback', () => {
  const echoRig = useEchoRigs();

  async function rig(lb: LoopbackOptions = {}, devOpts: Parameters<typeof echoDevice>[0] = {}, drvOpts: Parameters<typeof recordingDriver>[0] = {}): Promise<EchoRig & { session: DriverSession }> {
    const r = echoRig({ loopback: lb, dev: echoDevice(devOpts), drv: recordingDriver(drvOpts) });
    r.backend.start();
    const session = await r.frontend.start();
    return { ...r, session };
  }

  it('checks its arguments and the role', () => {
    const [be, fe] = createLoopbackPair();
    try {
      expect(() => new VirtioFrontend(be, recordingDriver())).to.throw(TransportError).with.property('code', 'VSHM_ERR_ROLE');
      expect(() => new VirtioFrontend(fe, { ...recordingDriver(), deviceId: 4 })).to.throw(TransportError).with.property('code', 'VSHM_ERR_DEVICE_ID');
      expect(() => new VirtioFrontend(fe, recordingDriver(), { bogus: 1 } as never)).to.throw(ArgumentError);
      expect(() => new VirtioFrontend(fe, recordingDriver(), { brokenRetry: { firstMs: 20, maxMs: 10 } })).to.throw(ArgumentError, /brokenRetry/);
    } finally {
      fe.close();
      be.close();
    }
  });

  it('a region above 4 GiB (the server accepts up to 1 TiB) is refused with a message, not a bare RangeError', function () {
    const rw = 2 ** 32 + 2 ** 20;
    let big: ArrayBuffer;
    try {
      big = new ArrayBuffer(rw); // lazily backed: no memory is touched
    } catch {
      this.skip();
    }
    const [be, fe] = createLoopbackPair();
    try {
      // The loopback's own limit is 2 GiB: present its front-end device with a larger R/W section.
      const dev = Object.create(fe, {
        window: { value: big },
        layout: { value: new SharedMemoryLayout(4096 + rw, 2, 0) },
      }) as typeof fe;
      expect(() => new VirtioFrontend(dev, recordingDriver())).to.throw(ArgumentError, /4 GiB/);
    } finally {
      fe.close();
      be.close();
    }
  });

  it('initialises, negotiates VERSION_1 + ACCESS_PLATFORM + device bits, and probes once', async () => {
    const { session, drv, frontend, backend } = await rig();
    expect(drv.sessions).to.have.length(1);
    expect(drv.sessions[0]).to.equal(session);
    const f = session.features;
    expect(f & VirtioFeatureMask.VERSION_1).to.not.equal(0n);
    expect(f & VirtioFeatureMask.ACCESS_PLATFORM).to.not.equal(0n);
    expect(f & VirtioFeatureMask.RING_PACKED).to.equal(0n);
    expect(f & 1n).to.equal(1n);
    expect(backend.negotiatedFeatures).to.equal(f);
    expect(session.queues.map((q) => q.size)).to.deep.equal([8, 8]);
    expect(frontend.phase).to.equal('live');
    expect(frontend.vectorMode).to.equal('per-queue');
  });

  it('reads config honouring the generation and writes config by transaction', async () => {
    const { session, dev } = await rig();
    expect(session.readConfig(0, 2)).to.equal(80);
    expect(session.readConfig(2, 2)).to.equal(25);
    await session.writeConfig(8, 4, 0x41);
    expect(dev.written).to.deep.equal([{ field: 'emerg_wr', value: 0x41 }]);
    expect(() => session.readConfig(12, 1)).to.throw(ArgumentError);
  });

  it('delivers config events to configChanged', async () => {
    const { drv, dev } = await rig();
    const before = drv.configEvents;
    dev.sessions[0].updateConfig((c) => c.write(0, 2, 132));
    await until(() => drv.configEvents > before, 'config event');
    expect(drv.sessions[0].readConfig(0, 2)).to.equal(132);
  });

  it('moves data: a batch of requests with one kick all complete with the echoed bytes', async () => {
    const { session, drv } = await rig();
    const q = session.queues[0];
    for (let i = 0; i < 4; i++) expect(q.add(Buffer.from(`msg-${i}`), 16, i)).to.equal(true);
    expect(q.inFlight).to.equal(4);
    q.kick();
    await until(() => drv.used.length === 4, '4 completions');
    expect(drv.used.map((u) => [u.token, u.data.toString()])).to.deep.equal([
      [0, 'msg-0'],
      [1, 'msg-1'],
      [2, 'msg-2'],
      [3, 'msg-3'],
    ]);
    expect(q.inFlight).to.equal(0);
  });

  it('add() returns false when descriptors run out, and works again after completions', async () => {
    const { session, drv } = await rig();
    const q = session.queues[0];
    let n = 0;
    while (q.add(Buffer.from('x'), 1, n)) n++;
    expect(n).to.equal(4); // 2 descriptors each, queue size 8
    q.kick();
    await until(() => drv.used.length === 4, 'completions');
    expect(q.add(Buffer.from('y'), 1, 'again')).to.equal(true);
    q.kick();
    await until(() => drv.used.length === 5, 'one more');
  });

  it('keeps moving data through many rounds (index wrap-around)', async () => {
    const { session, drv } = await rig();
    const q = session.queues[0];
    for (let round = 0; round < 20000 / 4; round++) {
      for (let i = 0; i < 4; i++) q.add(Buffer.from([i, round & 0xff]), 2, round * 4 + i);
      q.kick();
      const want = (round + 1) * 4;
      if (drv.used.length < want) await until(() => drv.used.length === want, `round ${round}`);
    }
    expect(drv.used.length).to.equal(20000);
    const last = drv.used[19999];
    expect(last.token).to.equal(19999);
    expect([...last.data]).to.deep.equal([3, (4999) & 0xff]);
  });

  it('close() resets the device, fails in-flight requests and leaves State RESET', async () => {
    const { session, drv, frontend, fe, backend } = await rig();
    const q1 = session.queues[1]; // held by the device: stays in flight
    q1.add(Buffer.from('held'), 0, 'h');
    q1.kick();
    await until(() => backend.currentSession !== null, 'session');
    await frontend.close();
    expect(drv.failed.map((f) => [f.token, (f.err as TransportError).code])).to.deep.equal([['h', 'VSHM_ERR_CLOSED']]);
    expect(drv.removed).to.have.length(1);
    expect(fe.state).to.equal(0);
    expect(fe.interruptsEnabled).to.equal(false);
    expect(backend.status).to.equal(0);
    expect(q1.add(Buffer.from('late'), 0, 'late')).to.equal(false);
  });

  it('close() before the back-end is READY rejects start() and leaves State RESET', async () => {
    const [be, fe] = createLoopbackPair();
    const frontend = new VirtioFrontend(fe, recordingDriver());
    const started = frontend.start();
    await new Promise((r) => setImmediate(r));
    expect(frontend.phase).to.equal('waiting');
    await frontend.close();
    const err = await started.catch((e: unknown) => e);
    expect((err as TransportError).code).to.equal('VSHM_ERR_CLOSED');
    expect(fe.state).to.equal(0);
    expect(frontend.phase).to.equal('closed');
    fe.close();
    be.close();
  });

  it('a probe that throws breaks the session: remove, device reset, probe again', async () => {
    const drv = recordingDriver();
    const probe = drv.probe.bind(drv);
    let calls = 0;
    drv.probe = (s) => {
      probe(s);
      if (++calls === 1) throw new Error('driver bug');
    };
    const { backend, frontend, dev } = echoRig({ drv });
    const errors: Error[] = [];
    frontend.on('error', (e: Error) => errors.push(e));
    backend.start();
    const ready = new Promise<DriverSession>((r) => frontend.on('ready', r));
    void frontend.start().catch(() => undefined);
    const s = await ready;
    expect(calls).to.equal(2);
    expect(drv.removed).to.have.length(1);
    expect(errors.map((e) => e.message)).to.deep.equal(['driver bug']);
    expect(dev.ends).to.include('driver-reset'); // the device was reset (§4.5) before re-initialising
    s.queues[0].add(Buffer.from('ok'), 4, 'ok');
    s.queues[0].kick();
    await until(() => drv.used.length === 1, 'echo');
  });

  it('an onUsed that throws breaks the session and the driver is probed again', async () => {
    const { session, drv } = await rig();
    let thrown = false;
    session.queues[0].onUsed = () => {
      thrown = true;
      throw new Error('callback bug');
    };
    session.queues[0].add(Buffer.from('x'), 4, 'x');
    session.queues[0].kick();
    await until(() => drv.sessions.length === 2, 're-probe');
    expect(thrown).to.equal(true);
    expect(drv.removed).to.have.length(1);
  });

  it('a session that breaks again and again is re-initialised at once the first time, then after a growing pause', async () => {
    // A device whose activate() always throws: every DRIVER_OK is answered with NEEDS_RESET. Each
    // broken session used to be followed by the next initialisation at once — a busy loop (a core,
    // and one 'error' per round: a console front-end printed hundreds of lines a second).
    const dev = echoDevice();
    dev.activate = () => {
      throw new Error('device bug');
    };
    const { backend, frontend, drv } = echoRig({ dev, frontend: { brokenRetry: { firstMs: 60_000, maxMs: 60_000 } } });
    const errors: Error[] = [];
    frontend.on('error', (e: Error) => errors.push(e));
    backend.on('device-exception', () => undefined);
    backend.start();
    void frontend.start().catch(() => undefined);
    await until(() => errors.length === 2, 'the second broken session');
    expect(drv.sessions).to.have.length(2); // the first break was retried at once
    // Now the front-end pauses: many event-loop turns and a few timer rounds bring no new session.
    const txns = frontend.transactionsCompleted;
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 30));
    expect(frontend.transactionsCompleted).to.equal(txns);
    expect(drv.sessions).to.have.length(2);
    expect(frontend.phase).to.equal('recovering');
    await frontend.close(); // the pause does not hold close() up
    expect(frontend.phase).to.equal('closed');
  });

  it('zero-copy posting: allocOut() a view, fill it in place, addAllocated()', async () => {
    const { session, drv, fe } = await rig();
    const q = session.queues[0] as FrontendQueue;
    const view = q.allocOut(5)!;
    expect(view.buffer).to.equal(fe.window); // a view of the shared memory itself
    view.set(Buffer.from('hello'));
    expect(q.addAllocated(view, 8, 'z')).to.equal(true);
    q.kick();
    await until(() => drv.used.length === 1, 'echo');
    expect(drv.used[0].data.toString()).to.equal('hello');
    // The view was freed with the request: posting it again is refused.
    expect(() => q.addAllocated(view, 8, 'again')).to.throw(ArgumentError);
    expect(() => q.addAllocated(new Uint8Array(5), 8, 'foreign')).to.throw(ArgumentError);
    const spare = q.allocOut(5)!;
    q.freeOut(spare);
    expect(() => q.freeOut(spare)).to.throw(ArgumentError);
  });

  it('DEVICE_NEEDS_RESET with a config event (the BE found a ring violation) → reset and re-probe', async () => {
    const { session, drv, fe, backend, frontend } = await rig();
    const errors: Error[] = [];
    frontend.on('error', (e: Error) => errors.push(e));
    const q = session.queues[0] as FrontendQueue;
    q.add(Buffer.from('bad'), 4, 'bad');
    // Corrupt descriptor 0 (as a faulty FE memory would) before publishing: address out of range.
    new DataView(fe.window).setUint32(q.rings.desc + 4, 0x7fff, true);
    q.kick();
    await until(() => drv.sessions.length === 2, 're-probe');
    expect(errors.map((e) => (e as TransportError).code)).to.deep.equal(['VSHM_ERR_NEEDS_RESET']);
    expect(drv.failed.map((f) => f.token)).to.deep.equal(['bad']);
    expect(backend.status & 0x40).to.equal(0); // the reset cleared it
    const q2 = drv.sessions[1].queues[0];
    q2.add(Buffer.from('good'), 4, 'good');
    q2.kick();
    await until(() => drv.used.length === 1, 'echo after reset');
  });
});
