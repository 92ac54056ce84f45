/**
 * ConsoleDevice end to end in one process: the real VirtioBackend ↔ VirtioFrontend over the
 * loopback pair, with a minimal driver (fixtures/loopback-rig.ts).
 */
import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { randomBytes } from 'node:crypto';
import {
  ConsoleControlEvent as E, CONSOLE_BAD_ID, decodeConsoleControl, decodeConsolePortName, encodeConsoleControl,
} from 'virtio-spec-types';
import { closeRigs, F, MiniDriver, replaceFrontend, startRig } from './fixtures/loopback-rig.js';
import { until } from '../../transport/test/fixtures/until.js';

function sink(): { stream: PassThrough; data: () => Buffer } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, data: () => Buffer.concat(chunks) };
}

describe('ConsoleDevice over the loopback (real transport)', function () {
  afterEach(closeRigs);

  it('moves bytes both ways, gates input on the first transmit buffer, offers SIZE with a config event', async () => {
    const input = new PassThrough();
    const out = sink();
    const driver = new MiniDriver(F.SIZE | F.MULTIPORT | F.EMERG_WRITE);
    const rig = await startRig({ size: { cols: 80, rows: 24 }, settleMs: 60_000 }, driver);
    rig.device.port(0).attach(input, out.stream);
    const s = driver.session!;
    expect(s.features & (F.SIZE | F.MULTIPORT | F.EMERG_WRITE)).to.equal(F.SIZE); // only SIZE offered
    expect([s.readConfig(0, 2), s.readConfig(2, 2), s.readConfig(4, 4)]).to.deep.equal([80, 24, 0]);
    await until(() => driver.configEvents >= 1, 'config event on DRIVER_OK');

    input.write('early');
    await until(() => rig.device.port(0).buffer.length === 5, 'input buffered');
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(driver.text(0)).to.equal(''); // the driver has not shown life yet

    driver.send(1, 'ping');
    await until(() => out.data().toString() === 'ping', 'transmit');
    await until(() => driver.text(0) === 'early', 'input after life');

    const big = randomBytes(20_000);
    input.write(big);
    await until(() => Buffer.concat(driver.chunks(0)).length === 5 + big.length, 'bulk input');
    expect(Buffer.concat(driver.chunks(0)).subarray(5).equals(big)).to.equal(true);
    expect(driver.chunks(0).every((c) => c.length >= 1 && c.length <= 64)).to.equal(true);
  });

  it('propagates a resize through config (generation rule + config event)', async () => {
    const driver = new MiniDriver(F.SIZE);
    const rig = await startRig({ size: { cols: 80, rows: 24 } }, driver);
    await until(() => driver.configEvents >= 1, 'config event on DRIVER_OK');
    const before = driver.configEvents;
    rig.device.resize(132, 50);
    await until(() => driver.configEvents > before, 'config event after resize');
    expect([driver.session!.readConfig(0, 2), driver.session!.readConfig(2, 2)]).to.deep.equal([132, 50]);
  });

  it('does not offer SIZE without a size; EMERG_WRITE of 0x41 outputs "A"', async () => {
    const out = sink();
    const driver = new MiniDriver(F.SIZE | F.EMERG_WRITE);
    const rig = await startRig({ emergWrite: true }, driver);
    rig.device.port(0).attach(null, out.stream);
    expect(driver.session!.features & (F.SIZE | F.EMERG_WRITE)).to.equal(F.EMERG_WRITE);
    await driver.session!.writeConfig(8, 4, 0x41);
    await until(() => out.data().toString() === 'A', 'emergency write');
  });

  it('runs the MULTIPORT handshake with 3 named ports and moves data on port 2 (queues 6/7)', async () => {
    const names = ['org.vshm.a', 'org.vshm.b', 'org.vshm.c'];
    const driver = new MiniDriver(F.MULTIPORT, 4, 128);
    // queueSize 8: this driver posts and sends without waiting for room, and on the rig's 64K
    // 'auto' would give a MULTIPORT device with four ports 1-entry queues.
    const rig = await startRig({ ports: names, size: { cols: 70, rows: 20 }, queueSize: 8 }, driver);
    const hostIn = new PassThrough();
    const hostOut = sink();
    rig.device.port(2).attach(hostIn, hostOut.stream);
    const s = driver.session!;
    expect(s.queues).to.have.length(10);
    expect(s.readConfig(4, 4)).to.equal(4);
    const ctl = (): Array<[number, number, number]> =>
      driver.chunks(2).map((c) => decodeConsoleControl(c)).map((m) => [m.id, m.event, m.value]);

    driver.send(3, encodeConsoleControl(CONSOLE_BAD_ID, E.DEVICE_READY, 1));
    await until(() => ctl().length === 4, 'DEVICE_ADD ×4');
    expect(ctl()).to.deep.equal([0, 1, 2, 3].map((id) => [id, E.DEVICE_ADD, 1]));
    for (const id of [0, 1, 2, 3]) driver.send(3, encodeConsoleControl(id, E.PORT_READY, 1));
    await until(() => ctl().length === 4 + 6, 'port announcements');
    expect(ctl().slice(4)).to.deep.equal([
      [0, E.CONSOLE_PORT, 1], [0, E.RESIZE, 0], [1, E.PORT_NAME, 1], [2, E.PORT_NAME, 1], [2, E.PORT_OPEN, 1], [3, E.PORT_NAME, 1]]);
    const named = driver.chunks(2).map((c) => decodeConsoleControl(c)).filter((m) => m.event === E.PORT_NAME);
    expect(named.map(decodeConsolePortName)).to.deep.equal(names);

    hostIn.write('for-port-2');
    await until(() => rig.device.port(2).buffer.length === 10, 'buffered until PORT_OPEN');
    driver.send(3, encodeConsoleControl(2, E.PORT_OPEN, 1));
    await until(() => driver.text(6) === 'for-port-2', 'port 2 input on queue 6');
    driver.send(7, 'from-port-2');
    await until(() => hostOut.data().toString() === 'from-port-2', 'port 2 output from queue 7');
    expect(driver.text(0)).to.equal('');
  });

  it('keeps input that was not delivered when the front-end goes away, for the next one', async () => {
    const input = new PassThrough();
    const driver1 = new MiniDriver(0n);
    const rig = await startRig({ settleMs: 0 }, driver1);
    rig.device.port(0).attach(input, null);
    input.write('one');
    await until(() => driver1.text(0) === 'one', 'first session input');
    await rig.frontend.close();
    await until(() => !rig.device.active, 'session ended');
    input.write('two');
    await until(() => rig.device.port(0).buffer.length === 3, 'buffered without a driver');
    const driver2 = new MiniDriver(0n);
    await replaceFrontend(rig, driver2);
    await until(() => driver2.text(0) === 'two', 'input in the next session');
    expect(driver1.text(0)).to.equal('one');
  });
});
