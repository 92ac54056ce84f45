/**
 * The real VirtioFrontend against the real VirtioBackend on a loopback pair: data both ways,
 * recovery after the driver resets or leaves (§4.10, §8 item 33), in-flight requests failing when
 * the back-end goes (§8 item 35), and the vector choice seen from a real driver (§8 item 29).
 */
import { expect } from 'chai';
import { createLoopbackPair, type LoopbackOptions } from '../../src/testing/loopback.js';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import { RingError } from '../../src/errors.js';
import { VirtioBackend } from '../../src/virtio/backend.js';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import type { ConfigReader } from '../../src/virtio/device-api.js';
import { HDR_QUEUE_DEVICE_VECTOR, HDR_QUEUE_SEL } from '../../src/virtio/header.js';
import { echoOps } from '../fixtures/backend-devices.js';
import { EchoDriver } from '../fixtures/echo-driver.js';
import { until } from '../fixtures/until.js';

describe('VirtioBackend with the real VirtioFrontend (loopback)', () => {
  let be: IvshmemDevice;
  let feDev: IvshmemDevice;
  let backend: VirtioBackend;
  let frontend: VirtioFrontend | null;

  async function pair<D extends EchoDriver = EchoDriver>(
    opts: LoopbackOptions = {},
    ops = echoOps(),
    drv: D = new EchoDriver() as D,
  ): Promise<{ drv: D; fe: VirtioFrontend }> {
    [be, feDev] = createLoopbackPair({ protocol: 0x8003, ...opts });
    backend = new VirtioBackend(be, ops);
    backend.start();
    const fe = new VirtioFrontend(feDev, drv, { readyPollMs: 5 });
    frontend = fe;
    await fe.start();
    return { drv, fe };
  }

  afterEach(async () => {
    await frontend?.close();
    frontend = null;
    await backend.close();
    be.close();
    feDev.close();
  });

  it('echoes data through both engines', async () => {
    const { drv } = await pair();
    for (let i = 0; i < 20; i++) {
      const msg = Buffer.from(`message ${i} `.repeat(i + 1));
      expect((await drv.echo(msg)).toString()).to.equal(msg.toString());
    }
    expect(backend.negotiatedFeatures).to.equal((0x13n << 32n) | 1n); // VERSION_1, ACCESS_PLATFORM, ORDER_PLATFORM, SIZE
  });

  it('serves a new front-end after the first one closed (§8 item 33)', async () => {
    const { fe } = await pair();
    await fe.close();
    await until(() => backend.phase === 'wait-fe-ready', 're-initialised BE');
    const drv2 = new EchoDriver();
    const fe2 = new VirtioFrontend(feDev, drv2, { readyPollMs: 5 });
    frontend = fe2;
    await fe2.start();
    expect((await drv2.echo(Buffer.from('again'))).toString()).to.equal('again');
  });

  it('fails in-flight requests on the front-end when the back-end goes (§8 item 35)', async () => {
    const ops = echoOps();
    let popped = 0;
    ops.activate = (s) => {
      // A device that takes requests and never completes them.
      s.queues[0]!.onAvailable = () => {
        while (s.queues[0]!.pop() !== null) popped++;
      };
    };
    const { drv } = await pair({}, ops);
    const p = drv.echo(Buffer.from('lost')).then(
      () => 'completed',
      (e: Error) => e,
    );
    await until(() => popped === 1, 'device took the request');
    await backend.close();
    const r = await p;
    expect(r).to.be.instanceOf(Error);
    await until(() => drv.removed.length > 0, 'remove()');
  });

  it('with 3 vectors the FE sees device vector 2 for queue 1 (§8 item 29)', async () => {
    await pair({ vectors: 3 });
    const dv = new DataView(feDev.window);
    await until(() => dv.getUint32(HDR_QUEUE_SEL, true) === 1, 'FE selected queue 1 last');
    expect(dv.getUint16(HDR_QUEUE_DEVICE_VECTOR, true)).to.equal(2);
  });

  it("the driver's queueCount reads the device's config (§4.8) before the queues are set up", async () => {
    const ops = echoOps();
    ops.queueCount = () => 5;
    ops.initConfig = (c) => c.write(4, 4, 5); // max_nr_ports-like field
    class CountingDriver extends EchoDriver {
      seen: number[] = [];
      reader: ConfigReader | null = null;
      override queueCount(_features: bigint, config: ConfigReader): number {
        this.reader = config;
        const n = config.read(4, 4);
        this.seen.push(n);
        return n;
      }
    }
    const { drv } = await pair({ vectors: 8 }, ops, new CountingDriver());
    expect(drv.seen).to.deep.equal([5]);
    expect(drv.sessions[0].queues.length).to.equal(5);
    expect(drv.reader?.size).to.equal(12);
    // The reader is valid only during the call.
    expect(() => drv.reader?.read(4, 4)).to.throw().with.property('code', 'VSHM_ERR_SESSION_DEAD');
    expect((await drv.echo(Buffer.from('five queues'))).toString()).to.equal('five queues');
  });
  it('a DEVICE_NEEDS_RESET raised while the FE set up its queues (interrupts still off) ends that session once it is live (§6.3, §4.9)', async () => {
    const drv = new EchoDriver();
    [be, feDev] = createLoopbackPair({ protocol: 0x8003 });
    backend = new VirtioBackend(be, echoOps());
    // The BE refuses the first queue enable (§6.1 as it sees it): DEVICE_NEEDS_RESET and a config
    // event, whose doorbell the FE discards — its interrupts are off until its queues are set up.
    const queues = (backend as unknown as { queues: { enable(sel: number, f: bigint): void } }).queues;
    const enable = queues.enable.bind(queues);
    let enables = 0;
    queues.enable = (sel, f) => {
      if (++enables === 1) throw new RingError('VSHM_ERR_RING_BOUNDS', '6.1', 'refused by the test');
      enable(sel, f);
    };
    backend.start();
    const fe = new VirtioFrontend(feDev, drv, { readyPollMs: 5 });
    frontend = fe;
    const errors: Error[] = [];
    fe.on('error', (e: Error) => errors.push(e));
    await fe.start();
    // Without a vector-0 rescan on going live the FE would sit on the dead session forever.
    await until(() => drv.sessions.length >= 2 && fe.session !== null, 'recovery after DEVICE_NEEDS_RESET');
    expect((errors[0] as { code?: string }).code).to.equal('VSHM_ERR_NEEDS_RESET');
    expect(drv.removed).to.have.length(1);
    expect((await drv.echo(Buffer.from('after'))).toString()).to.equal('after');
  });

  it('a back-end replaced right after a broken session was reset: the FE goes RESET for the new one, which waits for exactly that (§4.10)', async () => {
    // The FE stays READY through a broken session (it resets the device, not its State). A BE
    // that leaves READY before the next round is a failure like any other: without the RESET the
    // new BE waits for our RESET (BE step 2) while we wait for its READY (FE step 2), for ever.
    const drv = new EchoDriver();
    [be, feDev] = createLoopbackPair({ protocol: 0x8003 });
    const ops = echoOps();
    const activate = ops.activate.bind(ops);
    ops.activate = (sess) => {
      activate(sess);
      const q = sess.queues[0]!;
      q.onAvailable = () => {
        if (q.pop() !== null) throw new Error('device bug');
      };
    };
    backend = new VirtioBackend(be, ops);
    backend.start();
    const fe = new VirtioFrontend(feDev, drv, { readyPollMs: 5 });
    frontend = fe;
    let swapped = false;
    fe.on('error', (e: Error) => {
      // Emitted once the broken session's device reset completed, before the next round.
      if ((e as { code?: string }).code !== 'VSHM_ERR_NEEDS_RESET' || swapped) return;
      swapped = true;
      void backend.close();
      backend = new VirtioBackend(be, echoOps());
      backend.start();
    });
    await fe.start();
    await drv.echo(Buffer.from('breaks the device')).catch(() => undefined);
    await until(() => swapped, 'the broken session');
    await until(() => drv.sessions.length >= 2 && fe.session !== null, 'a session with the new back-end');
    expect(backend.phase).to.equal('serving');
    expect((await drv.echo(Buffer.from('after'))).toString()).to.equal('after');
  });
});
