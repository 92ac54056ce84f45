/**
 * §8 item 40: queue 0 carries input, queue 1 output (used `len` 0); with MULTIPORT, port n ≥ 1 uses
 * 2n+2 and 2n+3 (§7.2). ConsoleDevice over a FakeSession, whose queues the test posts and reads.
 */
import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { ConsoleControlEvent as E, ConsoleFeature, featureBit } from 'virtio-spec-types';
import { ConsoleDevice } from '../../src/device.js';
import { feed, sendControl as send, sink } from '../fixtures/console-streams.js';
import { FakeChain, FakeSession } from '../fixtures/fake-session.js';

const MULTIPORT = featureBit(ConsoleFeature.MULTIPORT);
const names = ['org.vshm.one', 'org.vshm.two', 'org.vshm.three'];

describe('§8 item 40: queue 0 input, queue 1 output (used len 0); MULTIPORT port n on 2n+2 / 2n+3', function () {
  it('transmitq: outputs every readable byte in order, used len 0, chains of any length', () => {
    const d = new ConsoleDevice();
    const out = sink();
    d.port(0).attach(null, out.stream);
    const s = new FakeSession(0n, 2);
    s.queues[1].post(new FakeChain('hello '));
    d.activate(s);
    const big = Buffer.alloc(5000, 'x');
    s.queues[1].post(new FakeChain('world'), new FakeChain(big), new FakeChain(''));
    expect(s.queues[1].used.map((u) => u.written)).to.deep.equal([0, 0, 0, 0]);
    expect(s.queues[1].used.every((u) => u.flushed)).to.equal(true);
    expect(out.text()).to.equal('hello world' + big.toString());
    d.deactivate('shutdown');
  });

  it('receiveq: holds input until the driver shows life, then fills chains (used len = bytes, never 0)', async () => {
    const d = new ConsoleDevice({ settleMs: 60_000 });
    const input = new PassThrough();
    d.port(0).attach(input, null);
    const s = new FakeSession(0n, 2);
    d.activate(s);
    const rx = s.queues[0];
    rx.post(new FakeChain('', 4), new FakeChain('', 4), new FakeChain('', 4));
    await feed(input, d.port(0), 'abcdef');
    expect(rx.used).to.have.length(0); // no life yet: nothing delivered
    s.queues[1].post(new FakeChain('$ ')); // first transmit buffer = life
    expect(rx.used.map((u) => u.written)).to.deep.equal([4, 2]);
    expect(rx.receivedText()).to.equal('abcdef');
    expect(rx.avail).to.have.length(1); // the third chain is not used without data
    await feed(input, d.port(0), 'g');
    expect(rx.used.map((u) => u.written)).to.deep.equal([4, 2, 1]);
    expect(rx.receivedText()).to.equal('abcdefg');
    d.deactivate('shutdown');
  });

  it('delivers a port\'s input only while the driver has it open, on queues 2n+2 / 2n+3', async () => {
    const d = new ConsoleDevice({ ports: names });
    const input = new PassThrough();
    const out = sink();
    d.port(3).attach(input, out.stream);
    const s = new FakeSession(MULTIPORT, d.queueCount(MULTIPORT));
    d.activate(s);
    s.queues[2].post(...Array.from({ length: 16 }, () => new FakeChain('', 128)));
    send(s, 0xffffffff, E.DEVICE_READY, 1);
    send(s, 3, E.PORT_READY, 1);
    const rx = s.queues[8];
    rx.post(new FakeChain('', 64));
    await feed(input, d.port(3), 'to-port-3');
    expect(rx.used).to.have.length(0); // not open yet
    s.queues[9].post(new FakeChain('from-port-3'));
    expect(out.text()).to.equal('from-port-3');
    expect(rx.used).to.have.length(0); // transmit is no PORT_OPEN under MULTIPORT
    send(s, 3, E.PORT_OPEN, 1);
    expect(rx.receivedText()).to.equal('to-port-3');
    send(s, 3, E.PORT_OPEN, 0);
    rx.post(new FakeChain('', 64));
    await feed(input, d.port(3), 'held');
    expect(rx.used).to.have.length(1);
    expect(d.port(3).buffer.length).to.equal(4);
    d.deactivate('shutdown');
  });
});
