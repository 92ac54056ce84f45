/**
 * ConsoleDriver end to end in one process: the real VirtioFrontend ↔ VirtioBackend over the
 * loopback pair, with a scriptable test console device (fixtures/test-console-device.ts).
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { ConsoleControlEvent, encodeConsoleControl } from 'virtio-spec-types';
import { ConsoleDriver, DEFAULT_RX_BUFFER, type ConsoleError, type ConsolePort } from '../src/index.js';
import type { DriverSession, VirtioDriverOps } from '@vshm/transport';
import { VirtioBackend, VirtioFrontend, closeRigs, createLoopbackPair, restartBackend, startRig } from './fixtures/harness.js';
import { TestConsoleDevice } from './fixtures/test-console-device.js';
import { until } from '../../transport/test/fixtures/until.js';

/** Collect everything a port emits. */
function collect(port: ConsolePort): { data: () => Buffer } {
  const chunks: Buffer[] = [];
  port.on('data', (c: Buffer) => chunks.push(c));
  return { data: () => Buffer.concat(chunks) };
}

describe('ConsoleDriver over the loopback (real transport)', function () {
  afterEach(closeRigs);

  it('moves data both ways through the Duplex of port 0', async () => {
    const rig = await startRig();
    const port = rig.driver.port(0) as ConsolePort;
    const got = collect(port);
    const toDevice = randomBytes(100_000);
    const toDriver = randomBytes(50_000);
    port.write(toDevice);
    rig.device.send(0, toDriver);
    await until(() => rig.device.output[0].length === toDevice.length && got.data().length === toDriver.length, 'both directions');
    expect(rig.device.output[0].equals(toDevice)).to.equal(true);
    expect(got.data().equals(toDriver)).to.equal(true);
  });

  it('applies backpressure: a reader that does not read stops the device, reading resumes it', async () => {
    const rig = await startRig({}, { highWaterMark: 1024 });
    const port = rig.driver.port(0) as ConsolePort;
    const payload = randomBytes(256 * 1024);
    rig.device.send(0, payload);
    // Nobody reads: the stream fills to its highWaterMark, then receive buffers stop coming back.
    await until(() => port.readableLength >= 1024, 'readable buffer filled');
    // Let every interrupt in flight land: at most the 8 receive buffers posted before push()
    // returned false (DEFAULT_RX_BUFFER each) can still arrive — the rest stays in the device.
    for (let i = 0; i < 100; i++) await new Promise((r) => setImmediate(r));
    expect(port.readableLength).to.be.at.most(1024 + 2 * 8 * DEFAULT_RX_BUFFER);
    expect(port.readableLength).to.be.below(payload.length);
    const got = collect(port); // flowing again
    await until(() => got.data().length === payload.length, 'all input after resuming');
    expect(got.data().equals(payload)).to.equal(true);
  });

  it('write callbacks wait for the ring: a held transmitq holds the writer back', async () => {
    const rig = await startRig({}, { highWaterMark: 4096 });
    const port = rig.driver.port(0) as ConsolePort;
    rig.device.holdTransmit = true;
    const big = randomBytes(256 * 1024);
    const ok = port.write(big);
    expect(ok).to.equal(false);
    await until(() => rig.device.held.length === 8, 'ring full of held chains');
    expect(port.writableLength).to.be.above(0); // not accepted yet
    rig.device.holdTransmit = false;
    const drained = once(port, 'drain');
    rig.device.releaseHeld();
    await drained;
    await until(() => rig.device.output[0].length === big.length, 'all output');
    expect(rig.device.output[0].equals(big)).to.equal(true);
  });

  it('follows config SIZE changes (no MULTIPORT)', async () => {
    const rig = await startRig({ cols: 80, rows: 25 });
    expect(rig.driver.size).to.deep.equal({ cols: 80, rows: 25 });
    const resized = once(rig.driver, 'resize');
    rig.device.resize(120, 40);
    expect((await resized)[0]).to.deep.equal({ cols: 120, rows: 40 });
  });

  it('reads cols and rows of one config update: a resize landing between the two field reads is not torn (§4.8)', async () => {
    const [be, fe] = createLoopbackPair();
    const device = new TestConsoleDevice({ cols: 80, rows: 25 });
    const backend = new VirtioBackend(be, device);
    const driver = new ConsoleDriver();
    // After each field read while armed, the device resizes once more: the real back-end's
    // update lands between the driver's two reads (the session is wrapped, the transport is not).
    const updates: (() => void)[] = [];
    const after = (v: number): number => {
      updates.shift()?.();
      return v;
    };
    const wrapped = new WeakMap<DriverSession, DriverSession>();
    const wrap = (s: DriverSession): DriverSession => {
      let w = wrapped.get(s);
      if (w === undefined) {
        w = {
          features: s.features,
          queues: s.queues,
          readConfig: (o, width) => after(s.readConfig(o, width)),
          readConfigMany: (fn) => s.readConfigMany((read) => fn((o, width) => after(read(o, width)))),
          writeConfig: (o, width, v) => s.writeConfig(o, width, v),
        };
        wrapped.set(s, w);
      }
      return w;
    };
    const ops: VirtioDriverOps = {
      deviceId: driver.deviceId,
      features: driver.features,
      queueCount: (f, c) => driver.queueCount(f, c),
      queueBuffers: (i, n, f) => driver.queueBuffers(i, n, f),
      probe: (s) => driver.probe(wrap(s)),
      remove: (e) => driver.remove(e),
      configChanged: (s) => driver.configChanged(wrap(s)),
    };
    const frontend = new VirtioFrontend(fe, ops);
    try {
      backend.start();
      await frontend.start();
      expect(driver.size).to.deep.equal({ cols: 80, rows: 25 });
      const sizes: { cols: number; rows: number }[] = [];
      driver.on('resize', (sz: { cols: number; rows: number }) => sizes.push(sz));
      updates.push(() => device.resize(132, 50)); // after the driver read cols of the first resize
      device.resize(100, 30);
      await until(() => driver.size?.cols === 132 && driver.size.rows === 50, 'the last size');
      for (const sz of sizes) expect([JSON.stringify({ cols: 100, rows: 30 }), JSON.stringify({ cols: 132, rows: 50 })]).to.include(JSON.stringify(sz));
    } finally {
      await frontend.close();
      await backend.close();
      fe.close();
      be.close();
    }
  });

  it('MULTIPORT: 3 named ports, RESIZE, data on every port', async () => {
    const names = ['console', 'org.vshm.log', 'org.vshm.data'];
    const rig = await startRig({ ports: names });
    const d = rig.driver;
    const ports = await Promise.all(names.map((n) => d.waitForPort(n)));
    expect(ports.map((p) => p.id)).to.deep.equal([0, 1, 2]);
    expect(d.consolePort).to.equal(ports[0]);
    const resized = once(d, 'resize');
    rig.device.resize(100, 30);
    expect((await resized)[0]).to.deep.equal({ cols: 100, rows: 30 });
    const sinks = ports.map(collect);
    for (const p of ports) p.write(Buffer.from(`hello from ${p.portName}`));
    for (let i = 0; i < 3; i++) rig.device.send(i, Buffer.from(`to ${names[i]}`));
    await until(() => sinks.every((s, i) => s.data().toString() === `to ${names[i]}`), 'input on every port');
    await until(() => names.every((n, i) => rig.device.output[i].toString() === `hello from ${n}`), 'output on every port');
    for (let i = 0; i < 3; i++) {
      expect(rig.device.controlIn).to.deep.include({ id: i, event: ConsoleControlEvent.PORT_READY, value: 1 });
      expect(rig.device.driverOpen.has(i)).to.equal(true);
    }
  });

  it('emergency write reaches the device configWritten', async () => {
    const rig = await startRig({ emergWrite: true });
    const got = once(rig.device, 'emergency');
    await rig.driver.emergencyWrite(0x41);
    expect((await got)[0]).to.equal(0x41);
    expect(rig.device.emergency).to.deep.equal([0x41]);
  });

  it('recovery: a back-end dropped mid-transfer — pending data arrives once, in order, same streams', async () => {
    const rig = await startRig({}, { txPieceSize: 512 });
    const port = rig.driver.port(0) as ConsolePort;
    const got = collect(port);
    const payload = randomBytes(200_000);
    rig.device.send(0, Buffer.from('before'));
    await until(() => got.data().toString() === 'before', 'input before the restart');

    // The first back-end consumes a prefix, then holds chains and dies without using them.
    let consumedAtDeath = 0;
    rig.device.on('output', () => {
      if (rig.device.output[0].length >= 20_000) rig.device.holdTransmit = true;
    });
    const lost = once(rig.driver, 'lost');
    port.write(payload);
    await until(() => rig.device.held.length > 0, 'held transmit chains');
    consumedAtDeath = rig.device.output[0].length;
    const firstOutput = rig.device.output[0];
    expect(consumedAtDeath).to.be.below(payload.length);
    await rig.backend.close(); // State := RESET: the front-end sees the back-end leave READY
    await lost;
    expect(port.attached).to.equal(false);

    const ready = once(rig.driver, 'ready');
    restartBackend(rig);
    await ready;
    expect(rig.driver.port(0)).to.equal(port); // same stream object
    await until(() => firstOutput.length + rig.device.output[0].length === payload.length, 'the rest after recovery');
    expect(Buffer.concat([firstOutput, rig.device.output[0]]).equals(payload)).to.equal(true);
    rig.device.send(0, Buffer.from('after'));
    await until(() => got.data().toString() === 'beforeafter', 'input after the restart');
  });

  it('MULTIPORT recovery: the new back-end re-adds the ports, the same streams carry data', async () => {
    const names = ['console', 'org.vshm.a', 'org.vshm.b'];
    const rig = await startRig({ ports: names });
    const before = await Promise.all(names.map((n) => rig.driver.waitForPort(n)));
    const sink = collect(before[2]);
    const lost = once(rig.driver, 'lost');
    await rig.backend.close();
    await lost;
    before[2].write(Buffer.from('held while gone'));
    restartBackend(rig, { ports: names });
    await until(() => before.every((p) => p.attached), 'ports re-attached');
    expect(names.map((_, i) => rig.driver.port(i))).to.deep.equal(before); // same objects
    await until(() => rig.device.output[2].toString() === 'held while gone', 'held write on the new back-end');
    rig.device.send(2, Buffer.from('again'));
    await until(() => sink.data().toString() === 'again', 'input on port 2 after recovery');
  });

  it('DEVICE_REMOVE ends the port stream; writes then fail with VSHM_ERR_PORT_REMOVED', async () => {
    const rig = await startRig({ ports: ['console', 'org.vshm.gone'] });
    const port = await rig.driver.waitForPort('org.vshm.gone');
    port.resume();
    const ended = once(port, 'end');
    rig.device.control(encodeConsoleControl(1, ConsoleControlEvent.DEVICE_REMOVE, 0));
    await ended;
    expect(rig.driver.port(1)).to.equal(undefined);
    const errored = once(port, 'error'); // Writable semantics: a failed write errors the stream
    port.write(Buffer.from('x'));
    expect(((await errored)[0] as ConsoleError).code).to.equal('VSHM_ERR_PORT_REMOVED');
  });
});
