/**
 * ConsoleDevice's MULTIPORT control protocol against drivers that do the unexpected (spec §7.2–7.3;
 * VIRTIO 1.2 §5.3.6.2): a driver that posts no control receive buffers for a while, messages in
 * unexpected orders, hostile messages.
 */
import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { ConsoleControlEvent as E, ConsoleFeature, featureBit } from 'virtio-spec-types';
import { ConsoleDevice } from '../src/device.js';
import { controlMessages, feed, sendControl as send, sink } from './fixtures/console-streams.js';
import { FakeChain, FakeSession } from './fixtures/fake-session.js';

const MULTIPORT = featureBit(ConsoleFeature.MULTIPORT);
const SIZE = featureBit(ConsoleFeature.SIZE);

/** A device with one named port, a live MULTIPORT session, both ports added and ready. */
function readySession(): { d: ConsoleDevice; s: FakeSession } {
  const d = new ConsoleDevice({ ports: ['org.test.one'], size: { cols: 80, rows: 24 } });
  const s = new FakeSession(MULTIPORT, d.queueCount(MULTIPORT));
  d.activate(s);
  s.queues[2].post(...Array.from({ length: 16 }, () => new FakeChain('', 128)));
  send(s, 0xffffffff, E.DEVICE_READY, 1);
  send(s, 0, E.PORT_READY, 1);
  send(s, 1, E.PORT_READY, 1);
  s.queues[2].used.length = 0;
  return { d, s };
}

describe('ConsoleDevice MULTIPORT control in unexpected orders', () => {
  it('a driver without control receive buffers learns the latest host-side state of a port, however often it changed', () => {
    const { d, s } = readySession();
    const crx = s.queues[2];
    crx.avail.length = 0; // the driver's control worker stalls: no receive buffers for a while
    const port = d.port(1);
    // A host client reconnecting in a loop meanwhile (say, a UNIX-socket client that retries).
    for (let i = 0; i < 700; i++) {
      port.attach(new PassThrough(), sink().stream);
      port.detach();
    }
    port.attach(new PassThrough(), sink().stream); // …and in the end it stays connected
    d.resize(100, 40); // the terminal changed size meanwhile too
    crx.post(...Array.from({ length: 2048 }, () => new FakeChain('', 128)));
    const msgs = controlMessages(crx);
    const opens = msgs.filter((m) => m.id === 1 && m.event === E.PORT_OPEN);
    expect(opens.at(-1)?.value, 'the last PORT_OPEN of port 1').to.equal(1);
    expect(msgs.filter((m) => m.event === E.RESIZE), 'RESIZE').to.have.length(1);
    expect(msgs.length, 'messages that waited').to.be.at.most(4);
    d.deactivate('shutdown');
  });

  it('keeps cols/rows valid when SIZE was negotiated with MULTIPORT (config update and RESIZE)', () => {
    const d = new ConsoleDevice({ ports: ['org.test.one'], size: { cols: 80, rows: 24 } });
    const s = new FakeSession(MULTIPORT | SIZE, d.queueCount(MULTIPORT));
    d.initConfig(s.config); // header initialised at READY
    d.resize(90, 30); // …and the terminal changed before DRIVER_OK
    d.activate(s);
    expect([s.config.read(0, 2), s.config.read(2, 2)], 'cols/rows at DRIVER_OK').to.deep.equal([90, 30]);
    s.queues[2].post(...Array.from({ length: 8 }, () => new FakeChain('', 128)));
    send(s, 0xffffffff, E.DEVICE_READY, 1);
    send(s, 0, E.PORT_READY, 1);
    s.queues[2].used.length = 0;
    const events = s.configEvents;
    d.resize(132, 43);
    // VIRTIO 1.2 §5.3.3 and VIRTIO 1.2 §5.3.6 item 3: with SIZE negotiated cols/rows are valid and a config
    // change says so — Linux reads them only without MULTIPORT, so the RESIZE goes out as well.
    expect([s.config.read(0, 2), s.config.read(2, 2)]).to.deep.equal([132, 43]);
    expect(s.configEvents).to.equal(events + 1);
    expect(controlMessages(s.queues[2]).map((m) => [m.id, m.event])).to.deep.equal([[0, E.RESIZE]]);
    // Without SIZE negotiated only the RESIZE: cols/rows are not the driver's business.
    const s2 = new FakeSession(MULTIPORT, d.queueCount(MULTIPORT));
    d.activate(s2);
    d.resize(100, 50);
    expect([s2.config.read(0, 2), s2.config.read(2, 2)]).to.deep.equal([0, 0]);
    d.deactivate('shutdown');
  });

  it('leaves no listener or timer behind over many sessions and host-side attach/detach cycles', () => {
    const d = new ConsoleDevice({ ports: ['org.test.one'], settleMs: 60_000 });
    const input = new PassThrough();
    const output = new PassThrough();
    const counts = (e: NodeJS.EventEmitter): number => e.eventNames().reduce((n, ev) => n + e.listenerCount(ev), 0);
    const base = [counts(d.port(0)), counts(d.port(1)), counts(input), counts(output)];
    const sessions: unknown[] = [];
    for (let i = 0; i < 300; i++) {
      const features = i % 2 === 0 ? MULTIPORT : 0n; // a MULTIPORT driver, then one without (settle timer)
      const s = new FakeSession(features, d.queueCount(features));
      d.activate(s);
      sessions.push(d.currentSession);
      if (features === MULTIPORT) {
        s.queues[2].post(new FakeChain('', 128));
        send(s, 0xffffffff, E.DEVICE_READY, 1);
        send(s, 1, E.PORT_READY, 1);
      }
      for (const id of [0, 1]) {
        d.port(id).attach(input, output);
        d.port(id).detach();
      }
      d.deactivate('driver-gone');
    }
    expect([counts(d.port(0)), counts(d.port(1)), counts(input), counts(output)]).to.deep.equal(base);
    // Every session without MULTIPORT started a settle timer (60 s, never reached): each went with it.
    expect(sessions.filter((x) => (x as { settleTimer: unknown }).settleTimer !== null)).to.have.length(0);
  });

  it('ignores device-side events and failures from the driver; a port closed by the driver keeps its input until reopened', async () => {
    const d = new ConsoleDevice({ ports: ['org.test.one'], size: { cols: 80, rows: 24 } });
    const s = new FakeSession(MULTIPORT, d.queueCount(MULTIPORT));
    d.activate(s);
    const crx = s.queues[2];
    crx.post(...Array.from({ length: 16 }, () => new FakeChain('', 128)));
    send(s, 0xffffffff, E.DEVICE_READY, 0); // the driver failed: nothing to add
    for (const ev of [E.DEVICE_ADD, E.DEVICE_REMOVE, E.CONSOLE_PORT, E.RESIZE, E.PORT_NAME]) send(s, 1, ev, 1);
    send(s, 1, E.PORT_READY, 0); // the driver could not add port 1
    expect(controlMessages(crx)).to.have.length(0);
    expect(s.queues[3].used.every((u) => u.flushed && u.written === 0)).to.equal(true);

    // Port 1 opened by the driver: input flows; closed: it waits; reopened: it arrives, all of it.
    const input = new PassThrough();
    d.port(1).attach(input, sink().stream);
    const rx1 = s.queues[4];
    send(s, 1, E.PORT_OPEN, 1);
    rx1.post(new FakeChain('', 64));
    await feed(input, d.port(1), 'one;');
    expect(rx1.receivedText()).to.equal('one;');
    send(s, 1, E.PORT_OPEN, 0);
    rx1.post(new FakeChain('', 64));
    await feed(input, d.port(1), 'two;');
    expect(rx1.receivedText()).to.equal('one;');
    send(s, 1, E.PORT_OPEN, 1);
    expect(rx1.receivedText()).to.equal('one;two;');
    d.deactivate('shutdown');
  });
});

describe('ConsoleDevice control backlog under a flooding driver', () => {
  it('a driver that repeats DEVICE_READY without reading control messages still learns a port\'s name and host state', () => {
    const d = new ConsoleDevice({ ports: ['org.test.one'] });
    const s = new FakeSession(MULTIPORT, d.queueCount(MULTIPORT));
    d.activate(s);
    // No control receive buffers; DEVICE_READY over and over (a confused or hostile driver).
    for (let i = 0; i < 3000; i++) send(s, 0xffffffff, E.DEVICE_READY, 1);
    send(s, 1, E.PORT_READY, 1);
    d.port(1).attach(new PassThrough(), sink().stream); // the host side opens meanwhile
    const crx = s.queues[2];
    crx.post(...Array.from({ length: 4096 }, () => new FakeChain('', 128)));
    const msgs = controlMessages(crx);
    // Repeats of a message still waiting say nothing new: kept once, nothing else is crowded out.
    expect(msgs.filter((m) => m.event === E.DEVICE_ADD).map((m) => m.id)).to.deep.equal([0, 1]);
    expect(msgs.some((m) => m.id === 1 && m.event === E.PORT_NAME), 'PORT_NAME(1)').to.equal(true);
    expect(msgs.filter((m) => m.id === 1 && m.event === E.PORT_OPEN).at(-1)?.value, 'PORT_OPEN(1)').to.equal(1);
    d.deactivate('driver-gone');
  });
});
