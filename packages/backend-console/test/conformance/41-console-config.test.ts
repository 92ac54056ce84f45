/**
 * §8 item 41: config fields sit at 0x4C, 0x4E, 0x50, 0x54 (config offsets 0, 2, 4, 8 of the config
 * space at header offset 0x4C, §4.2, §7.2); DRIVER_OK fires a config event. The device's field
 * table and a FakeSession, then the real VirtioBackend ↔ VirtioFrontend over the loopback pair.
 */
import { expect } from 'chai';
import { ConsoleFeature, featureBit, VirtioDeviceId } from 'virtio-spec-types';
import { ConsoleDevice } from '../../src/device.js';
import { FakeConfig, FakeSession } from '../fixtures/fake-session.js';
import { closeRigs, F, MiniDriver, startRig } from '../fixtures/loopback-rig.js';
import { until } from '../../../transport/test/fixtures/until.js';

const SIZE = featureBit(ConsoleFeature.SIZE);

describe('§8 item 41: config fields at 0x4C, 0x4E, 0x50, 0x54; DRIVER_OK fires a config event', function () {
  afterEach(closeRigs);

  it('offers SIZE iff the size is known, two queues of size 8 and Jailhouse config defaults', () => {
    const plain = new ConsoleDevice();
    expect(plain.deviceId).to.equal(VirtioDeviceId.CONSOLE);
    expect(plain.features).to.equal(0n);
    expect(plain.queueCount(0n)).to.equal(2);
    // The reference region of §7.1 (-l 64K, OUT 0): 8, as Jailhouse offers.
    expect(plain.queueMaxSize(0, { rwSize: 65536 - 4096, outputSectionSize: 0, headerSize: 88 })).to.equal(8);
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

  it('raises a config event on DRIVER_OK', () => {
    const d = new ConsoleDevice({ size: { cols: 80, rows: 24 } });
    const s = new FakeSession(SIZE, 2);
    d.activate(s);
    expect(s.configEvents).to.equal(1);
    d.deactivate('shutdown');
  });

  it('item 41: over the real transport the fields sit at header 0x4C, 0x4E, 0x50, 0x54 and DRIVER_OK fires a config event', async () => {
    const driver = new MiniDriver(F.SIZE | F.MULTIPORT | F.EMERG_WRITE);
    const rig = await startRig({ size: { cols: 100, rows: 30 }, ports: ['a', 'b'], emergWrite: true }, driver);
    await until(() => driver.configEvents >= 1, 'config event on DRIVER_OK');
    const hdr = new DataView(rig.be.window);
    expect([hdr.getUint16(0x4c, true), hdr.getUint16(0x4e, true), hdr.getUint32(0x50, true), hdr.getUint32(0x54, true)])
      .to.deep.equal([100, 30, 3, 0]);
    const s = driver.session!;
    expect([s.readConfig(0, 2), s.readConfig(2, 2), s.readConfig(4, 4)]).to.deep.equal([100, 30, 3]);
  });
});
