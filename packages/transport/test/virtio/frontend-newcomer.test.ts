/**
 * A new back-end on a departed one's id (always 0: the role goes by class code), before the
 * front-end's socket watcher has read that PEER_GONE and the newcomer's EVENT_FDs.
 *
 * The mirror of backend-newcomer.test.ts. When a user restarts the back-end while the front-end
 * stays up, the server zeroes entry 0 and queues PEER_GONE(0) (§1.6), then the newcomer's
 * EVENT_FDs(0) (§1.3). Until the front-end reads those it still holds the departed back-end's
 * eventfds, and entry 0 — now the newcomer's — may read READY: a doorbell then reaches nobody.
 *
 * Here the server's messages are queued on a hand-driven front-end device and reach it only when
 * the test says so (its "socket watcher") or when the front-end asks for them (receivePending),
 * and its interrupts can be held (a process that does not get the CPU): each interleaving is
 * forced, not hoped for. Both back-ends are real `VirtioBackend`s.
 */
import { expect } from 'chai';
import { VirtioBackend } from '../../src/virtio/backend.js';
import { VirtioFrontend } from '../../src/virtio/frontend.js';
import { echoOps } from '../fixtures/backend-devices.js';
import { FixedPartnerDevice, ServerFedDevice, newWire } from '../fixtures/newcomer-devices.js';
import { EchoDriver } from '../fixtures/echo-driver.js';
import { until } from '../fixtures/until.js';

/** A back-end's device (id 0): rings the front-end's eventfds, which it got in its burst. */
type BackDevice = FixedPartnerDevice;
/** The front-end's device (id 1): peer 0's eventfds are whichever back-end it was last told of. */
type FrontDevice = ServerFedDevice;

/** One echo of `text` through the driver's live session. */
async function echo(driver: EchoDriver, text: string): Promise<string> {
  return (await driver.echo(Buffer.from(text))).toString();
}

interface BackEnd {
  dev: BackDevice;
  backend: VirtioBackend;
  ops: ReturnType<typeof echoOps>;
}

/** Server side of the rig, plus the front-end under test and what it reported. */
class Rig {
  readonly wire = newWire();
  readonly front: FrontDevice = new ServerFedDevice(this.wire, 1, 0x8003, { stateEvents: true });
  readonly driver = new EchoDriver();
  readonly frontend: VirtioFrontend;
  readonly backs: BackEnd[] = [];
  /** 'lost', 'error' and 'ready' events of the front-end, in order. */
  readonly events: string[] = [];

  constructor() {
    // A short hold, so that a run without the cure fails on the hang, not on the hold.
    this.frontend = new VirtioFrontend(this.front, this.driver, { resetHoldMs: 200 });
    this.frontend.on('lost', (e: Error) => this.events.push(`lost: ${e.message}`));
    this.frontend.on('error', (e: Error) => this.events.push(`error: ${e.message}`));
    this.frontend.on('ready', () => this.events.push('ready'));
  }

  /**
   * A back-end connects. The first one precedes the front-end (it is in the front-end's burst);
   * a later one's EVENT_FDs are queued for the front-end's socket. Its VirtioBackend starts at once.
   */
  startBackend(): BackEnd {
    const dev: BackDevice = new FixedPartnerDevice(this.wire, 0, 0xc003, this.front, { stateEvents: true });
    if (this.backs.length === 0) this.front.partner = dev;
    else this.front.queued.push({ arrived: dev });
    const ops = echoOps();
    const backend = new VirtioBackend(dev, ops);
    const b = { dev, backend, ops };
    this.backs.push(b);
    backend.start();
    return b;
  }

  /**
   * A back-end process ends: `orderly` as the CLIs do on SIGTERM (State := RESET, which rings the
   * front-end's vector 0, then the process exits), else killed (nothing rung). The server has
   * not noticed yet: see serverDrops().
   */
  async endBackend(b: BackEnd, orderly: boolean): Promise<void> {
    if (orderly) {
      await b.backend.close();
      b.dev.close();
    } else {
      b.dev.closed = true;
    }
  }

  /** The server notices the hang-up: entry 0 := 0, PEER_GONE queued for the front-end (§1.6). */
  serverDrops(): void {
    Atomics.store(this.wire.table, 0, 0);
    this.front.queued.push({ gone: true });
  }

  /** What the front-end and the back-ends are at, for failure messages. */
  where(): string {
    const backs = this.backs.map((b) => b.backend.phase).join(', ');
    return `front-end ${this.frontend.phase}, events [${this.events.join('; ')}], back-ends [${backs}], unread messages ${this.front.queued.length}`;
  }

  /** until(), naming what the rig was at when it gave up. */
  async until(cond: () => boolean, what: string): Promise<void> {
    await until(cond, what).catch((e: Error) => {
      throw new Error(`${e.message} (${this.where()})`);
    });
  }

  /** The number of 'ready' events so far. */
  get readies(): number {
    return this.events.filter((e) => e === 'ready').length;
  }

  async close(): Promise<void> {
    await this.frontend.close();
    for (const b of this.backs) await b.backend.close();
  }
}

describe("VirtioFrontend: a new back-end on a departed one's id, before PEER_GONE is read", () => {
  const rigs: Rig[] = [];
  afterEach(async () => {
    for (const r of rigs.splice(0)) await r.close();
  });

  /** A front-end live on a first back-end, one echo done. */
  async function firstSession(): Promise<{ rig: Rig; first: BackEnd }> {
    const rig = new Rig();
    rigs.push(rig);
    const first = rig.startBackend();
    await rig.frontend.start();
    expect(await echo(rig.driver, 'one')).to.equal('one');
    return { rig, first };
  }

  /** Ready again on `b`, the new back-end, which served the whole set-up: an echo goes through. */
  async function servedBy(rig: Rig, b: BackEnd, text: string): Promise<void> {
    await rig.until(() => rig.readies === 2, 'the front-end ready on the new back-end');
    expect(await echo(rig.driver, text)).to.equal(text);
    expect(b.ops.sessions.length).to.equal(1);
    expect(b.backend.phase).to.equal('serving');
  }

  const LOST = 'lost: back-end left READY';

  it("the new back-end's READY reaches the front-end before its socket watcher ran: it takes the messages first and sets up the newcomer once", async () => {
    const { rig, first } = await firstSession();
    await rig.endBackend(first, true);
    await rig.until(() => rig.frontend.phase === 'waiting', 'the front-end waiting after the RESET');
    rig.serverDrops();
    const second = rig.startBackend();
    // Its READY and vector 0 come on the front-end's own, valid eventfd; PEER_GONE and the
    // newcomer's EVENT_FDs are queued, unread.
    await rig.until(() => rig.frontend.phase !== 'waiting', 'the front-end leaving its wait');
    const unread = rig.front.queued.length;
    rig.front.readSocket(); // the watcher's turn
    await servedBy(rig, second, 'two');
    // Nothing but the one departure was reported: no second 'lost', no 'error', no retry.
    expect(rig.events).to.deep.equal(['ready', LOST, 'ready']);
    expect(unread, 'messages the front-end had not read when it left its wait').to.equal(0);
    expect(rig.driver.sessions.length).to.equal(2);
    expect(rig.driver.removed.length).to.equal(1);
  });

  it('the front-end had not run since the old back-end left: its RESET reaches the new back-end, which goes READY', async () => {
    const { rig, first } = await firstSession();
    rig.front.hold = true; // the front-end does not get the CPU …
    await rig.endBackend(first, true); // … when the old back-end resets and leaves,
    rig.serverDrops();
    const second = rig.startBackend(); // … nor when the new one starts and finds it READY
    await rig.until(() => second.backend.phase === 'wait-fe-reset', 'the new back-end waiting for the front-end to leave READY');
    // The front-end runs: the RESET on vector 0 first, its socket watcher only after recovery.
    rig.front.release();
    await rig.until(() => rig.events.length === 2, "the front-end's 'lost'");
    rig.front.readSocket();
    await servedBy(rig, second, 'two');
    expect(rig.events).to.deep.equal(['ready', LOST, 'ready']);
  });

  it('the new back-end connects and finds the front-end READY just after it read its socket and before it stored RESET: it is rung all the same', async () => {
    const { rig, first } = await firstSession();
    let second: BackEnd | null = null;
    // The front-end is preempted right after its read of the socket found nothing: meanwhile
    // the server drops the old back-end and the new one starts, finding the front-end READY.
    rig.front.afterReceive = () => {
      rig.serverDrops();
      second = rig.startBackend();
    };
    await rig.endBackend(first, true);
    await rig.until(() => second !== null, 'the new back-end started');
    const b = second as unknown as BackEnd;
    await rig.until(() => rig.frontend.phase === 'waiting' || b.backend.phase !== 'wait-fe-reset', 'the front-end waiting');
    rig.front.readSocket();
    await servedBy(rig, b, 'two');
    expect(rig.events).to.deep.equal(['ready', LOST, 'ready']);
  });

  it('a killed back-end (no RESET rung): the departure and the arrival are read together, and the newcomer serves', async () => {
    const { rig, first } = await firstSession();
    await rig.endBackend(first, false);
    rig.serverDrops();
    const second = rig.startBackend();
    await rig.until(() => second.backend.phase === 'wait-fe-reset', 'the new back-end waiting for the front-end to leave READY');
    expect(rig.frontend.phase).to.equal('live'); // nothing told it yet
    rig.front.readSocket();
    await servedBy(rig, second, 'two');
    expect(rig.events).to.deep.equal(['ready', LOST, 'ready']);
  });

  it('the departure was read, the arrival not yet: the front-end waits for the newcomer, then sets it up', async () => {
    const { rig, first } = await firstSession();
    await rig.endBackend(first, true);
    rig.serverDrops();
    rig.front.readSocket(); // PEER_GONE only
    await rig.until(() => rig.frontend.phase === 'waiting', 'the front-end waiting after the departure');
    const second = rig.startBackend();
    await rig.until(() => second.backend.phase === 'wait-fe-ready', 'the new back-end READY');
    rig.front.readSocket(); // the arrival
    await servedBy(rig, second, 'two');
    expect(rig.events).to.deep.equal(['ready', LOST, 'ready']);
  });
});
