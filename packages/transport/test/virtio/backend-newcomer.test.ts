/**
 * A new front-end on a departed front-end's id, before the back-end's socket watcher has run.
 *
 * The server drops a peer (§1.6: state entry 0, PEER_GONE) and gives its id to the next one
 * (§1.3: EVENT_FDs to the others, then the newcomer's burst). Until the back-end reads those
 * messages it still holds the departed peer's eventfds, and the shared state entry — now the
 * newcomer's — reads READY as before: the newcomer looks like the old front-end. A back-end that
 * served it then (a spin after a wake-up, or an eventfd callback that ran before the socket's)
 * rang its completions on the dead eventfds, and tore the newcomer's session down when PEER_GONE
 * came: the guest waited for ever (the rng Linux-guest test's CI timeout, docs/decisions.md).
 *
 * Here the server's messages are queued on a hand-driven device and reach the back-end only when
 * the test says so (its "socket watcher") or when the back-end asks for them (receivePending),
 * and the back-end's interrupts can be held: the interleavings are forced, not hoped for.
 */
import { expect } from 'chai';
import { DeviceStatus } from 'virtio-spec-types';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import { VirtioBackend } from '../../src/virtio/backend.js';
import { echoOps } from '../fixtures/backend-devices.js';
import { LinuxLikeFrontend, type LinuxQueue } from '../fixtures/linux-like-frontend.js';
import { FixedPartnerDevice, ServerFedDevice, newWire } from '../fixtures/newcomer-devices.js';
import { until } from '../fixtures/until.js';

/** A front-end's device (id 1): rings the back-end's eventfds, which it got in its burst. */
type FrontDevice = FixedPartnerDevice;
/** The back-end's device (id 0): peer 1's eventfds are whichever front-end it was last told of. */
type BackDevice = ServerFedDevice;

/** Server side of the rig: ids, the state table, the messages it queues for the back-end. */
class Rig {
  readonly wire = newWire();
  readonly back: BackDevice = new ServerFedDevice(this.wire, 0, 0xc003);
  readonly ops = echoOps();
  readonly backend = new VirtioBackend(this.back, this.ops);

  /** A front-end connects: EVENT_FDs queued for the back-end, then its own device. */
  connect(): FrontDevice {
    const fe: FrontDevice = new FixedPartnerDevice(this.wire, 1, 0x8003, this.back);
    this.back.queued.push({ arrived: fe });
    return fe;
  }

  /** A front-end's socket closes: entry 0, PEER_GONE queued (§1.6). */
  drop(fe: FrontDevice): void {
    fe.close();
    Atomics.store(this.wire.table, 1, 0);
    this.back.queued.push({ gone: true });
  }
}

/** A Linux-like guest with one echo queue in use (the second is set up, never used). */
class Guest {
  readonly fe: LinuxLikeFrontend;
  readonly got: string[] = [];

  constructor(dev: IvshmemDevice) {
    this.fe = new LinuxLikeFrontend(dev);
  }

  async start(): Promise<void> {
    this.fe.probe();
    await this.fe.negotiate(0n);
    const take = (q: LinuxQueue): void => {
      for (let c = q.getBuf(); c !== null; c = q.getBuf()) this.got.push(Buffer.from(c.data).toString());
    };
    await this.fe.findVqs([
      { name: 'q0', callback: take },
      { name: 'q1', callback: take },
    ]);
    await this.fe.driverOk();
  }

  /** One request; resolves with its echo, or fails naming what the guest saw. */
  async echo(text: string): Promise<void> {
    const before = this.got.length;
    const q = this.fe.queues[0];
    q.add([Buffer.from(text)], [text.length], text);
    q.kick();
    await until(() => this.got.length > before, `the echo of '${text}'`, 2000).catch((e: Error) => {
      throw new Error(`${e.message} (published: ${String(q.vring.moreUsed())}, status 0x${this.fe.status().toString(16)})`);
    });
    expect(this.got[before]).to.equal(text);
  }
}

describe('VirtioBackend: a new front-end on a departed one\'s id, before PEER_GONE is read', () => {
  const rigs: Rig[] = [];
  afterEach(async () => {
    for (const r of rigs.splice(0)) await r.backend.close();
  });

  /** A back-end serving a first guest that then powers off (reset, disconnect). */
  async function firstGuestGone(): Promise<{ rig: Rig; first: FrontDevice }> {
    const rig = new Rig();
    rigs.push(rig);
    rig.backend.start();
    const first = rig.connect();
    rig.back.readSocket();
    const g = new Guest(first);
    await g.start();
    await g.echo('one');
    await g.fe.write(0x44, 4, 0n); // power-off: status 0, completion awaited …
    expect(await g.fe.sync()).to.equal(true);
    return { rig, first };
  }

  it('the back-end had not run since the old guest left: the newcomer is set up afresh and its completions reach it', async () => {
    const { rig, first } = await firstGuestGone();
    // … then the disconnect, while the back-end does not get the CPU; the next guest connects
    // and probes on the back-end's READY, which it has not left.
    rig.back.hold = true;
    rig.drop(first);
    const second = rig.connect();
    const g2 = new Guest(second);
    g2.fe.probe();
    // The back-end runs again; its socket watcher only after the newcomer set itself up.
    rig.back.release();
    await g2.start().catch((e: Error) => {
      throw new Error(`the second guest's set-up: ${e.message}`);
    });
    await g2.echo('two');
    rig.back.readSocket(); // nothing left to read: the back-end asked for it in time
    await g2.echo('three');
    expect(rig.back.asked).to.be.greaterThan(0);
    expect(g2.fe.status() & DeviceStatus.DRIVER_OK).to.equal(DeviceStatus.DRIVER_OK);
    expect(g2.fe.log).to.deep.equal([]);
    expect(rig.back.state).to.equal(1); // never left READY under the newcomer
    expect(rig.ops.sessions.length).to.equal(2);
  });

  it('the departure was read, the arrival not yet: the newcomer\'s set-up is served, not discarded', async () => {
    const { rig, first } = await firstGuestGone();
    rig.drop(first);
    rig.back.readSocket(); // PEER_GONE: header re-initialised, READY again, waiting
    await until(() => rig.backend.phase === 'wait-fe-ready', 'the back-end waiting for a front-end');
    const second = rig.connect(); // its EVENT_FDs queued, not read: it reads as absent
    const g2 = new Guest(second);
    await g2.start().catch((e: Error) => {
      throw new Error(`the second guest's set-up: ${e.message}`);
    });
    await g2.echo('two');
    expect(g2.fe.log).to.deep.equal([]);
    expect(rig.ops.sessions.length).to.equal(2);
  });

  it('a departure read in time: the header is set up afresh without leaving READY, and the next guest is served', async () => {
    const { rig, first } = await firstGuestGone();
    const states: number[] = [];
    rig.backend.on('phase', () => states.push(rig.back.state));
    const revision = new DataView(rig.wire.window);
    revision.setUint32(0, 0x99, true); // junk in the header: must be rewritten
    rig.drop(first);
    rig.back.readSocket();
    await until(() => rig.backend.phase === 'wait-fe-ready', 'the back-end waiting for a front-end');
    // No one is left to see a RESET, and a guest probing meanwhile would take it for a failure.
    expect(states).to.deep.equal([1]);
    expect(revision.getUint32(0, true)).to.equal(1);
    expect(rig.ops.ends).to.deep.equal(['driver-reset']); // the power-off; nothing left to end
    const g2 = new Guest(rig.connect());
    rig.back.readSocket();
    await g2.start();
    await g2.echo('two');
  });

  it('a front-end that leaves READY but stays connected still sees RESET first (§4.10 step 1)', async () => {
    const { rig, first } = await firstGuestGone();
    const states: number[] = [];
    rig.backend.on('phase', () => states.push(rig.back.state));
    first.setState(0); // e.g. a Linux unbind: the device stays, a new probe follows
    await until(() => rig.backend.phase === 'wait-fe-ready', 'the back-end waiting for a front-end');
    expect(states).to.deep.equal([0, 1]); // wait-fe-reset with RESET, wait-fe-ready with READY
    const g = new Guest(first);
    await g.start();
    await g.echo('two');
  });
});
