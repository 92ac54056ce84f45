/**
 * The rng device and driver in one process over the public loopback pair (no server): request
 * splitting, partial completions, reads waiting for a device, and failure when the device goes.
 */
import { expect } from 'chai';
import {
  VirtioBackend,
  VirtioFrontend,
  type DeviceQueueHandle,
  type DeviceSession,
  type IvshmemDevice,
  type VirtioDeviceOps,
} from '@vshm/transport';
import { createLoopbackPair } from '@vshm/transport/testing';
import { RngDevice, RngDriver } from '../src/index.js';

/** An rng-shaped device (id 4, one queue of 8) whose queue is served by `onAvailable`. */
function scriptedRng(onAvailable: (q: DeviceQueueHandle) => void): VirtioDeviceOps {
  return {
    deviceId: 4,
    features: 0n,
    configSize: 0,
    configFields: [],
    queueCount: () => 1,
    queueMaxSize: () => 8,
    initConfig: () => undefined,
    deactivate: () => undefined,
    activate(s: DeviceSession) {
      const q = s.queues[0]!;
      q.onAvailable = () => onAvailable(q);
    },
  };
}

describe('virtio-rng device and driver (loopback)', () => {
  let be: IvshmemDevice;
  let feDev: IvshmemDevice;
  let backend: VirtioBackend;
  let frontend: VirtioFrontend;

  function link(device: VirtioDeviceOps, driver: RngDriver, size = 65536): void {
    [be, feDev] = createLoopbackPair({ protocol: 0x8004, size, vectors: 2 });
    backend = new VirtioBackend(be, device);
    backend.start();
    frontend = new VirtioFrontend(feDev, driver, { readyPollMs: 5 });
    frontend.start().catch(() => undefined);
  }

  afterEach(async () => {
    await frontend.close();
    await backend.close();
    be.close();
    feDev.close();
  });

  it('reads exact lengths, split into requests of maxRequest bytes', async () => {
    let calls = 0;
    const device = new RngDevice({
      fill: (b) => {
        calls++;
        for (let i = 0; i < b.length; i++) b[i] = (i * 7 + calls) & 0xff || 1;
      },
    });
    const rng = new RngDriver({ maxRequest: 100 });
    link(device, rng);
    const a = await rng.read(1000);
    expect(a.length).to.equal(1000);
    expect(a.every((x) => x !== 0)).to.equal(true);
    expect(device.stats.requests).to.equal(10);
    expect(device.stats.bytes).to.equal(1000);
    expect((await rng.read(0)).length).to.equal(0);
  });

  it('reads wait for the device, and concurrent reads all complete', async () => {
    const rng = new RngDriver({ maxRequest: 512 });
    const early = rng.read(64); // before any device exists
    link(new RngDevice(), rng, 16384);
    const many = await Promise.all([early, ...Array.from({ length: 20 }, (_, i) => rng.read(100 + i * 50))]);
    expect(many.map((b) => b.length)).to.deep.equal([64, ...Array.from({ length: 20 }, (_, i) => 100 + i * 50)]);
    expect(new Set(many.map((b) => b.toString('hex'))).size).to.equal(21);
  });

  it('a request larger than the shared memory can ever hold is split until it fits, not left waiting forever', async () => {
    // 64 KiB of memory cannot hold a 1 MiB device-writable buffer: add() refuses it with nothing
    // in flight, so no completion would ever retry it.
    const device = new RngDevice();
    const rng = new RngDriver({ maxRequest: 1 << 20 });
    link(device, rng, 65536);
    const b = await rng.read(200_000);
    expect(b.length).to.equal(200_000);
    expect(device.stats.bytes).to.equal(200_000);
    expect((await rng.read(7)).length).to.equal(7);
  });

  it('asks again for the rest when the device returns fewer bytes', async () => {
    const device = scriptedRng((q) => {
      for (let c = q.pop(); c !== null; c = q.pop()) {
        const n = Math.max(1, c.writableLength >> 1); // half of what was asked
        q.push(c, c.write(new Uint8Array(n).fill(0xab)));
      }
      q.flush();
    });
    const rng = new RngDriver();
    link(device, rng);
    const b = await rng.read(100);
    expect(b.length).to.equal(100);
    expect(b.every((x) => x === 0xab)).to.equal(true);
  });

  it('rejects a read whose requests were in flight when the device went away (§8 item 35)', async () => {
    let taken = 0;
    const device = scriptedRng((q) => {
      while (q.pop() !== null) taken++; // takes requests, never answers
    });
    const rng = new RngDriver();
    link(device, rng);
    await rng.whenLive();
    const p = rng.read(32).then(
      () => null,
      (e: Error) => e,
    );
    for (let i = 0; i < 1000 && taken === 0; i++) await new Promise((r) => setImmediate(r));
    expect(taken).to.equal(1);
    await backend.close();
    const err = await p;
    expect(err).to.be.instanceOf(Error);
  });
});
