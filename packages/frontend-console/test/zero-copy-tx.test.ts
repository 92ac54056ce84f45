/**
 * Zero-copy transmit of the console port (port.ts): with a queue that offers allocOut /
 * addAllocated, a written chunk is copied once into a shared buffer that then is the port's
 * only copy; a private copy is taken only in onFailed, and §4.10 re-sends stay in order and
 * exactly once. The "shared memory" here is one ArrayBuffer the fake queue hands out.
 */
import { expect } from 'chai';
import { ConsoleDriver, type ConsolePort } from '../src/index.js';
import type { TxToken } from '../src/port.js';
import { FakeQueue, FakeSession, microtasks } from './fixtures/fake-session.js';
import { randomBytes } from 'node:crypto';
import { FrontendQueue } from '../../transport/src/virtio/frontend-queues.js';
import { closeRigs, startRig } from './fixtures/harness.js';
import { until } from '../../transport/test/fixtures/until.js';

/** A FakeQueue with zero-copy posting over a bump-allocated "shared" region. */
class ZeroCopyQueue extends FakeQueue {
  readonly shared = new ArrayBuffer(1 << 16);
  private next = 0;
  allocs = 0;
  frees = 0;

  allocOut(len: number, init?: Uint8Array): Uint8Array | null {
    if (this.next + len > this.shared.byteLength) return null;
    const v = new Uint8Array(this.shared, this.next, len);
    if (init !== undefined) v.set(init);
    this.next += len;
    this.allocs++;
    return v;
  }

  addAllocated(view: Uint8Array, inLen: number, token: unknown): boolean {
    if (view.buffer !== this.shared) throw new Error('not our view');
    if (this.posted.length >= this.size || this.budget <= 0) return false;
    this.budget--;
    // No copy: `out` is the shared view itself, as the device would read it.
    const p = { out: view, inLen, token };
    this.posted.push(p);
    this.history.push({ ...p, out: new Uint8Array(view) });
    this.unkicked++;
    return true;
  }

  freeOut(_view: Uint8Array): void {
    this.frees++;
  }

  /** Fail everything; then scribble over the buffers, as the next owner of the memory might. */
  override failAll(err = new Error('device lost')): void {
    const views = this.posted.map((p) => p.out as Uint8Array);
    super.failAll(err);
    for (const v of views) v.fill(0xee);
  }
}

function zeroCopySession(): { s: FakeSession; tx: ZeroCopyQueue } {
  const s = new FakeSession(0n, 2, 4);
  const tx = new ZeroCopyQueue(1, 4);
  s.queues[1] = tx;
  return { s, tx };
}

function writeAsync(port: ConsolePort, data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => port.write(data, (err) => (err ? reject(err) : resolve())));
}

describe('ConsolePort zero-copy transmit', () => {
  it('lands a write in shared buffers that are its only copy', async () => {
    const d = new ConsoleDriver({ txPieceSize: 10 });
    const { s, tx } = zeroCopySession();
    d.probe(s);
    const port = d.port(0) as ConsolePort;
    const chunk = Buffer.from('0123456789abcdefghijKLMNO');
    await writeAsync(port, chunk); // calls back once every piece is in shared memory
    expect(tx.posted).to.have.length(3);
    for (const p of tx.posted) {
      const t = p.token as TxToken;
      expect(p.out?.buffer).to.equal(tx.shared);
      expect(t.home).to.equal('shared');
      expect(t.data).to.equal(p.out); // the token holds the shared view, no private copy
    }
    chunk.fill(0x58); // the writer reuses its buffer: what was posted does not change
    expect(Buffer.concat(tx.posted.map((p) => p.out as Uint8Array)).toString()).to.equal('0123456789abcdefghijKLMNO');
    expect(port.pendingTransmitBytes).to.equal(25);
    tx.complete();
    tx.complete();
    tx.complete();
    expect(port.pendingTransmitBytes).to.equal(0);
  });

  it('copies failed requests out in onFailed and re-sends them in order, exactly once', async () => {
    const d = new ConsoleDriver({ txPieceSize: 10 });
    const first = zeroCopySession();
    d.probe(first.s);
    const port = d.port(0) as ConsolePort;
    const data = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ');
    const chunk = Buffer.from(data);
    await writeAsync(port, chunk.subarray(0, 40)); // four pieces fill the ring of 4
    const rest = writeAsync(port, chunk.subarray(40)); // waits for ring space
    await microtasks();
    first.tx.complete(); // "0123456789" consumed; "ABCDEFGHIJ" gets posted
    await rest;
    chunk.fill(0x58); // both callbacks ran: the writer may reuse its buffer
    expect(first.tx.inFlight).to.equal(4);
    first.s.failAll(); // onFailed, then the shared buffers are overwritten
    d.remove(new Error('back-end gone'));
    expect(port.pendingTransmitBytes).to.equal(data.length - 10);

    const second = zeroCopySession();
    d.probe(second.s);
    await microtasks();
    while (second.tx.inFlight > 0) {
      second.tx.complete();
      await microtasks();
    }
    expect(second.tx.sentBytes().toString()).to.equal(data.subarray(10).toString());
    expect(port.pendingTransmitBytes).to.equal(0);
  });

  it('gives back an allocated buffer the queue refused', async () => {
    const d = new ConsoleDriver({ txPieceSize: 10 });
    const { s, tx } = zeroCopySession();
    tx.budget = 1;
    d.probe(s);
    const port = d.port(0) as ConsolePort;
    port.write(Buffer.from('0123456789abcdefghij'));
    await microtasks();
    expect(tx.inFlight).to.equal(1);
    expect(tx.frees).to.be.greaterThan(0); // the second piece's buffer went back
    tx.budget = Infinity;
    tx.complete();
    await microtasks();
    expect(tx.sentBytes().toString()).to.equal('0123456789abcdefghij');
  });
});

describe('ConsolePort zero-copy transmit over the real transport (loopback)', function () {
  const proto = FrontendQueue.prototype;
  const realAdd = proto.add;
  const realAllocOut = proto.allocOut;
  afterEach(async () => {
    proto.add = realAdd;
    proto.allocOut = realAllocOut;
    await closeRigs();
  });

  it("copies the writer's chunk straight into shared memory: no add(), no intermediate copy", async () => {
    const rig = await startRig();
    const port = rig.driver.port(0) as ConsolePort;
    const outAdds: number[] = [];
    const inits: (Uint8Array | undefined)[] = [];
    proto.add = function (this: FrontendQueue, out: Uint8Array | null, inLen: number, token: unknown): boolean {
      if (out !== null) outAdds.push(out.length);
      return realAdd.call(this, out, inLen, token);
    };
    proto.allocOut = function (this: FrontendQueue, len: number, init?: Uint8Array): Uint8Array | null {
      const v = realAllocOut.call(this, len, init);
      if (v !== null) inits.push(init);
      return v;
    };
    rig.device.holdTransmit = true;
    const chunk = randomBytes(3000);
    const original = Buffer.from(chunk);
    await writeAsync(port, chunk);
    // The callback ran once every piece was posted; the device holds them unconsumed.
    await until(() => rig.device.held.reduce((n, c) => n + c.readableLength, 0) === 3000, 'all pieces held');
    expect(outAdds).to.deep.equal([]); // nothing went through the copying add()
    expect(inits.length).to.equal(2); // two pieces of at most 2048 bytes
    for (const init of inits) expect(init?.buffer).to.equal(chunk.buffer); // copied from the chunk itself
    chunk.fill(0); // the writer may reuse its buffer after the callback
    // The device reads the bytes in place, in the shared window.
    for (const c of rig.device.held) expect(c.readableSegments()[0].buffer).to.equal(rig.be.window);
    const seen = Buffer.concat(rig.device.held.map((c) => Buffer.concat(c.readableSegments())));
    expect(seen.equals(original)).to.equal(true);
    rig.device.holdTransmit = false;
    rig.device.releaseHeld();
    await until(() => rig.device.output[0].length === 3000, 'output');
    expect(rig.device.output[0].equals(original)).to.equal(true);
  });
});
