/**
 * ConsoleDevice's MULTIPORT control protocol against drivers that do the unexpected (spec §7.2–7.3;
 * VIRTIO 1.2 §5.3.6.2): a driver that posts no control receive buffers for a while, messages in
 * unexpected orders, hostile messages.
 */
import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { ConsoleControlEvent as E, ConsoleFeature, featureBit } from 'virtio-spec-types';
import { ConsoleDevice } from '../src/device.js';
import { controlMessages, sendControl as send, sink } from './fixtures/console-streams.js';
import { FakeChain, FakeSession } from './fixtures/fake-session.js';

const MULTIPORT = featureBit(ConsoleFeature.MULTIPORT);

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
});
