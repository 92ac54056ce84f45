/**
 * The rng device tested the way a user tests a device of their own, from the docs alone: the
 * public `@vshm/transport` (VirtioBackend, VirtioFrontend) over the public test kit's loopback
 * pair (`@vshm/transport/testing`), with a throw-away driver written for the test instead of the
 * example's RngDriver. It reaches what RngDriver never posts: a chain of two writable segments
 * larger than the device's fill scratch, and a chain with no writable buffer at all.
 */
import { expect } from 'chai';
import { VirtioBackend, VirtioFrontend, type DriverQueueHandle, type DriverSession, type VirtioDriverOps } from '@vshm/transport';
import { createLoopbackPair } from '@vshm/transport/testing';
import { RngDevice } from '../src/index.js';

interface Answer {
  data: Uint8Array;
  segments: Uint8Array[];
}

/** A minimal rng driver: posts what the test asks for, one promise per request. */
class TestDriver implements VirtioDriverOps {
  readonly deviceId = 4;
  readonly features = 0n;
  queue: DriverQueueHandle<(a: Answer) => void> | null = null;
  private live: (() => void) | null = null;
  readonly ready = new Promise<void>((r) => (this.live = r));

  queueCount(): number {
    return 1;
  }

  probe(session: DriverSession): void {
    const q = session.queues[0] as DriverQueueHandle<(a: Answer) => void>;
    // data and segments are views valid only during the call: copy them.
    q.onUsed = (done, data, segments) => done({ data: data.slice(), segments: segments.map((s) => s.slice()) });
    q.onFailed = (_done, err) => {
      throw err;
    };
    this.queue = q;
    this.live?.();
  }

  remove(): void {
    this.queue = null;
  }

  /** Post one request (`in_` as for addSgs) and kick; resolves with what the device wrote. */
  request(out: Uint8Array[], in_: number[]): Promise<Answer> {
    const q = this.queue!;
    return new Promise((resolve) => {
      expect(q.addSgs!(out, in_, resolve), 'posted').to.equal(true);
      q.kick();
    });
  }
}

describe('virtio-rng device, tested through the public test kit', () => {
  let calls: number[];
  let device: RngDevice;
  let driver: TestDriver;
  let backend: VirtioBackend;
  let frontend: VirtioFrontend;
  let close: () => void;

  beforeEach(async () => {
    calls = [];
    let next = 0;
    // A counting source: byte k of the whole stream is k & 0xff, so gaps and overlaps show.
    device = new RngDevice({
      fill: (b) => {
        calls.push(b.length);
        for (let i = 0; i < b.length; i++) b[i] = next++ & 0xff;
      },
    });
    const [be, fe] = createLoopbackPair({ protocol: 0x8004, size: 256 * 1024, vectors: 2 });
    backend = new VirtioBackend(be, device);
    backend.start();
    driver = new TestDriver();
    frontend = new VirtioFrontend(fe, driver, { readyPollMs: 5 });
    frontend.start().catch(() => undefined);
    close = () => {
      be.close();
      fe.close();
    };
    await driver.ready;
  });

  afterEach(async () => {
    await frontend.close();
    await backend.close();
    close();
  });

  it('fills a two-segment chain larger than its scratch completely, in order, across the segment boundary', async () => {
    const a = await driver.request([], [20_000, 30_000]);
    expect(a.data.length).to.equal(20_000); // data is segments[0]
    expect(a.segments.map((s) => s.length)).to.deep.equal([20_000, 30_000]);
    const all = new Uint8Array(50_000);
    all.set(a.segments[0], 0);
    all.set(a.segments[1], 20_000);
    const wrong = all.findIndex((x, k) => x !== (k & 0xff));
    expect(wrong, 'first byte out of sequence').to.equal(-1);
    expect(calls).to.deep.equal([16384, 16384, 16384, 848]); // scratch-sized rounds, then the rest
    expect(device.stats).to.include({ requests: 1, bytes: 50_000, sessions: 1 });
  });

  it('returns a chain without device-writable buffers with 0 bytes, writing nothing', async () => {
    const a = await driver.request([new Uint8Array([1, 2, 3])], []);
    expect(a.data.length).to.equal(0);
    expect(a.segments).to.deep.equal([]);
    expect(calls).to.deep.equal([]);
    expect(device.stats).to.include({ requests: 1, bytes: 0 });
    // The queue goes on serving.
    const b = await driver.request([], [5]);
    expect([...b.data]).to.deep.equal([0, 1, 2, 3, 4]);
  });

  it('records the end of the session when the driver resets the device', async () => {
    await driver.request([], [1]);
    await frontend.close(); // orderly: device_status := 0
    for (let i = 0; i < 1000 && device.stats.lastEnd === null; i++) await new Promise((r) => setImmediate(r));
    expect(device.stats.lastEnd).to.equal('driver-reset');
  });
});
