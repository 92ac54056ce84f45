import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { once } from 'node:events';
import { ArgumentError } from '@vshm/transport';
import {
  ConsoleControlEvent as E, ConsoleFeature, decodeConsoleControl, decodeConsolePortName, decodeConsoleResize,
  encodeConsoleControl, featureBit, VirtioDeviceId,
} from 'virtio-spec-types';
import { ConsoleDevice } from '../src/device.js';
import type { ConsolePort } from '../src/port.js';
import { FakeChain, FakeConfig, FakeQueue, FakeSession } from './helpers/fake-session.js';

const SIZE = featureBit(ConsoleFeature.SIZE);
const MULTIPORT = featureBit(ConsoleFeature.MULTIPORT);
const EMERG = featureBit(ConsoleFeature.EMERG_WRITE);

/** Collects what the device writes to a port's host output. */
function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

/** Writes `text` to a port's host input and waits until the port took it. */
async function feed(input: PassThrough, port: ConsolePort, text: string): Promise<void> {
  const took = once(port, 'input'); // registered first: 'data' may fire synchronously inside write()
  input.write(text);
  await took;
}

/** Resolves once `q` published used entries `count` times in total. */
function flushed(q: FakeQueue, count = 1): Promise<void> {
  return new Promise((resolve) => {
    const orig = q.flush.bind(q);
    q.flush = () => { orig(); if (q.flushes >= count) resolve(); };
    if (q.flushes >= count) resolve();
  });
}

describe('ConsoleDevice (spec §7.2–7.3)', () => {
  it('offers SIZE iff the size is known, two queues of size 8 and Jailhouse config defaults', () => {
    const plain = new ConsoleDevice();
    expect(plain.deviceId).to.equal(VirtioDeviceId.CONSOLE);
    expect(plain.features).to.equal(0n);
    expect(plain.queueCount(0n)).to.equal(2);
    expect(plain.queueMaxSize(0)).to.equal(8);
    const sized = new ConsoleDevice({ size: { cols: 100, rows: 30 } });
    expect(sized.features).to.equal(SIZE);
    const cfg = new FakeConfig(sized.configSize);
    sized.initConfig(cfg);
    expect(cfg.bytes.toString('hex')).to.equal('64001e00' + '00000000' + '00000000');
    const c2 = new FakeConfig(12);
    plain.initConfig(c2);
    expect(c2.bytes.toString('hex')).to.equal('0'.repeat(24));
    expect(plain.configFields.map((f) => [f.name, f.offset, f.width])).to.deep.equal([
      ['cols', 0, 2], ['rows', 2, 2], ['max_nr_ports', 4, 4], ['emerg_wr', 8, 4]]);
  });

  it('offers extensions from configuration and checks options', () => {
    const d = new ConsoleDevice({ ports: ['a', 'b'], emergWrite: true, queueSize: 64 });
    expect(d.features).to.equal(MULTIPORT | EMERG);
    expect(d.maxNrPorts).to.equal(3);
    expect(d.queueCount(MULTIPORT)).to.equal(8);
    expect(d.queueCount(0n)).to.equal(2);
    expect(d.queueMaxSize(5)).to.equal(64);
    const cfg = new FakeConfig(12);
    d.initConfig(cfg);
    expect(cfg.read(4, 4)).to.equal(3);
    expect(d.configFields.find((f) => f.name === 'emerg_wr')?.driverWritable).to.equal(true);
    expect(() => new ConsoleDevice({ queueSize: 12 })).to.throw(ArgumentError);
    expect(() => new ConsoleDevice({ ports: ['x', 'x'] })).to.throw(ArgumentError);
    expect(() => new ConsoleDevice({ ports: ['a'], maxNrPorts: 1 })).to.throw(ArgumentError);
    expect(() => new ConsoleDevice({ size: { cols: 0, rows: 1 } })).to.throw(ArgumentError);
  });

  it('raises a config event on DRIVER_OK', () => {
    const d = new ConsoleDevice({ size: { cols: 80, rows: 24 } });
    const s = new FakeSession(SIZE, 2);
    d.activate(s);
    expect(s.configEvents).to.equal(1);
    d.deactivate('shutdown');
  });

  it('writes a size that changed after header initialisation on DRIVER_OK (one config event)', () => {
    const d = new ConsoleDevice({ size: { cols: 80, rows: 24 } });
    const s = new FakeSession(SIZE, 2);
    d.initConfig(s.config); // header initialised while waiting for the driver
    d.resize(100, 30); // no session yet
    d.activate(s);
    expect([s.config.read(0, 2), s.config.read(2, 2)]).to.deep.equal([100, 30]);
    expect(s.configEvents).to.equal(1);
    d.deactivate('shutdown');
  });

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

  it('receiveq: delivers after the settle time when the driver stays silent', async () => {
    const d = new ConsoleDevice({ settleMs: 5 });
    const input = new PassThrough();
    d.port(0).attach(input, null);
    await feed(input, d.port(0), 'late');
    const s = new FakeSession(0n, 2);
    d.activate(s);
    s.queues[0].post(new FakeChain('', 64));
    expect(s.queues[0].used).to.have.length(0);
    await flushed(s.queues[0]);
    expect(s.queues[0].receivedText()).to.equal('late');
    d.deactivate('shutdown');
  });

  it('keeps undelivered input across a driver going away, and applies backpressure', async () => {
    const d = new ConsoleDevice({ settleMs: 0, bufferLimit: 8 });
    const input = new PassThrough();
    d.port(0).attach(input, null);
    const s1 = new FakeSession(0n, 2);
    d.activate(s1);
    s1.queues[0].post(new FakeChain('', 3));
    await feed(input, d.port(0), '0123456789ab');
    expect(s1.queues[0].receivedText()).to.equal('012');
    d.deactivate('driver-gone');
    expect(d.port(0).buffer.length).to.equal(9);
    expect(d.port(0).buffer.full).to.equal(true);
    expect(input.isPaused()).to.equal(true); // source paused, nothing dropped
    const s2 = new FakeSession(0n, 2);
    d.activate(s2);
    s2.queues[0].post(new FakeChain('', 100));
    expect(s2.queues[0].receivedText()).to.equal('3456789ab');
    expect(input.isPaused()).to.equal(false);
    expect(s1.queues[0].used).to.have.length(1); // the old session's queues are untouched
    d.deactivate('shutdown');
  });

  it('EMERG_WRITE of 0x41 outputs "A" on port 0 in any status', () => {
    const d = new ConsoleDevice({ emergWrite: true });
    const out = sink();
    d.port(0).attach(null, out.stream);
    const field = d.configFields.find((f) => f.name === 'emerg_wr');
    expect(field).to.not.equal(undefined);
    d.configWritten(field!, 0x1241);
    expect(out.text()).to.equal('A');
  });

  it('resize without MULTIPORT updates cols/rows by the generation rule and raises a config event', () => {
    const d = new ConsoleDevice({ size: { cols: 80, rows: 24 } });
    const s = new FakeSession(SIZE, 2);
    d.initConfig(s.config);
    d.activate(s);
    d.resize(132, 43);
    expect([s.config.read(0, 2), s.config.read(2, 2)]).to.deep.equal([132, 43]);
    expect(s.configEvents).to.equal(2);
    expect(s.generation % 2).to.equal(0);
    d.resize(132, 43); // unchanged: no event
    expect(s.configEvents).to.equal(2);
    d.deactivate('shutdown');
  });

  describe('MULTIPORT', () => {
    const names = ['org.vshm.one', 'org.vshm.two', 'org.vshm.three'];
    function ctl(q: FakeQueue): Array<{ id: number; event: number; value: number; payload: Uint8Array }> {
      return q.used.map((u) => decodeConsoleControl(u.chain.writable.subarray(0, u.written)));
    }
    function send(s: FakeSession, id: number, event: number, value: number): void {
      s.queues[3].post(new FakeChain(encodeConsoleControl(id, event, value)));
    }

    it('runs DEVICE_READY → DEVICE_ADD, PORT_READY → CONSOLE_PORT/RESIZE/PORT_NAME/PORT_OPEN with 3 named ports', () => {
      const d = new ConsoleDevice({ ports: names, size: { cols: 90, rows: 33 }, settleMs: 0 });
      const hosts = d.ports.map(() => ({ input: new PassThrough(), out: sink() }));
      // Ports 0 and 2 have a host side open; 1 and 3 not.
      d.port(0).attach(hosts[0].input, hosts[0].out.stream);
      d.port(2).attach(hosts[2].input, hosts[2].out.stream);
      const s = new FakeSession(MULTIPORT | SIZE, d.queueCount(MULTIPORT));
      expect(s.queues).to.have.length(10);
      d.activate(s);
      const crx = s.queues[2];
      crx.post(...Array.from({ length: 32 }, () => new FakeChain('', 128)));

      send(s, 0xffffffff, E.DEVICE_READY, 1);
      expect(ctl(crx).map((m) => [m.id, m.event, m.value])).to.deep.equal([[0, E.DEVICE_ADD, 1], [1, E.DEVICE_ADD, 1], [2, E.DEVICE_ADD, 1], [3, E.DEVICE_ADD, 1]]);
      crx.used.length = 0;

      send(s, 0, E.PORT_READY, 1);
      const m0 = ctl(crx);
      expect(m0.map((m) => [m.id, m.event])).to.deep.equal([[0, E.CONSOLE_PORT], [0, E.RESIZE], [0, E.PORT_OPEN]]);
      expect(decodeConsoleResize(m0[1])).to.deep.equal({ cols: 90, rows: 33 });
      crx.used.length = 0;

      for (const id of [1, 2, 3]) send(s, id, E.PORT_READY, 1);
      const m1 = ctl(crx);
      expect(m1.map((m) => [m.id, m.event, m.value])).to.deep.equal([
        [1, E.PORT_NAME, 1], [2, E.PORT_NAME, 1], [2, E.PORT_OPEN, 1], [3, E.PORT_NAME, 1]]);
      expect(m1.filter((m) => m.event === E.PORT_NAME).map(decodeConsolePortName)).to.deep.equal(names);
      crx.used.length = 0;
      expect(s.queues[3].used.every((u) => u.written === 0 && u.flushed)).to.equal(true);

      // Ignored: short message, id ≥ max_nr_ports, unknown event.
      s.queues[3].post(new FakeChain(new Uint8Array(7)));
      send(s, 4, E.PORT_READY, 1);
      send(s, 1, 99, 1);
      expect(crx.used).to.have.length(0);

      // Host side of port 3 opens later; port 2 closes.
      d.port(3).attach(hosts[3].input, hosts[3].out.stream);
      d.port(2).detach();
      expect(ctl(crx).map((m) => [m.id, m.event, m.value])).to.deep.equal([[3, E.PORT_OPEN, 1], [2, E.PORT_OPEN, 0]]);
      crx.used.length = 0;

      // Resize goes out as RESIZE for the console port.
      d.resize(100, 40);
      const r = ctl(crx);
      expect(r.map((m) => [m.id, m.event])).to.deep.equal([[0, E.RESIZE]]);
      expect(decodeConsoleResize(r[0])).to.deep.equal({ cols: 100, rows: 40 });
      expect(s.configEvents).to.equal(1); // only the DRIVER_OK one

      // Without control buffers, resizes coalesce to the latest one.
      crx.avail.length = 0;
      crx.used.length = 0;
      d.resize(101, 41);
      d.resize(102, 42);
      expect((d.currentSession as unknown as { control: { backlog: number } }).control.backlog).to.equal(1);
      crx.post(new FakeChain('', 128));
      const last = ctl(crx);
      expect(last.map((m) => [m.id, m.event])).to.deep.equal([[0, E.RESIZE]]);
      expect(decodeConsoleResize(last[0])).to.deep.equal({ cols: 102, rows: 42 });
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
});
