/**
 * Completion runs (perf, issue 12 item 2): on queues that report the end of a run of completions
 * (`onUsedBatch`, as the transport's queues do) the port gathers the received bytes of the run
 * into one push, and re-posts and publishes receive buffers and waiting transmit pieces once, at
 * the run's end, synchronously — not from a microtask, which a run inside the transport's spin
 * would only reach after the spin.
 */
import { expect } from 'chai';
import { ConsoleDriver, type ConsolePort } from '../src/index.js';
import { RX_SLAB } from '../src/port.js';
import { FakeQueue, FakeSession, microtasks, type Posted } from './fixtures/fake-session.js';
import { closeRigs, startRig } from './fixtures/harness.js';
import { until } from '../../transport/test/fixtures/until.js';

/** A FakeQueue that, like the transport's queues, ends each run of completions with onUsedBatch. */
class RunQueue extends FakeQueue {
  onUsedBatch: (() => void) | null = null;

  /** The device completes the oldest requests, one per entry of `data`, seen in one run. */
  completeRun(data: readonly Uint8Array[]): void {
    for (const d of data) this.complete(d);
    this.onUsedBatch?.();
  }
}

/** A RunQueue with the transport's repost(): inside onUsed, the completing request goes back as it was. */
class RepostQueue extends RunQueue {
  reposts = 0;
  private completing: Posted | null = null;

  repost(): boolean {
    if (this.completing === null) return false;
    this.posted.push(this.completing); // the same request: same buffer, same token
    this.completing = null;
    this.reposts++;
    this.unkicked++;
    return true;
  }

  override complete(data: Uint8Array = new Uint8Array(0)): Posted {
    const p = this.posted[0];
    if (p === undefined) throw new Error(`queue ${this.index}: nothing in flight`);
    this.completing = p;
    try {
      return super.complete(data);
    } finally {
      this.completing = null;
    }
  }
}

class RunSession extends FakeSession {
  constructor(features: bigint, queueCount: number, queueSize = 8) {
    super(features, queueCount, queueSize);
    for (let i = 0; i < queueCount; i++) this.queues[i] = new RunQueue(i, queueSize);
  }
}

function probe(opts = {}): { d: ConsoleDriver; s: RunSession; rx: RunQueue; tx: RunQueue; port: ConsolePort } {
  const d = new ConsoleDriver({ features: 0n, ...opts });
  const s = new RunSession(0n, 2);
  d.probe(s);
  return { d, s, rx: s.queues[0] as RunQueue, tx: s.queues[1] as RunQueue, port: d.consolePort };
}

describe('console port: completion runs', () => {
  afterEach(closeRigs);

  it('pushes the bytes of one receive run as one chunk, in order', async () => {
    const { rx, port } = probe({ rxBufferSize: 4096 });
    await microtasks();
    const chunks: Buffer[] = [];
    port.on('data', (c: Buffer) => chunks.push(c));
    const parts = [0, 1, 2].map((i) => Buffer.alloc(4096, 0x41 + i));
    rx.completeRun(parts);
    await microtasks();
    expect(chunks.length).to.equal(1);
    expect(chunks[0].equals(Buffer.concat(parts))).to.equal(true);
  });

  it('re-posts and publishes the receive buffers of a run at its end, before any microtask', async () => {
    const { rx } = probe();
    await microtasks();
    expect(rx.inFlight).to.equal(8);
    const kicks = rx.kicks;
    rx.completeRun([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]);
    // Synchronously: the three buffers are back and published by one kick.
    expect(rx.inFlight).to.equal(8);
    expect(rx.unkicked).to.equal(0);
    expect(rx.kicks).to.equal(kicks + 1);
  });

  it('re-posts each receive buffer in place (repost) instead of adding a new one, one kick per run', async () => {
    const d = new ConsoleDriver({ features: 0n, rxBufferSize: 4096 });
    const s = new RunSession(0n, 2);
    const rx = new RepostQueue(0, 8);
    s.queues[0] = rx;
    d.probe(s);
    await microtasks();
    const chunks: Buffer[] = [];
    d.consolePort.on('data', (c: Buffer) => chunks.push(c));
    await microtasks(); // flowing
    expect(rx.history.length).to.equal(8);
    const kicks = rx.kicks;
    const parts = [0, 1, 2, 3, 4].map((i) => Buffer.alloc(4096, 0x61 + i));
    rx.completeRun(parts);
    expect(rx.reposts).to.equal(5);
    expect(rx.history.length).to.equal(8); // no add(): the completed buffers went back as they were
    expect(rx.inFlight).to.equal(8);
    expect(rx.unkicked).to.equal(0);
    expect(rx.kicks).to.equal(kicks + 1);
    await microtasks();
    expect(Buffer.concat(chunks).equals(Buffer.concat(parts))).to.equal(true);
  });

  it('keeps re-posted buffers unpublished while the consumer pushes back, until it reads again', async () => {
    const d = new ConsoleDriver({ features: 0n, rxBufferSize: 4096, highWaterMark: 4096 });
    const s = new RunSession(0n, 2);
    const rx = new RepostQueue(0, 8);
    s.queues[0] = rx;
    d.probe(s);
    await microtasks();
    const port = d.consolePort;
    const kicks = rx.kicks;
    // Nobody reads: the run's push goes past the readable side's highWaterMark.
    rx.completeRun(Array.from({ length: 8 }, () => Buffer.alloc(4096, 0x7a)));
    // Re-posted until the first full slab was pushed past the highWaterMark, freed after that.
    const reposted = rx.reposts;
    expect(reposted).to.be.within(1, 7);
    expect(rx.inFlight).to.equal(reposted);
    expect(rx.unkicked).to.equal(reposted); // back on the ring, but the device is not shown them
    expect(rx.kicks).to.equal(kicks);
    let got = 0;
    port.on('data', (c: Buffer) => (got += c.length));
    await until(() => got === 8 * 4096 && rx.inFlight === 8 && rx.unkicked === 0, 'data read, receiveq full and published');
    expect(rx.history.length).to.equal(8 + (8 - reposted)); // only the freed ones allocated anew
  });

  it('posts and publishes waiting transmit pieces at the end of a transmit run', async () => {
    const { tx, port } = probe({ txPieceSize: 16 });
    await microtasks();
    const data = Buffer.alloc(16 * 12, 0x5a); // 12 pieces on a ring of 8
    const written = new Promise<void>((resolve, reject) => port.write(data, (e) => (e ? reject(e) : resolve())));
    await microtasks();
    expect(tx.inFlight).to.equal(8);
    const kicks = tx.kicks;
    tx.completeRun([new Uint8Array(0), new Uint8Array(0), new Uint8Array(0), new Uint8Array(0)]);
    expect(tx.inFlight).to.equal(8); // the 4 waiting pieces went in at the run's end
    expect(tx.unkicked).to.equal(0);
    expect(tx.kicks).to.equal(kicks + 1);
    await written;
    while (tx.inFlight > 0) tx.completeRun([new Uint8Array(0)]);
    expect(tx.sentBytes().equals(data)).to.equal(true);
    expect(port.pendingTransmitBytes).to.equal(0);
  });

  it('pushes a long run in slab-sized chunks (at most RX_SLAB bytes, in fresh memory each), in order', async () => {
    const { rx, port } = probe({ rxBufferSize: 4096 });
    await microtasks();
    const chunks: Buffer[] = [];
    port.on('data', (c: Buffer) => chunks.push(c));
    await microtasks();
    const parts = Array.from({ length: 8 }, (_, i) => Buffer.alloc(4096, 0x30 + i));
    rx.completeRun(parts);
    await microtasks();
    expect(RX_SLAB).to.be.lessThan(65536); // below glibc's 64 KiB trim trigger (see port.ts)
    expect(chunks.map((c) => c.length)).to.deep.equal(Array(Math.ceil(8 * 4096 / RX_SLAB)).fill(RX_SLAB));
    expect(new Set(chunks.map((c) => c.buffer)).size).to.equal(chunks.length); // no two share memory
    expect(Buffer.concat(chunks).equals(Buffer.concat(parts))).to.equal(true);
  });

  it('copies a short run out instead of pinning the gathering slab', async () => {
    const { rx, port } = probe({ rxBufferSize: 4096 });
    await microtasks();
    const chunks: Buffer[] = [];
    port.on('data', (c: Buffer) => chunks.push(c));
    rx.completeRun([Buffer.from('hi')]);
    rx.completeRun([Buffer.alloc(4096, 1), Buffer.alloc(4096, 2)]);
    rx.completeRun([Buffer.from('there')]);
    await microtasks();
    expect(chunks.map((c) => c.length)).to.deep.equal([2, 8192, 5]);
    expect(chunks[0].toString()).to.equal('hi');
    expect(chunks[2].toString()).to.equal('there');
    // The short chunks are copies of their own; only the long one views the slab.
    expect(chunks[0].buffer).to.not.equal(chunks[1].buffer);
    expect(chunks[2].buffer).to.not.equal(chunks[1].buffer);
  });

  it('delivers bytes of a run whose end never came before the port is removed', async () => {
    const d = new ConsoleDriver({ features: 0n });
    const s = new RunSession(0n, 2);
    d.probe(s);
    await microtasks();
    const port = d.consolePort;
    const chunks: Buffer[] = [];
    port.on('data', (c: Buffer) => chunks.push(c));
    (s.queues[0] as RunQueue).complete(Buffer.from('last words')); // no onUsedBatch
    s.failAll();
    d.remove(new Error('device lost'));
    await microtasks();
    expect(Buffer.concat(chunks).toString()).to.equal('last words');
  });

  it('over the real transport: one interrupt run of receive buffers is one push', async () => {
    const rig = await startRig({ queueSize: 8 }, { rxBufferSize: 512 });
    const port = rig.driver.consolePort;
    await until(() => rig.frontend.session?.queues[0]?.inFlight === 8, 'receiveq filled');
    const chunks: Buffer[] = [];
    port.on('data', (c: Buffer) => chunks.push(c));
    const input = Buffer.alloc(8 * 512);
    for (let i = 0; i < input.length; i++) input[i] = i & 0xff;
    rig.device.send(0, input); // fills all 8 buffers, then one publish: one run on the driver side
    await until(() => chunks.reduce((n, c) => n + c.length, 0) >= input.length, 'input received');
    expect(chunks.length).to.equal(1);
    expect(Buffer.concat(chunks).equals(input)).to.equal(true);
  });

  it('over the real transport: receive buffers are re-posted in place, nothing allocated per completion', async () => {
    const rig = await startRig({ queueSize: 8 }, { rxBufferSize: 512 });
    const port = rig.driver.consolePort;
    const rxq = rig.frontend.session!.queues[0]!;
    await until(() => rxq.inFlight === 8, 'receiveq filled');
    // Every add() after the first fill would be a buffer allocated (and zeroed) anew.
    let adds = 0;
    const add = rxq.add.bind(rxq);
    rxq.add = (out, inLen, token) => {
      adds++;
      return add(out, inLen, token);
    };
    let got = Buffer.alloc(0);
    port.on('data', (c: Buffer) => (got = Buffer.concat([got, c])));
    const input = Buffer.alloc(40 * 512 + 77);
    for (let i = 0; i < input.length; i++) input[i] = (i * 7) & 0xff;
    rig.device.send(0, input);
    await until(() => got.length >= input.length && rxq.inFlight === 8, 'input received, receiveq full');
    expect(got.equals(input)).to.equal(true);
    expect(adds).to.equal(0);
  });
});
