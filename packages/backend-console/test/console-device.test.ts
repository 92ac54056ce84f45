/**
 * ConsoleDevice over a FakeSession (spec §7.2–7.3), beyond the §8 checklist (items 40–42 are in
 * conformance/40–42): extensions and options, size changes, settle time, backpressure across
 * drivers, resize, the MULTIPORT control handshake.
 */
import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { ArgumentError } from '@vshm/transport';
import {
  ConsoleControlEvent as E, ConsoleFeature, decodeConsolePortName, decodeConsoleResize, featureBit,
} from 'virtio-spec-types';
import { ConsoleDevice } from '../src/device.js';
import { controlMessages, feed, sendControl as send, sink } from './fixtures/console-streams.js';
import { FakeChain, FakeConfig, FakeQueue, FakeSession } from './fixtures/fake-session.js';

const SIZE = featureBit(ConsoleFeature.SIZE);
const MULTIPORT = featureBit(ConsoleFeature.MULTIPORT);
const EMERG = featureBit(ConsoleFeature.EMERG_WRITE);

/** Resolves once `q` published used entries `count` times in total. */
function flushed(q: FakeQueue, count = 1): Promise<void> {
  return new Promise((resolve) => {
    const orig = q.flush.bind(q);
    q.flush = () => { orig(); if (q.flushes >= count) resolve(); };
    if (q.flushes >= count) resolve();
  });
}

describe('ConsoleDevice (spec §7.2–7.3)', () => {
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
    for (const bad of ['', 'a\0b', 'log\u001b[2J', 'a\nb', 'del\u007f', 'c1\u009b', 'bidi\u202e', 'x\ufffd', 'n'.repeat(121)]) {
      expect(() => new ConsoleDevice({ ports: [bad] }), JSON.stringify(bad)).to.throw(ArgumentError);
    }
    // A lone surrogate has no UTF-8: it would go out as U+FFFD, a name other than the one given
    // (and two different ones as the same name).
    for (const bad of ['lone\ud800', '\udc00x', 'a\udfffb']) {
      expect(() => new ConsoleDevice({ ports: [bad] }), JSON.stringify(bad)).to.throw(ArgumentError, /surrogate/);
    }
    expect(new ConsoleDevice({ ports: ['pair \ud83d\ude00'] }).ports.length).to.equal(2);
    expect(new ConsoleDevice({ ports: ['my port', 'журнал'] }).ports.length).to.equal(3);
    expect(() => new ConsoleDevice({ ports: ['a'], maxNrPorts: 1 })).to.throw(ArgumentError);
    expect(() => new ConsoleDevice({ size: { cols: 0, rows: 1 } })).to.throw(ArgumentError);
    expect(() => new ConsoleDevice({ resizeOrder: 'rows' as never })).to.throw(ArgumentError, /resizeOrder/);
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
    const ctl = controlMessages;

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
      // SIZE negotiated too: cols/rows follow by a config update (DRIVER_OK's event + this one).
      expect([s.config.read(0, 2), s.config.read(2, 2)]).to.deep.equal([100, 40]);
      expect(s.configEvents).to.equal(2);

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

  });
});
