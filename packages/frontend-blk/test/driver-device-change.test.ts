/**
 * Found by the hostile-device fuzzer (driver-fuzz.test.ts, stop 27): a capacity a config event
 * reports counts whole logical blocks only, as at probe.
 */
import { expect } from 'chai';
import { blkRig, type BlkRig } from './fixtures/blk-loopback.js';
import { until } from '../../transport/test/fixtures/until.js';

const MiB = 1024 * 1024;

describe('BlockDriver: a capacity changed by a config event', () => {
  let rig: BlkRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  it('counts whole logical blocks only, as at probe (blk_size 4096)', async () => {
    rig = await blkRig({ capacity: MiB, indirect: true, blkSize: 4096 });
    const d = rig.driver;
    const seen: number[] = [];
    d.on('capacity', (n: number) => seen.push(n));
    rig.device.resize(2 * MiB + 512);
    await until(() => d.capacity !== MiB, 'the new capacity');
    expect(d.capacity).to.equal(2 * MiB);
    rig.device.resize(512);
    await until(() => d.capacity !== 2 * MiB, 'the new capacity');
    expect(d.capacity).to.equal(0);
    expect(seen).to.deep.equal([2 * MiB, 0]);
    expect(d.geometry!.capacity).to.equal(0);
  });
});
