/**
 * `queueSize: 'auto'` (queue-size.ts): the size the console offers follows the R/W section so
 * that a Linux guest's page-sized receive buffers take at most about a quarter of it; 8 at the
 * reference -l 64K (§7.1), never below 8 without MULTIPORT (down to 1 with it), never above 256. The Linux-like guest proves the fit
 * (linux-frontend-compat.test.ts); this pins the table.
 */
import { expect } from 'chai';
import { ArgumentError } from '@vshm/transport';
import { ConsoleDevice } from '../src/device.js';
import { AUTO_QUEUE_MAX, AUTO_QUEUE_MIN, AUTO_QUEUE_MIN_MULTIPORT, autoQueueSize, linuxReceiveQueues } from '../src/queue-size.js';

const KIB = 1024;
/** The memory description of `-l SIZE -n 2 -o OUT` (§2: RW = S − 4096 − 2·OUT). */
function region(size: number, out = 0): { rwSize: number; outputSectionSize: number; headerSize: number } {
  return { rwSize: size - 4096 - 2 * out, outputSectionSize: out, headerSize: 88 };
}

describe("console queue size 'auto' (follows the R/W section)", () => {
  it('one receive queue (no MULTIPORT): 8 up to 256K, then one step per doubling, 256 from 4M on', () => {
    const table = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 32768].map((k) => [k, autoQueueSize(region(k * KIB), 1)]);
    expect(table).to.deep.equal([
      [64, 8], [128, 8], [256, 16], [512, 32], [1024, 64], [2048, 128], [4096, 256], [8192, 256], [32768, 256],
    ]);
  });

  it('the receive buffers take at most a quarter of the R/W section, rounded up to a page', () => {
    for (let rw = 8 * KIB; rw <= 64 * 1024 * KIB; rw += 3 * KIB + 512) {
      for (const k of [1, 2, 3, 9, 65]) {
        const n = autoQueueSize({ rwSize: rw }, k);
        expect(n).to.be.within(AUTO_QUEUE_MIN, AUTO_QUEUE_MAX);
        expect(n & (n - 1)).to.equal(0);
        // Above the floor: within budget, and the next power of two would not be.
        if (n > AUTO_QUEUE_MIN) expect(k * n * 4096).to.be.below(rw / 4 + 4096);
        if (n < AUTO_QUEUE_MAX) expect(k * 2 * n * 4096).to.be.above(rw / 4);
      }
    }
  });

  it('MULTIPORT counts the control receiveq and every port: fewer entries each', () => {
    expect(linuxReceiveQueues(false, 0)).to.equal(1);
    expect(linuxReceiveQueues(true, 2)).to.equal(3);
    // One named port (max_nr_ports 2): three receive queues share the quarter.
    const table = [64, 128, 256, 512, 1024, 2048, 4096, 16384].map((k) => [k, autoQueueSize(region(k * KIB), 3)]);
    expect(table).to.deep.equal([[64, 8], [128, 8], [256, 8], [512, 8], [1024, 16], [2048, 32], [4096, 64], [16384, 256]]);
  });

  it('MULTIPORT has no floor of 8: the quarter rule alone, down to 1 entry on the smallest regions', () => {
    const table = [64, 128, 256, 512, 1024, 4096].map((k) => [k, autoQueueSize(region(k * KIB), 3, AUTO_QUEUE_MIN_MULTIPORT)]);
    expect(table).to.deep.equal([[64, 1], [128, 2], [256, 4], [512, 8], [1024, 16], [4096, 64]]);
    // Four named ports (six receive queues) on 64K: still one entry each, never 0.
    expect(autoQueueSize(region(64 * KIB), 6, AUTO_QUEUE_MIN_MULTIPORT)).to.equal(1);
    const multi = new ConsoleDevice({ ports: ['a'] });
    expect([0, 2, 5].map((i) => multi.queueMaxSize(i, region(64 * KIB)))).to.deep.equal([1, 1, 1]);
    expect(multi.queueMaxSize(0, region(128 * KIB))).to.equal(2);
    expect(multi.queueMaxSize(0, region(512 * KIB))).to.equal(8);
    // MULTIPORT without named ports (max_nr_ports 1): two receive queues.
    expect(new ConsoleDevice({ multiport: true }).queueMaxSize(0, region(64 * KIB))).to.equal(2);
    // Without MULTIPORT the floor stays 8 (the reference -l 64K, where the rule alone gives 4).
    expect(new ConsoleDevice().queueMaxSize(0, region(64 * KIB))).to.equal(8);
  });

  it('output sections do not count: the R/W section is what a Linux guest allocates from', () => {
    expect(autoQueueSize(region(4096 * KIB, 1024 * KIB), 1)).to.equal(128); // RW 2044 KiB
    expect(autoQueueSize(region(256 * KIB, 64 * KIB), 1)).to.equal(8); // RW 124 KiB
  });

  it("ConsoleDevice: 'auto' by default, per region and port count; a fixed size is honoured", () => {
    const plain = new ConsoleDevice();
    expect(plain.queueSize).to.equal('auto');
    expect([0, 1].map((i) => plain.queueMaxSize(i, region(64 * KIB)))).to.deep.equal([8, 8]);
    expect([0, 1].map((i) => plain.queueMaxSize(i, region(1024 * KIB)))).to.deep.equal([64, 64]);
    expect(plain.queueMaxSize(0, region(4096 * KIB))).to.equal(256);
    expect(plain.queueMaxSize(0)).to.equal(8); // no memory given: the floor
    const multi = new ConsoleDevice({ ports: ['a'] }); // as `--port a`: max_nr_ports 2
    expect([0, 2, 5].map((i) => multi.queueMaxSize(i, region(4096 * KIB)))).to.deep.equal([64, 64, 64]);
    const fixed = new ConsoleDevice({ queueSize: 16 });
    expect(fixed.queueMaxSize(0, region(64 * KIB))).to.equal(16);
    expect(fixed.queueMaxSize(0, region(4096 * KIB))).to.equal(16);
    expect(new ConsoleDevice({ queueSize: 'auto' }).queueSize).to.equal('auto');
    for (const bad of [12, 0, 65536, 'Auto', '8', 8.5, -8]) {
      expect(() => new ConsoleDevice({ queueSize: bad as never })).to.throw(ArgumentError, /queueSize must be 'auto' or a power of two/);
    }
  });
});
