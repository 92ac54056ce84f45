/**
 * The driver's MULTIPORT control handling in the orders and states a device may produce beyond the
 * plain handshake (spec §7.2; VIRTIO 1.2 §5.3.6.2): ports the application closed, sessions that
 * end and start again, ports the device removes and adds again.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import {
  CONSOLE_BAD_ID, ConsoleControlEvent as E, ConsoleFeature, decodeConsoleControl, encodeConsoleControl, encodeConsolePortName, encodeConsoleResize, featureBit,
} from 'virtio-spec-types';
import { ConsoleDriver, type ConsolePort } from '../src/index.js';
import { CONTROL_RX_BUFFER } from '../src/control-queues.js';
import { FakeSession, type FakeQueue, microtasks } from './fixtures/fake-session.js';
import { configWith } from './fixtures/config-reader.js';

const MULTIPORT = featureBit(ConsoleFeature.MULTIPORT);

/** Control messages the driver posted on the control transmitq: [id, event, value]. */
function sent(q: FakeQueue): Array<[number, number, number]> {
  return q.history.map((p) => {
    const m = decodeConsoleControl(p.out as Uint8Array);
    return [m.id, m.event, m.value];
  });
}

/** A MULTIPORT session with `ports` ports, probed by `d`; the control transmitq kept flowing. */
function session(d: ConsoleDriver, ports: number): FakeSession {
  const s = new FakeSession(MULTIPORT, d.queueCount(MULTIPORT, configWith(ports)));
  s.config.setUint32(4, ports, true);
  d.probe(s);
  return s;
}

/** The device completes every control message the driver posted (it uses them all). */
function drainControl(s: FakeSession): void {
  while (s.queues[3].inFlight > 0) s.queues[3].complete();
}

/**
 * Session 1 names port 1 `org.test.a`; the application writes to it while the back-end is away
 * (`writeDone` settles with the write's error); session 2 is probed.
 */
async function held(graceMs?: number): Promise<{ d: ConsoleDriver; p1: ConsolePort; s2: FakeSession; writeDone: Promise<Error | null | undefined> }> {
  const d = new ConsoleDriver(graceMs === undefined ? { maxPorts: 2 } : { maxPorts: 2, heldPortGraceMs: graceMs });
  const s1 = session(d, 2);
  s1.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
  s1.queues[2].complete(encodeConsolePortName(1, 'org.test.a'));
  const p1 = d.port(1) as ConsolePort;
  s1.failAll();
  d.remove(new Error('back-end gone'));
  p1.on('error', () => {});
  const writeDone = new Promise<Error | null | undefined>((resolve) => p1.write('meant for org.test.a', resolve));
  await microtasks();
  const s2 = session(d, 2);
  return { d, p1, s2, writeDone };
}

describe('ConsoleDriver MULTIPORT control: closed ports, recovery, removal', () => {
  it('does not report a port the application closed as open when a new session adds it again', async () => {
    const d = new ConsoleDriver({ maxPorts: 2 });
    const s1 = session(d, 2);
    s1.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    const p1 = d.port(1) as ConsolePort;
    p1.destroy();
    await once(p1, 'close');
    drainControl(s1);
    expect(sent(s1.queues[3]).at(-1)).to.deep.equal([1, E.PORT_OPEN, 0]);

    // The back-end restarts (§4.10): the new device adds port 1 again.
    s1.failAll();
    d.remove(new Error('back-end gone'));
    const s2 = session(d, 2);
    s2.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    await microtasks();
    drainControl(s2);
    const msgs = sent(s2.queues[3]).filter(([id]) => id === 1);
    expect(msgs).to.deep.include([1, E.PORT_READY, 1]); // the port exists (Linux answers so too)
    // …but nobody reads it: it must not be opened, or the device delivers input into the void.
    expect(msgs).to.not.deep.include([1, E.PORT_OPEN, 1]);
    // And the device repeating DEVICE_ADD must not open it either.
    s2.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    await microtasks();
    drainControl(s2);
    expect(sent(s2.queues[3]).filter(([id]) => id === 1)).to.not.deep.include([1, E.PORT_OPEN, 1]);
    // CONSOLE_PORT is the exception: VIRTIO 1.2 §5.3.6.2.2 makes PORT_OPEN(1) the required answer.
    s2.queues[2].complete(encodeConsoleControl(1, E.CONSOLE_PORT, 1));
    await microtasks();
    drainControl(s2);
    expect(sent(s2.queues[3]).at(-1)).to.deep.equal([1, E.PORT_OPEN, 1]);
  });

  it("forgets the host-side state the old device reported once its session ends (a new device has said nothing yet)", async () => {
    const d = new ConsoleDriver({ maxPorts: 2 });
    const s1 = session(d, 2);
    s1.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    s1.queues[2].complete(encodeConsoleControl(1, E.PORT_OPEN, 1));
    const p1 = d.port(1) as ConsolePort;
    expect(p1.hostOpen).to.equal(true);
    s1.failAll();
    d.remove(new Error('back-end gone'));
    const s2 = session(d, 2);
    s2.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    // The new back-end's host side of port 1 is closed: it sends no PORT_OPEN (as ours, and QEMU).
    expect(p1.hostOpen, 'host side state before the new device said anything').to.equal(null);
    const opened = once(p1, 'host-open');
    s2.queues[2].complete(encodeConsoleControl(1, E.PORT_OPEN, 1));
    await opened;
    expect(p1.hostOpen).to.equal(true);
  });

  describe('a back-end that comes back with other ports under the same ids', () => {
    /** held(), and the new device adds port 1 again (its name is still to come). */
    async function heldWrite(): Promise<{ d: ConsoleDriver; p1: ConsolePort; s2: FakeSession }> {
      const { d, p1, s2 } = await held();
      s2.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
      await microtasks();
      return { d, p1, s2 };
    }

    it('holds what the port kept back, and its PORT_OPEN, until PORT_NAME says it is the same port', async () => {
      const { d, p1, s2 } = await heldWrite();
      drainControl(s2);
      expect(s2.queues[5].history, 'sent before the name was known').to.have.length(0);
      expect(sent(s2.queues[3])).to.deep.equal([[CONSOLE_BAD_ID, E.DEVICE_READY, 1], [1, E.PORT_READY, 1]]);
      s2.queues[2].complete(encodeConsolePortName(1, 'org.test.a'));
      await microtasks();
      drainControl(s2);
      expect(sent(s2.queues[3]).at(-1)).to.deep.equal([1, E.PORT_OPEN, 1]);
      expect(s2.queues[5].sentBytes().toString()).to.equal('meant for org.test.a');
      expect(d.port(1)).to.equal(p1);
    });

    it('a port 1 with another name is another port: the old stream ends, a new one is announced, nothing crosses', async () => {
      const { d, p1, s2 } = await heldWrite();
      const failed = once(p1, 'error');
      const removed = once(p1, 'removed');
      const announced = once(d, 'port');
      s2.queues[2].complete(encodeConsolePortName(1, 'org.test.b'));
      expect(d.port(1), 'port 1 after PORT_NAME org.test.b').to.not.equal(p1); // handled synchronously
      expect(p1.portName).to.equal('org.test.a');
      await removed;
      expect(((await failed)[0] as { code: string }).code).to.equal('VSHM_ERR_PORT_REMOVED');
      const [p1b] = (await announced) as [ConsolePort];
      expect(p1b).to.not.equal(p1);
      expect(p1b.portName).to.equal('org.test.b');
      expect(d.port(1)).to.equal(p1b);
      expect(await d.waitForPort('org.test.b')).to.equal(p1b);
      await microtasks();
      drainControl(s2);
      expect(sent(s2.queues[3]).at(-1)).to.deep.equal([1, E.PORT_OPEN, 1]);
      expect(s2.queues[5].sentBytes().toString(), 'org.test.a bytes on org.test.b').to.equal('');
      p1b.write('for b');
      await microtasks();
      expect(s2.queues[5].sentBytes().toString()).to.equal('for b');
    });
  });

  describe('a held port the new device never confirms (heldPortGraceMs)', () => {
    it('re-added but never named: after the grace from its PORT_READY the stream ends and the waiting write fails', async () => {
      const { d, p1, s2, writeDone } = await held(30);
      s2.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
      await once(p1, 'removed');
      expect(((await writeDone) as { code?: string } | null)?.code).to.equal('VSHM_ERR_PORT_REMOVED');
      expect(d.port(1)).to.equal(undefined);
      expect(s2.queues[5].history, 'nothing of the old port went out').to.have.length(0);
      // The id is free for what the device does next: a later PORT_NAME makes a new port.
      const announced = once(d, 'port');
      s2.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
      expect(((await announced)[0] as ConsolePort).id).to.equal(1);
    });

    it('never re-added by the new device: after the grace from its start the stream ends and the waiting write fails', async () => {
      const { d, p1, writeDone } = await held(30);
      await once(p1, 'removed');
      expect(((await writeDone) as { code?: string } | null)?.code).to.equal('VSHM_ERR_PORT_REMOVED');
      expect(d.port(1)).to.equal(undefined);
    });

    it('named again in time: kept, and its bytes go out; no later give-up', async () => {
      const { d, p1, s2, writeDone } = await held(20);
      s2.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
      s2.queues[2].complete(encodeConsolePortName(1, 'org.test.a'));
      await microtasks();
      expect(await writeDone).to.equal(null);
      expect(s2.queues[5].sentBytes().toString()).to.equal('meant for org.test.a');
      let removed = false;
      p1.on('removed', () => (removed = true));
      // Past the grace (a timer of the product, not a sleep of the test: nothing may happen then).
      await new Promise((resolve) => setTimeout(resolve, 60));
      expect(removed).to.equal(false);
      expect(d.port(1)).to.equal(p1);
    });

    it('the session ends before the grace: nothing is given up until the next device had its grace', async () => {
      const { d, p1, s2 } = await held(30);
      s2.failAll();
      d.remove(new Error('gone again'));
      let removed = false;
      p1.on('removed', () => (removed = true));
      await new Promise((resolve) => setTimeout(resolve, 60));
      expect(removed, 'given up while no device was there to name it').to.equal(false);
      session(d, 2); // a third device, which does not add it either
      await once(p1, 'removed');
    });
  });

  describe('an unnamed port of an earlier session: the same grace, by id (heldPortGraceMs)', () => {
    /**
     * Session 1 adds ports 0 and 1 without names; the application writes to `id` while the
     * back-end is away; session 2 (`multiport` or not) is probed.
     */
    async function heldUnnamed(id: number, graceMs: number, multiport = true): Promise<{ d: ConsoleDriver; p: ConsolePort; s2: FakeSession; writeDone: Promise<Error | null | undefined> }> {
      const d = new ConsoleDriver({ maxPorts: 2, heldPortGraceMs: graceMs });
      const s1 = session(d, 2);
      s1.queues[2].complete(encodeConsoleControl(0, E.DEVICE_ADD, 1));
      s1.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
      const p = d.port(id) as ConsolePort;
      expect(p.attached).to.equal(true);
      s1.failAll();
      d.remove(new Error('back-end gone'));
      p.on('error', () => {});
      const writeDone = new Promise<Error | null | undefined>((resolve) => p.write(`meant for port ${id}`, resolve));
      await microtasks();
      let s2: FakeSession;
      if (multiport) {
        s2 = session(d, 2);
      } else {
        s2 = new FakeSession(0n, 2);
        d.probe(s2);
      }
      return { d, p, s2, writeDone };
    }

    it('port 1 never added by the new device: after the grace from its start the stream ends and the waiting write fails', async () => {
      const { d, p, writeDone } = await heldUnnamed(1, 30);
      await once(p, 'removed');
      expect(((await writeDone) as { code?: string } | null)?.code).to.equal('VSHM_ERR_PORT_REMOVED');
      expect(d.port(1)).to.equal(undefined);
    });

    it('port 1 added again in time: the same stream by its id, its bytes go out at once; no later give-up', async () => {
      const { d, p, s2, writeDone } = await heldUnnamed(1, 20);
      s2.queues[2].complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
      await microtasks();
      expect(await writeDone).to.equal(null);
      expect(s2.queues[5].sentBytes().toString()).to.equal('meant for port 1');
      let removed = false;
      p.on('removed', () => (removed = true));
      await new Promise((resolve) => setTimeout(resolve, 60)); // past the grace: nothing may happen
      expect(removed).to.equal(false);
      expect(d.port(1)).to.equal(p);
    });

    it('port 0 never added by a new MULTIPORT device: given up like a DEVICE_REMOVE(0); a fresh port 0 takes the id', async () => {
      const { d, p, s2, writeDone } = await heldUnnamed(0, 30);
      await once(p, 'removed');
      expect(((await writeDone) as { code?: string } | null)?.code).to.equal('VSHM_ERR_PORT_REMOVED');
      const fresh = d.port(0) as ConsolePort;
      expect(fresh).to.not.equal(p);
      expect(fresh.attached).to.equal(false);
      // A later DEVICE_ADD(0) attaches and announces the fresh port; none of the old bytes go out.
      const announced = once(d, 'port');
      s2.queues[2].complete(encodeConsoleControl(0, E.DEVICE_ADD, 1));
      expect((await announced)[0]).to.equal(fresh);
      expect(s2.queues[1].sentBytes().toString()).to.equal('');
    });

    it('a new device without MULTIPORT: port 0 is served at once and kept; port 1, which it cannot have, is given up', async () => {
      const { d, p: p1 } = await heldUnnamed(1, 30, false);
      const p0 = d.port(0) as ConsolePort;
      expect(p0.attached).to.equal(true);
      await once(p1, 'removed');
      expect(d.port(1)).to.equal(undefined);
      expect(d.port(0)).to.equal(p0);
    });

    it('a port the first device never added is not held: port 0 before any session waits as long as it takes', async () => {
      const d = new ConsoleDriver({ maxPorts: 2, heldPortGraceMs: 20 });
      const p0 = d.port(0) as ConsolePort;
      session(d, 2); // never adds port 0
      let removed = false;
      p0.on('removed', () => (removed = true));
      await new Promise((resolve) => setTimeout(resolve, 60)); // past the grace: nothing may happen
      expect(removed).to.equal(false);
      expect(d.port(0)).to.equal(p0);
    });
  });

  it('leaves nothing behind over many DEVICE_REMOVE / DEVICE_ADD cycles with data in flight', async () => {
    const d = new ConsoleDriver({ maxPorts: 2 });
    const s = session(d, 2);
    const [crx, rx1, tx1] = [s.queues[2], s.queues[4], s.queues[5]];
    crx.complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    await microtasks();
    const driverListeners = d.eventNames().map((e) => d.listenerCount(e));
    for (let i = 0; i < 300; i++) {
      const p = d.port(1) as ConsolePort;
      p.on('error', () => {}); // the write still waiting fails with the removal
      p.write(`cycle ${i};`);
      await microtasks(); // posted, not yet used: in flight when the port goes
      crx.complete(encodeConsoleControl(1, E.DEVICE_REMOVE, 0));
      crx.complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
      while (tx1.inFlight > 0) tx1.complete(); // the device uses what the old port had posted
      drainControl(s);
      await microtasks();
    }
    expect(d.ports.size).to.equal(2);
    expect(d.eventNames().map((e) => d.listenerCount(e))).to.deep.equal(driverListeners);
    expect((d.port(1) as ConsolePort).listenerCount('completion')).to.equal(1);
    expect(rx1.inFlight, 'receive buffers posted on port 1').to.be.at.most(rx1.size);
    expect(crx.inFlight).to.equal(crx.size);
    expect((d as unknown as { control: { backlog: number } }).control.backlog).to.equal(0);
    // The last incarnation works both ways, and only its own bytes go out.
    const p = d.port(1) as ConsolePort;
    const sentBefore = tx1.history.length;
    p.write('last');
    await microtasks();
    expect(Buffer.concat(tx1.history.slice(sentBefore).map((h) => h.out as Uint8Array)).toString()).to.equal('last');
    const got = once(p, 'data');
    rx1.complete(Buffer.from('in'));
    expect(((await got)[0] as Buffer).toString()).to.equal('in');
  });

  it('DEVICE_REMOVE of port 0 ends its stream as for any port (Linux unplugs it); a fresh port 0 takes its place for a later DEVICE_ADD', async () => {
    const d = new ConsoleDriver({ maxPorts: 2 });
    const s = session(d, 2);
    const [crx, rx0, tx0] = [s.queues[2], s.queues[0], s.queues[1]];
    crx.complete(encodeConsoleControl(0, E.DEVICE_ADD, 1));
    await microtasks();
    const old = d.port(0) as ConsolePort;
    expect(old.attached).to.equal(true);
    old.resume();
    const ended = once(old, 'end');
    const removed = once(old, 'removed');
    crx.complete(encodeConsoleControl(0, E.DEVICE_REMOVE, 0));
    await Promise.all([ended, removed]);
    // Writes on the removed stream fail, as on any removed port.
    const errored = once(old, 'error');
    old.write('x');
    expect(((await errored)[0] as { code?: string }).code).to.equal('VSHM_ERR_PORT_REMOVED');
    // Port 0 still exists for the API (port(0), consolePort): a new stream, not attached.
    const fresh = d.port(0) as ConsolePort;
    expect(fresh).to.not.equal(old);
    expect(fresh.attached).to.equal(false);
    expect(d.consolePort).to.equal(fresh);
    // The device adds port 0 again: the fresh stream is announced, readied, opened and works.
    const announced: ConsolePort[] = [];
    d.on('port', (p: ConsolePort) => announced.push(p));
    const before = s.queues[3].history.length;
    crx.complete(encodeConsoleControl(0, E.DEVICE_ADD, 1));
    await microtasks();
    drainControl(s);
    expect(announced).to.deep.equal([fresh]);
    expect(sent(s.queues[3]).slice(before)).to.deep.equal([
      [0, E.PORT_READY, 1],
      [0, E.PORT_OPEN, 1],
    ]);
    const got = once(fresh, 'data');
    while (rx0.inFlight === 0) await microtasks();
    rx0.complete(Buffer.from('in'));
    expect(((await got)[0] as Buffer).toString()).to.equal('in');
    const sentBefore = tx0.history.length;
    fresh.write('out');
    await microtasks();
    expect(Buffer.concat(tx0.history.slice(sentBefore).map((h) => h.out as Uint8Array)).toString()).to.equal('out');
  });

  it('hostile control messages: DEVICE_ADD of an existing port, PORT_NAME empty or filling the buffer, messages for a removed port', async () => {
    const d = new ConsoleDriver({ maxPorts: 3 });
    const s = session(d, 3);
    const crx = s.queues[2];
    const added: number[] = [];
    d.on('port', (p: ConsolePort) => added.push(p.id));
    crx.complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    crx.complete(encodeConsolePortName(1, 'org.test.one'));
    const p1 = d.port(1) as ConsolePort;
    // DEVICE_ADD of a port that exists (a device MUST NOT, VIRTIO 1.2 §5.3.6.2): answered, nothing new.
    crx.complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    expect(d.port(1)).to.equal(p1);
    expect(added).to.deep.equal([1]);
    // PORT_NAME without a name: ignored.
    crx.complete(encodeConsoleControl(1, E.PORT_NAME, 1));
    expect(p1.portName).to.equal('org.test.one');
    // A name as long as a control receive buffer holds (CONTROL_RX_BUFFER − 8 bytes): taken as sent.
    crx.complete(encodeConsoleControl(2, E.DEVICE_ADD, 1));
    const long = 'n'.repeat(CONTROL_RX_BUFFER - 8);
    crx.complete(encodeConsolePortName(2, long));
    expect(d.port(2)?.portName).to.equal(long);
    // Removed: later messages for it change nothing, and it stays gone.
    crx.complete(encodeConsoleControl(1, E.DEVICE_REMOVE, 0));
    crx.complete(encodeConsoleControl(1, E.PORT_OPEN, 1));
    crx.complete(encodeConsolePortName(1, 'org.test.other'));
    crx.complete(encodeConsoleResize(1, 100, 40));
    crx.complete(encodeConsoleControl(1, E.DEVICE_REMOVE, 0));
    crx.complete(encodeConsoleControl(0xffffffff, E.DEVICE_REMOVE, 0));
    expect(d.port(1)).to.equal(undefined);
    expect([p1.portName, p1.hostOpen, p1.size]).to.deep.equal(['org.test.one', null, null]);
    await microtasks();
    drainControl(s);
    const forOne = sent(s.queues[3]).filter(([id]) => id === 1);
    expect(forOne).to.deep.equal([[1, E.PORT_READY, 1], [1, E.PORT_OPEN, 1], [1, E.PORT_READY, 1], [1, E.PORT_OPEN, 1]]);
    expect(crx.inFlight, 'control receive buffers kept posted').to.equal(crx.size);
  });

  it('names a port once per DEVICE_ADD, as Linux does: a second PORT_NAME neither renames it nor makes it findable under the new name', async () => {
    const d = new ConsoleDriver({ maxPorts: 3 });
    const s = session(d, 3);
    const crx = s.queues[2];
    const renamed: string[] = [];
    d.on('port-name', (p: ConsolePort) => renamed.push(`${p.id}:${p.portName}`));
    crx.complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    crx.complete(encodeConsolePortName(1, 'org.test.log'));
    crx.complete(encodeConsoleControl(2, E.DEVICE_ADD, 1));
    crx.complete(encodeConsolePortName(2, 'org.test.shell'));
    const p1 = d.port(1) as ConsolePort;
    // A device that renames port 1 to port 2's name: an application that picked ports by name
    // would now write its log to the shell, or find two ports of one name.
    crx.complete(encodeConsolePortName(1, 'org.test.shell'));
    expect(p1.portName).to.equal('org.test.log');
    expect(await d.waitForPort('org.test.shell')).to.equal(d.port(2));
    expect(renamed).to.deep.equal(['1:org.test.log', '2:org.test.shell']);
    // Removed and added again, the id is a new port, and the device names it anew.
    crx.complete(encodeConsoleControl(1, E.DEVICE_REMOVE, 0));
    crx.complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    crx.complete(encodeConsolePortName(1, 'org.test.audit'));
    expect(d.port(1)?.portName).to.equal('org.test.audit');
    d.remove(new Error('done'));
  });
});

describe('ConsoleDriver control backlog under a flooding device', () => {
  it('a device that repeats DEVICE_ADD without using control transmit buffers still learns that a port was closed', async () => {
    const d = new ConsoleDriver({ maxPorts: 2 });
    const s = session(d, 2);
    const crx = s.queues[2];
    // DEVICE_ADD(1) over and over; the device takes none of the driver's answers meanwhile.
    for (let i = 0; i < 3000; i++) crx.complete(encodeConsoleControl(1, E.DEVICE_ADD, 1));
    const p1 = d.port(1) as ConsolePort;
    p1.destroy();
    await once(p1, 'close');
    drainControl(s);
    const forOne = sent(s.queues[3]).filter(([id]) => id === 1);
    expect(forOne.at(-1), 'the last word on port 1').to.deep.equal([1, E.PORT_OPEN, 0]);
    d.remove(new Error('done'));
  });
});

describe('ConsoleDriver port 0 after its removal', () => {
  it('announces the fresh port 0 when a device without MULTIPORT serves it next', () => {
    const d = new ConsoleDriver({ maxPorts: 2 });
    const s1 = session(d, 2);
    s1.queues[2].complete(encodeConsoleControl(0, E.DEVICE_ADD, 1));
    s1.queues[2].complete(encodeConsoleControl(0, E.DEVICE_REMOVE, 1));
    const fresh = d.port(0) as ConsolePort;
    s1.failAll();
    d.remove(new Error('back-end gone'));
    const announced: ConsolePort[] = [];
    d.on('port', (p: ConsolePort) => announced.push(p));
    d.probe(new FakeSession(0n, 2)); // the next back-end has no MULTIPORT: port 0 is served at once
    expect(fresh.attached).to.equal(true);
    expect(announced, "'port' for the port 0 that replaced the removed one").to.deep.equal([fresh]);
    d.remove(new Error('done'));
  });
});
