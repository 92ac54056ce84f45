/**
 * ConsoleDriver against a fake session (the device played by the test): Duplex data both ways,
 * backpressure, batched kicks, SIZE, MULTIPORT control flow and §4.10 recovery. The driver side of
 * §8 items 40 and 42 (queue count, EMERG_WRITE) is in conformance/40 and 42.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import {
  CONSOLE_BAD_ID,
  ConsoleControlEvent,
  ConsoleFeature,
  decodeConsoleControl,
  encodeConsoleControl,
  encodeConsolePortName,
  encodeConsoleResize,
  featureBit,
} from 'virtio-spec-types';
import { ConsoleDriver, ConsoleError, MAX_PORTS_LIMIT, type ConsolePort } from '../src/index.js';
import { FakeSession, type FakeQueue, microtasks } from './fixtures/fake-session.js';
import { configWith } from './fixtures/config-reader.js';

const SIZE = featureBit(ConsoleFeature.SIZE);
const MULTIPORT = featureBit(ConsoleFeature.MULTIPORT);

function writeAsync(port: ConsolePort, data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => port.write(data, (err) => (err ? reject(err) : resolve())));
}

/** Control messages the driver posted on the control transmitq, decoded. */
function controlSent(q: FakeQueue): { id: number; event: number; value: number }[] {
  return q.history.map((p) => {
    const m = decodeConsoleControl(p.out as Uint8Array);
    return { id: m.id, event: m.event, value: m.value };
  });
}

describe('ConsoleDriver (fake session)', () => {

  it("'auto' ports: queueCount reads max_nr_ports from config", () => {
    const d = new ConsoleDriver();
    expect(d.queueCount(MULTIPORT, configWith(3))).to.equal(8);
    expect(d.queueCount(MULTIPORT, configWith(1))).to.equal(4); // the next back-end may have fewer ports
    expect(d.queueCount(MULTIPORT, configWith(0))).to.equal(4); // port 0 always exists
    expect(d.queueCount(MULTIPORT, configWith(1000))).to.equal(2 * MAX_PORTS_LIMIT + 2);
    expect(d.queueCount(SIZE, configWith(3))).to.equal(2);
    const s = new FakeSession(MULTIPORT, 8);
    s.config.setUint32(4, 3, true);
    d.probe(s); // one initialisation: no re-probe
    expect(d.ready).to.equal(true);
  });

  it('rejects bad options with ConsoleError', () => {
    expect(() => new ConsoleDriver({ maxPorts: 0 })).to.throw(ConsoleError);
    expect(() => new ConsoleDriver({ features: 0x10n })).to.throw(ConsoleError);
  });

  it('keeps the receiveq full with one kick and delivers received bytes on the Duplex', async () => {
    const d = new ConsoleDriver();
    const s = new FakeSession(SIZE, 2);
    d.probe(s);
    await microtasks();
    const [rxq] = s.queues;
    expect(rxq.inFlight).to.equal(8);
    expect(rxq.kicks).to.equal(1);
    const port = d.port(0) as ConsolePort;
    const got = once(port, 'data');
    rxq.complete(Buffer.from('hello'));
    expect(((await got)[0] as Buffer).toString()).to.equal('hello');
    await microtasks();
    expect(rxq.inFlight).to.equal(8); // re-posted
  });

  it('sends written bytes on the transmitq in order, split in pieces', async () => {
    const d = new ConsoleDriver({ txPieceSize: 100 });
    const s = new FakeSession(0n, 2);
    d.probe(s);
    const port = d.port(0) as ConsolePort;
    const data = Buffer.alloc(450, 0).map((_, i) => i & 0xff);
    const done = writeAsync(port, data);
    await microtasks();
    const txq = s.queues[1];
    expect(txq.inFlight).to.equal(5);
    expect(txq.kicks).to.equal(1);
    await done;
    while (txq.inFlight > 0) txq.complete();
    expect(txq.sentBytes().equals(data)).to.equal(true);
    expect(port.pendingTransmitBytes).to.equal(0);
  });

  it('applies writable backpressure while the transmitq is full', async () => {
    const d = new ConsoleDriver({ txPieceSize: 16, highWaterMark: 64 });
    const s = new FakeSession(0n, 2, 2);
    d.probe(s);
    const port = d.port(0) as ConsolePort;
    const txq = s.queues[1];
    let called = false;
    port.write(Buffer.alloc(64, 1), () => {
      called = true;
    });
    const more = port.write(Buffer.alloc(64, 2));
    expect(more).to.equal(false);
    await microtasks();
    expect(txq.inFlight).to.equal(2);
    expect(called).to.equal(false); // 2 of 4 pieces posted: the chunk is not taken yet
    const drained = once(port, 'drain');
    while (txq.inFlight > 0) {
      txq.complete();
      await microtasks();
    }
    await drained;
    expect(called).to.equal(true);
    expect(txq.sentBytes().equals(Buffer.concat([Buffer.alloc(64, 1), Buffer.alloc(64, 2)]))).to.equal(true);
  });

  it('stops re-posting receive buffers while the reader does not read', async () => {
    const d = new ConsoleDriver({ highWaterMark: 8 });
    const s = new FakeSession(0n, 2);
    d.probe(s);
    const port = d.port(0) as ConsolePort;
    const rxq = s.queues[0];
    await microtasks();
    rxq.complete(Buffer.alloc(16, 7)); // above the highWaterMark: push() returns false
    expect(rxq.inFlight).to.equal(7);
    rxq.complete(Buffer.alloc(16, 8));
    expect(rxq.inFlight).to.equal(6);
    const first = port.read() as Buffer; // _read() → receiveq refilled
    expect(first.length).to.equal(32);
    await microtasks();
    expect(rxq.inFlight).to.equal(8);
  });

  it('reads the size from config and follows config events (SIZE without MULTIPORT)', async () => {
    const d = new ConsoleDriver();
    const s = new FakeSession(SIZE, 2);
    s.config.setUint16(0, 80, true);
    s.config.setUint16(2, 25, true);
    d.probe(s);
    expect(d.size).to.deep.equal({ cols: 80, rows: 25 });
    const resized = once(d, 'resize');
    s.config.setUint16(0, 132, true);
    s.config.setUint16(2, 43, true);
    d.configChanged(s);
    expect((await resized)[0]).to.deep.equal({ cols: 132, rows: 43 });
    expect(d.port(0)?.size).to.deep.equal({ cols: 132, rows: 43 });
  });

  it('runs the MULTIPORT control flow with 3 named ports and RESIZE', async () => {
    const d = new ConsoleDriver({ maxPorts: 3 });
    const s = new FakeSession(SIZE | MULTIPORT, d.queueCount(SIZE | MULTIPORT, configWith(3)));
    s.config.setUint32(4, 3, true);
    d.probe(s);
    await microtasks();
    const crx = s.queues[2];
    const ctx = s.queues[3];
    expect(crx.inFlight).to.equal(8);
    expect(controlSent(ctx)).to.deep.equal([{ id: CONSOLE_BAD_ID, event: ConsoleControlEvent.DEVICE_READY, value: 1 }]);
    const ports: ConsolePort[] = [];
    d.on('port', (p: ConsolePort) => ports.push(p));
    const names = ['console', 'org.vshm.a', 'org.vshm.b'];
    for (let id = 0; id < 3; id++) {
      crx.complete(encodeConsoleControl(id, ConsoleControlEvent.DEVICE_ADD, 0));
      crx.complete(encodeConsolePortName(id, names[id]));
      // Keep the fake's control transmitq flowing like a device would.
      while (ctx.inFlight > 0) ctx.complete();
    }
    crx.complete(encodeConsoleControl(0, ConsoleControlEvent.CONSOLE_PORT, 1));
    const resized = once(d, 'resize');
    crx.complete(encodeConsoleResize(0, 100, 30));
    expect((await resized)[0]).to.deep.equal({ cols: 100, rows: 30 });
    crx.complete(encodeConsoleControl(2, ConsoleControlEvent.PORT_OPEN, 1));
    await microtasks();
    while (ctx.inFlight > 0) ctx.complete();

    expect(ports.map((p) => p.id)).to.deep.equal([1, 2]); // port 0 exists from the start
    expect([0, 1, 2].map((i) => d.port(i)?.portName)).to.deep.equal(names);
    expect(d.consolePort.id).to.equal(0);
    expect(d.port(2)?.hostOpen).to.equal(true);
    const sent = controlSent(ctx);
    for (let id = 0; id < 3; id++) {
      expect(sent).to.deep.include({ id, event: ConsoleControlEvent.PORT_READY, value: 1 });
      expect(sent).to.deep.include({ id, event: ConsoleControlEvent.PORT_OPEN, value: 1 });
    }
    // Each port has its own queues: 0/1, 4/5, 6/7.
    expect(s.queues[4].inFlight).to.equal(8);
    const p2 = await d.waitForPort('org.vshm.b');
    const got = once(p2, 'data');
    s.queues[6].complete(Buffer.from('to port 2'));
    expect(((await got)[0] as Buffer).toString()).to.equal('to port 2');
    await writeAsync(d.port(1) as ConsolePort, Buffer.from('from port 1'));
    expect(s.queues[5].sentBytes().toString()).to.equal('from port 1');
  });

  it('sends PORT_OPEN(id, 0) when the application destroys a port stream', async () => {
    const d = new ConsoleDriver({ maxPorts: 2 });
    const s = new FakeSession(MULTIPORT, d.queueCount(MULTIPORT, configWith(2)));
    s.config.setUint32(4, 2, true);
    d.probe(s);
    const crx = s.queues[2];
    const ctx = s.queues[3];
    crx.complete(encodeConsoleControl(1, ConsoleControlEvent.DEVICE_ADD, 0));
    const p1 = d.port(1) as ConsolePort;
    p1.destroy();
    await once(p1, 'close');
    while (ctx.inFlight > 0) ctx.complete();
    expect(controlSent(ctx).at(-1)).to.deep.equal({ id: 1, event: ConsoleControlEvent.PORT_OPEN, value: 0 });
  });

  it('ignores malformed and unknown control messages and refuses ports it cannot serve', async () => {
    const d = new ConsoleDriver({ maxPorts: 1 });
    const s = new FakeSession(MULTIPORT, d.queueCount(MULTIPORT, configWith(4)));
    s.config.setUint32(4, 4, true);
    d.probe(s);
    const crx = s.queues[2];
    crx.complete(new Uint8Array(5)); // short
    crx.complete(encodeConsoleControl(0, 99, 1)); // unknown event
    crx.complete(encodeConsoleControl(7, ConsoleControlEvent.PORT_OPEN, 1)); // unknown port
    crx.complete(encodeConsoleControl(0, ConsoleControlEvent.RESIZE, 0)); // RESIZE without payload
    crx.complete(encodeConsoleControl(3, ConsoleControlEvent.DEVICE_ADD, 0)); // beyond maxPorts
    await microtasks();
    expect(crx.inFlight).to.equal(8);
    expect(controlSent(s.queues[3])).to.deep.include({ id: 3, event: ConsoleControlEvent.PORT_READY, value: 0 });
    expect(d.ports.size).to.equal(1);
    expect(d.size).to.equal(null);
  });

  it('re-sends failed transmit data in order after the next probe, on the same stream', async () => {
    const d = new ConsoleDriver({ txPieceSize: 10 });
    const s1 = new FakeSession(0n, 2, 4);
    d.probe(s1);
    const port = d.port(0) as ConsolePort;
    const data = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ');
    port.write(data);
    await microtasks();
    const tx1 = s1.queues[1];
    tx1.complete(); // "0123456789" consumed
    await microtasks();
    expect(tx1.inFlight).to.equal(4);
    s1.failAll();
    d.remove(new Error('back-end gone'));
    expect(port.attached).to.equal(false);
    expect(port.pendingTransmitBytes).to.equal(data.length - 10);

    const s2 = new FakeSession(0n, 2, 4);
    d.probe(s2);
    await microtasks();
    const tx2 = s2.queues[1];
    while (tx2.inFlight > 0) {
      tx2.complete();
      await microtasks();
    }
    expect(tx2.sentBytes().toString()).to.equal(data.subarray(10).toString());
    // Reads resume on the same object.
    const got = once(port, 'data');
    s2.queues[0].complete(Buffer.from('back'));
    expect(((await got)[0] as Buffer).toString()).to.equal('back');
  });
});
