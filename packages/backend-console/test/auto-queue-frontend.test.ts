/**
 * Our own front-end (ConsoleDriver of @vshm/frontend-console on the real VirtioFrontend) against
 * the console's default queue size ('auto', src/queue-size.ts) at every region size: it comes up,
 * takes the whole offer where its buffers fit (OUT = 0: the §5.1 allocator, like Linux), and
 * carries more data both ways than one ring of buffers holds. With output sections (§5.2 isolated
 * layout) the offer still follows the R/W section; the driver takes what its own pools hold.
 */
import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { createLoopbackPair } from '../../transport/src/testing/loopback.js';
import type { IvshmemDevice } from '../../transport/src/ivshmem/device.js';
import { VirtioBackend } from '../../transport/src/virtio/backend.js';
import { VirtioFrontend } from '../../transport/src/virtio/frontend.js';
import { ConsoleDriver, type ConsolePort as DriverPort } from '../../frontend-console/src/index.js';
import { ConsoleDevice } from '../src/device.js';
import { feed, sink } from './fixtures/console-streams.js';
import { until } from '../../transport/test/fixtures/until.js';

interface Rig {
  be: IvshmemDevice;
  feDev: IvshmemDevice;
  backend: VirtioBackend;
  frontend: VirtioFrontend;
}

const rigs: Rig[] = [];
const KIB = 1024;

/** Printable bytes with a position-dependent pattern, so reordering or loss shows. */
function pattern(n: number, seed: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(0x21 + ((i * 11 + seed) % 90));
  return s;
}

describe("our console front-end on the default queue size ('auto') at every region size", function () {
  this.timeout(60_000);
  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      await r.frontend.close();
      await r.backend.close();
      r.feDev.close();
      r.be.close();
    }
  });

  for (const [label, size, out, ports, offered, taken] of [
    ['-l 64K', 64 * KIB, 0, [], 8, 8],
    ['-l 128K', 128 * KIB, 0, [], 8, 8],
    ['-l 256K', 256 * KIB, 0, [], 16, 16],
    ['-l 1M', 1024 * KIB, 0, [], 64, 64],
    ['-l 4M', 4096 * KIB, 0, [], 256, 256],
    ['-l 64K, --port org.test.log', 64 * KIB, 0, ['org.test.log'], 1, 1],
    ['-l 128K, --port org.test.log', 128 * KIB, 0, ['org.test.log'], 2, 2],
    ['-l 256K, --port org.test.log', 256 * KIB, 0, ['org.test.log'], 4, 4],
    ['-l 1M, --port org.test.log', 1024 * KIB, 0, ['org.test.log'], 16, 16],
    ['-l 256K -o 64K (isolated)', 256 * KIB, 64 * KIB, [], 8, 8],
    ['-l 4M -o 1M (isolated)', 4096 * KIB, 1024 * KIB, [], 128, 128],
  ] as const) {
    it(`${label}: offered ${offered}, the driver takes ${taken}, data flows both ways`, async () => {
      const [be, feDev] = createLoopbackPair({ size, outputSectionSize: out, vectors: 3, protocol: 0x8003 });
      const device = new ConsoleDevice({ ports: [...ports], settleMs: 0 });
      const input = new PassThrough();
      const output = sink();
      device.port(0).attach(input, output.stream);
      const backend = new VirtioBackend(be, device);
      const driver = new ConsoleDriver();
      const frontend = new VirtioFrontend(feDev, driver);
      rigs.push({ be, feDev, backend, frontend });
      backend.start();
      await frontend.start();
      await until(() => driver.ready && device.active, 'the driver probed');
      const queues = frontend.session?.queues ?? [];
      expect(queues.length).to.equal(ports.length === 0 ? 2 : 2 * (ports.length + 1) + 2);
      expect(device.queueMaxSize(0, { rwSize: be.layout.rwSize, outputSectionSize: out, headerSize: 88 })).to.equal(offered);
      expect(queues.map((q) => q.size)).to.deep.equal(new Array<number>(queues.length).fill(taken));

      const port = driver.port(0) as DriverPort;
      const got: Buffer[] = [];
      port.on('data', (c: Buffer) => got.push(c));
      const text = pattern(3 * 64 * KIB, 1);
      port.write(text);
      await until(() => output.text().length === text.length, 'the driver output at the device');
      expect(output.text()).to.equal(text);
      const typed = pattern(taken * 4 * KIB + 5000, 2); // more than one ring of 4 KiB receive buffers
      await feed(input, device.port(0), typed);
      await until(() => Buffer.concat(got).length === typed.length, 'all input at the driver');
      expect(Buffer.concat(got).toString('latin1')).to.equal(typed);
    });
  }
});
