/**
 * The package's five doors (package.json `exports`), loaded the way a user loads them — by
 * package name, from the built output: '.' offers the public API only (pinned below, ≤ 35
 * runtime names), './cli' the CLI kit, './ring' runs a ring over a plain ArrayBuffer with no
 * ivshmem, './testing' holds the test kit, './inspect' the wire-format files for read-only
 * decoding. Product code (packages' and examples' src/) never imports './testing'.
 */
import { expect } from 'chai';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pub from '@vshm/transport';
import * as ring from '@vshm/transport/ring';
import * as testing from '@vshm/transport/testing';
import * as inspect from '@vshm/transport/inspect';
import * as cli from '@vshm/transport/cli';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Every .ts/.mjs/.js file under `dir` (recursive), skipping node_modules and dist. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist') continue;
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (/\.(ts|mjs|js)$/.test(name)) out.push(p);
  }
  return out;
}

describe('@vshm/transport entry points', () => {
  it("'.' exports the public API and nothing of the test kit or the ring engine", () => {
    const names = Object.keys(pub).sort();
    expect(names.length).to.be.at.most(35);
    expect(names).to.include.members([
      'VshmError', 'ArgumentError', 'ProtocolError', 'LayoutError', 'RingError', 'TransportError', 'ServerError',
      'RingErrorCode', 'openBackend', 'openFrontend', 'VirtioBackend', 'VirtioFrontend', 'IvshmemPeer',
      'IvshmemServer', 'DEFAULT_SOCKET_PATH', 'PEER_STATE_READY', 'PEER_STATE_RESET', 'PROTOCOL_VIRTIO', 'DEFAULT_SPIN_US',
    ]);
    for (const internal of ['createLoopbackPair', 'MockDriver', 'MockDevice', 'Prng', 'runHostileDeviceCase', 'DeviceQueue', 'DriverQueue', 'MemoryView', 'FrontendQueue', 'FrontendSession']) {
      expect(names, internal).to.not.include(internal);
    }
  });

  it("'./cli' exports the CLI kit, and '.' none of it", () => {
    const kit = ['UsageError', 'acceptWarner', 'asyncTerminalOutput', 'describeIoError', 'deviceCapabilities', 'errnoText', 'exitAfterOutput', 'exitOnUncaughtException', 'onTerminationSignal', 'parseCommandLine', 'parseOrUsage', 'printDiagnostic', 'printable'];
    expect(Object.keys(cli).sort()).to.deep.equal(kit);
    for (const name of kit) expect(Object.keys(pub), name).to.not.include(name);
    // The kit's error is one of the family: a command's catch tells it by class or by code.
    const err = new cli.UsageError('bad');
    expect(err).to.be.instanceOf(pub.ArgumentError).and.instanceOf(pub.VshmError);
    expect(err.lineFor('vshm-x')).to.equal('vshm-x: bad (try --help)');
    expect(cli.printable('a\x1b[2Jb')).to.equal('a\\x1b[2Jb');
  });

  it("'./testing' exports the kit", () => {
    expect(Object.keys(testing).sort()).to.deep.equal([
      'HostileAssertionError', 'MockDevice', 'MockDriver', 'Prng', 'createLoopbackPair', 'runHostileDeviceCase', 'runHostileDriverCase',
      'runQueueOpsCase', 'simulateServerGone',
    ]);
    const [a, b] = testing.createLoopbackPair();
    expect([a.id, b.id]).to.deep.equal([0, 1]);
    a.close();
    b.close();
  });

  it("'./ring' moves a chain over a plain ArrayBuffer, no ivshmem involved", () => {
    const mem = new ring.MemoryView(new ArrayBuffer(65536));
    const q = ring.packedRingAddresses(8, 0x100);
    const policy = ring.createAccessPolicy({ rwSize: 65536, outputSectionSize: 0, ownPeer: 0 });
    const dev = new ring.DeviceQueue({ ...q, memory: mem, policy, eventIdx: false, indirect: false });
    const drv = new ring.DriverQueue<string>({ ...q, memory: mem, eventIdx: false, indirect: false });
    mem.u8.set([1, 2, 3], 0x2000);
    expect(drv.add1(0x2000, 3, false, 'req')).to.be.at.least(0);
    drv.publish();
    const chain = dev.pop()!;
    const got = new Uint8Array(3);
    expect(chain.read(got)).to.equal(3);
    expect([...got]).to.deep.equal([1, 2, 3]);
    dev.push(chain.head, 0);
    dev.publish();
    const done: string[] = [];
    drv.collect((token) => done.push(token));
    expect(done).to.deep.equal(['req']);
  });

  it("'./inspect' offers the wire-format files an inspector decodes with, and no writer", () => {
    const names = Object.keys(inspect);
    expect(names).to.include.members([
      'SharedMemoryLayout', 'STATE_TABLE_SIZE', 'HeaderView', 'HDR_QUEUE_SEL', 'HDR_DEVICE_STATUS', 'SplitRingLayout',
      'readStatusFile', 'listStatusFiles', 'statusDirectory', 'STATUS_FORMAT', 'PEER_STATE_READY',
    ]);
    for (const writer of ['publishStatus', 'VirtioBackend', 'VirtioFrontend', 'IvshmemPeer', 'DeviceQueue', 'DriverQueue']) {
      expect(names, writer).to.not.include(writer);
    }
  });

  it('product code never imports the testing subpath', () => {
    const product = ['packages', 'examples'].flatMap((top) =>
      readdirSync(path.join(ROOT, top))
        .map((p) => path.join(ROOT, top, p, 'src'))
        .filter((d) => {
          try {
            return statSync(d).isDirectory();
          } catch {
            return false;
          }
        }),
    );
    expect(product.length).to.be.at.least(5);
    const offenders = product.flatMap(sources).filter((f) => /['"]@vshm\/transport\/testing['"]|\/testing\/(index|loopback|mock-\w+|hostile|prng)\.js['"]/.test(readFileSync(f, 'utf8')));
    expect(offenders.map((f) => path.relative(ROOT, f))).to.deep.equal([]);
  });
});
