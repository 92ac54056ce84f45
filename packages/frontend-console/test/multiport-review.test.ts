/**
 * The driver's MULTIPORT control handling in the orders and states a device may produce beyond the
 * plain handshake (spec §7.2; VIRTIO 1.2 §5.3.6.2): ports the application closed, sessions that
 * end and start again, ports the device removes and adds again.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { ConsoleControlEvent as E, ConsoleFeature, decodeConsoleControl, encodeConsoleControl, featureBit } from 'virtio-spec-types';
import { ConsoleDriver, type ConsolePort } from '../src/index.js';
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
});
