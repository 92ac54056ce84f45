/**
 * Transmit output buffers (port.ts ConsolePortAttachOptions.reuseOutputBuffers): reused only for
 * outputs that keep no chunk after its write callback; every byte arrives in order either way,
 * and a Writable that keeps its chunks (the default for anything but a socket or file) never
 * sees one overwritten.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { ConsolePort, OUTPUT_BUFFER_SIZE } from '../src/port.js';
import { FRESH_PIECE } from '../src/session.js';
import { until } from '../../transport/test/fixtures/until.js';
import { closeRigs, MiniDriver, startRig } from './fixtures/loopback-rig.js';

/** A sink that keeps references to every chunk it was given (what a PassThrough reader may do). */
function keepingSink(delayCallback: boolean): { stream: Writable; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      if (delayCallback) setImmediate(cb);
      else cb();
    },
  });
  return { stream, chunks };
}

describe('console BE transmit output buffers', function () {
  afterEach(closeRigs);

  it('reuses buffers only when asked, or for socket and file outputs', async () => {
    const p = new ConsolePort(0, null, 1024);
    p.attach(null, new PassThrough());
    expect(p.reusesOutputBuffers).to.equal(false);
    p.attach(null, new PassThrough(), { reuseOutputBuffers: true });
    expect(p.reusesOutputBuffers).to.equal(true);
    p.attach(null, new Socket());
    expect(p.reusesOutputBuffers).to.equal(true);
    p.attach(null, new Socket(), { reuseOutputBuffers: false });
    expect(p.reusesOutputBuffers).to.equal(false);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vshm-out-'));
    try {
      const f = createWriteStream(path.join(dir, 'out'));
      await once(f, 'open');
      p.attach(null, f);
      expect(p.reusesOutputBuffers).to.equal(true);
      p.detach();
      expect(p.reusesOutputBuffers).to.equal(false);
      f.destroy();
      await once(f, 'close');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('hands a buffer out again only after the output called back for it', async () => {
    const p = new ConsolePort(0, null, 1024);
    const held: Array<() => void> = [];
    const out = new Writable({
      highWaterMark: 1 << 30,
      write(_chunk, _enc, cb) {
        held.push(cb);
      },
    });
    p.attach(null, out, { reuseOutputBuffers: true });
    const a = p.outputBuffer(100);
    expect(a.length).to.equal(OUTPUT_BUFFER_SIZE);
    p.writeOutput(a, 100);
    const b = p.outputBuffer(100);
    expect(b).to.not.equal(a); // `a` is still the output's
    p.writeOutput(b, 10);
    await until(() => held.length >= 1, 'first write reached _write');
    held.shift()!(); // a's callback
    await until(() => held.length >= 1, 'second write reached _write');
    await new Promise((r) => setImmediate(r));
    expect(p.outputBuffer(100)).to.equal(a);
    // Larger than a pool buffer: a fresh exact one, never pooled.
    expect(p.outputBuffer(OUTPUT_BUFFER_SIZE + 1).length).to.equal(OUTPUT_BUFFER_SIZE + 1);
  });

  for (const reuse of [false, true]) {
    it(`delivers every transmitted byte in order over the real transport (reuse ${reuse})`, async () => {
      const driver = new MiniDriver(0n, 1, 64);
      const rig = await startRig({ queueSize: 64 }, driver);
      // With reuse off a keeping sink must keep valid chunks; with reuse on the sink copies (as
      // the kernel does for a socket) before its callback, which is the contract reuse relies on.
      const kept = keepingSink(true);
      let copied = Buffer.alloc(0);
      const copying = new Writable({
        write(chunk: Buffer, _enc, cb) {
          copied = Buffer.concat([copied, chunk]);
          setImmediate(cb);
        },
      });
      rig.device.port(0).attach(null, reuse ? copying : kept.stream, { reuseOutputBuffers: reuse });
      // Bursts of several pieces per wake-up (gathered into one buffer when reusing), and bursts
      // of full-size pieces; the region is 64 KiB, so each burst stays below ~24 KiB.
      const bursts = [
        [randomBytes(1), randomBytes(3000), randomBytes(7), randomBytes(5000)],
        [randomBytes(8000), randomBytes(8000), randomBytes(8000)],
        [randomBytes(2), randomBytes(1), randomBytes(12_000)],
      ];
      const got = () => (reuse ? copied : Buffer.concat(kept.chunks));
      let expected = Buffer.alloc(0);
      for (let round = 0; round < 4; round++) {
        for (const burst of bursts) {
          for (const part of burst) driver.send(1, part);
          expected = Buffer.concat([expected, ...burst]);
          await until(() => got().length === expected.length && driver.session!.queues[1].inFlight === 0, 'burst at the host side, completed');
        }
      }
      const total = expected;
      expect(got().equals(total)).to.equal(true);
    });
  }

  it('gives an output that keeps its chunks fresh pieces of at most FRESH_PIECE bytes, in order', async () => {
    const driver = new MiniDriver(0n, 1, 64);
    const rig = await startRig({ queueSize: 8 }, driver);
    const kept = keepingSink(false);
    rig.device.port(0).attach(null, kept.stream);
    const q = driver.session!.queues[1];
    /** One transmit chain of one descriptor per part (the 64 KiB region allocates ≤ 16 KiB at once). */
    const sendChain = async (parts: Buffer[]): Promise<void> => {
      const views = parts.map((p) => q.allocOut!(p.length, p)!);
      expect(q.addSgs!(views, [], { kind: 'tx', q: 1 })).to.equal(true);
      q.kick();
      kept.chunks.length = 0;
      const all = Buffer.concat(parts);
      await until(() => Buffer.concat(kept.chunks).length === all.length && q.inFlight === 0, 'chain at the host side');
      expect(Buffer.concat(kept.chunks).equals(all)).to.equal(true);
    };
    await sendChain([randomBytes(FRESH_PIECE), randomBytes(3232)]);
    expect(kept.chunks.map((c) => c.length)).to.deep.equal([FRESH_PIECE, 3232]);
    // Pieces are packed across segment borders.
    await sendChain([randomBytes(10), randomBytes(FRESH_PIECE - 4), randomBytes(9), randomBytes(1)]);
    expect(kept.chunks.map((c) => c.length)).to.deep.equal([FRESH_PIECE, 16]);
    // Kept pieces are never overwritten by later chains.
    const keptBefore = kept.chunks.map((c) => Buffer.from(c));
    const before = kept.chunks.slice();
    await sendChain([randomBytes(FRESH_PIECE), randomBytes(100)]);
    expect(before.every((c, i) => c.equals(keptBefore[i]))).to.equal(true);
  });

  it('writes a file output correctly through reused buffers', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vshm-out-'));
    try {
      const file = path.join(dir, 'out');
      const f = createWriteStream(file);
      const driver = new MiniDriver(0n, 1, 64);
      const rig = await startRig({ queueSize: 64 }, driver);
      rig.device.port(0).attach(null, f);
      expect(rig.device.port(0).reusesOutputBuffers).to.equal(true);
      let all = Buffer.alloc(0);
      for (let i = 0; i < 40; i++) {
        const part = randomBytes(1000 + ((i * 997) % 7000));
        driver.send(1, part);
        all = Buffer.concat([all, part]);
        if (i % 3 === 2) await until(() => f.bytesWritten === all.length && driver.session!.queues[1].inFlight === 0, 'file written, completed');
      }
      await until(() => f.bytesWritten === all.length, 'file written');
      expect(readFileSync(file).equals(all)).to.equal(true);
      f.destroy();
      await once(f, 'close');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
