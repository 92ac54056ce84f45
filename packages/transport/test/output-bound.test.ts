/**
 * The bound the CLI kit puts on a terminal stderr written asynchronously (asyncTerminalOutput):
 * what it holds queued while the terminal takes nothing, the drop notice, and Node's Writable
 * contract kept for what passes. (On a real terminal: test/daemons-stalled-terminal.test.ts.)
 */
import { expect } from 'chai';
import { Console } from 'node:console';
import { Writable } from 'node:stream';
import { boundQueuedOutput } from '../src/output-bound.js';
import { stalledStream } from './fixtures/stalled-stream.js';

describe('boundQueuedOutput: a terminal stderr that takes nothing', () => {
  const LIMIT = 64 * 1024;
  const NOTICE = /^vshm-test: (\d+) messages? \((\d+) bytes\) (?:was|were) dropped while the terminal took no output\n$/;

  it('10 MiB of lines: at most the limit plus one line queued; the rest dropped, their callbacks called; once released, one line with the counts', async () => {
    const { stream, taken, release } = stalledStream();
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    const line = `${'x'.repeat(99)}\n`;
    const total = Math.ceil((10 << 20) / line.length);
    let peak = 0;
    let falses = 0;
    let called = 0;
    for (let i = 0; i < total; i++) {
      if (!stream.write(line, () => called++)) falses++;
      peak = Math.max(peak, stream.writableLength);
    }
    expect(peak).to.be.at.most(LIMIT + line.length);
    const kept = Math.ceil(LIMIT / line.length);
    await new Promise((resolve) => setImmediate(resolve));
    expect(called, 'the dropped writes called back').to.equal(total - kept);
    expect(falses, 'write() says false while over the limit').to.be.at.least(total - kept);
    await release();
    expect(called, 'every write called back').to.equal(total);
    const notices = taken.filter((t) => NOTICE.test(t));
    expect(notices).to.have.length(1);
    const [, messages, bytes] = NOTICE.exec(notices[0])!;
    expect(Number(messages)).to.equal(total - kept);
    expect(Number(bytes)).to.equal((total - kept) * line.length);
    // What was kept is the first lines, then the notice, nothing else.
    expect(taken.slice(0, -1)).to.deep.equal(Array<string>(kept).fill(line));
    expect(taken.at(-1)).to.equal(notices[0]);
  });

  it('a zero-length write always passes (its callback marks the end of what is queued), however much is queued', async () => {
    const { stream, taken, release } = stalledStream();
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    stream.write(Buffer.alloc(LIMIT, 0x61));
    stream.write('dropped\n');
    let emptyDone = false;
    stream.write('', () => (emptyDone = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(emptyDone, 'not before what is queued').to.equal(false);
    await release();
    expect(emptyDone).to.equal(true);
    expect(taken.filter((t) => NOTICE.test(t)).map((t) => NOTICE.exec(t)!.slice(1, 3))).to.deep.equal([['1', '8']]);
  });

  it('a notice that comes due after end() is not written (no write after end: no error on the stream)', async () => {
    const { stream, taken, release } = stalledStream();
    const errors: unknown[] = [];
    stream.on('error', (err) => errors.push(err));
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    stream.write(Buffer.alloc(LIMIT, 0x61));
    stream.write('dropped\n');
    stream.end();
    await release();
    expect(errors).to.deep.equal([]);
    expect(taken.filter((t) => NOTICE.test(t))).to.deep.equal([]);
  });

  it("over the limit, what Node refuses it still refuses: a write after end() or destroy() gets Node's error, a chunk or encoding it does not take throws", async () => {
    const answers: unknown[] = [];
    const writeOver = (stream: Writable): void => void stream.write('late\n', (err) => answers.push((err as NodeJS.ErrnoException | null)?.code ?? null));
    const ended = stalledStream().stream;
    ended.on('error', () => {});
    boundQueuedOutput(ended, 'vshm-test', LIMIT);
    ended.write(Buffer.alloc(LIMIT, 0x61));
    ended.end();
    writeOver(ended);
    const destroyed = stalledStream().stream;
    boundQueuedOutput(destroyed, 'vshm-test', LIMIT);
    destroyed.write(Buffer.alloc(LIMIT, 0x61));
    destroyed.destroy();
    expect(destroyed.writableLength, 'the write in progress still counted').to.equal(LIMIT);
    writeOver(destroyed);
    await new Promise((resolve) => setImmediate(resolve));
    expect(answers).to.deep.equal(['ERR_STREAM_WRITE_AFTER_END', 'ERR_STREAM_DESTROYED']);
    const full = stalledStream().stream;
    boundQueuedOutput(full, 'vshm-test', LIMIT);
    full.write(Buffer.alloc(LIMIT, 0x61));
    expect(() => full.write(42 as unknown as string)).to.throw().with.property('code', 'ERR_INVALID_ARG_TYPE');
    expect(full.write(new DataView(new ArrayBuffer(8)) as unknown as Uint8Array), 'a view: bytes, dropped').to.equal(false);
    expect(full.writableLength).to.equal(LIMIT);
    expect(() => full.write('x', 'no-such-encoding' as BufferEncoding)).to.throw().with.property('code', 'ERR_UNKNOWN_ENCODING');
  });

  it("each episode of drops gets its own line; 'drain' follows a write that returned false; bounding twice changes nothing", async () => {
    const { stream, taken, release } = stalledStream();
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    boundQueuedOutput(stream, 'other', 1);
    let drained = 0;
    stream.on('drain', () => drained++);
    for (const n of [3, 5]) {
      stream.write(Buffer.alloc(LIMIT, 0x61));
      for (let i = 0; i < n; i++) expect(stream.write('dropped\n')).to.equal(false);
      await release();
    }
    expect(drained).to.equal(2);
    expect(taken.filter((t) => NOTICE.test(t)).map((t) => NOTICE.exec(t)!.slice(1, 3))).to.deep.equal([['3', '24'], ['5', '40']]);
  });

  it('console.error on the stream goes through the bound (it writes with a callback)', async () => {
    const { stream, taken, release } = stalledStream();
    boundQueuedOutput(stream, 'vshm-test', LIMIT);
    stream.write(Buffer.alloc(LIMIT, 0x61));
    const console = new Console({ stdout: stream, stderr: stream });
    for (let i = 0; i < 4; i++) console.error('dropped %d', i);
    expect(stream.writableLength).to.equal(LIMIT);
    await release();
    expect(taken.filter((t) => NOTICE.test(t)).map((t) => NOTICE.exec(t)!.slice(1, 3))).to.deep.equal([['4', '40']]);
    expect(stream.listenerCount('error'), 'no error listener left behind').to.equal(0);
  });

  it("the limit is never below the stream's high-water mark, so that 'drain' follows every false", () => {
    const { stream } = stalledStream();
    boundQueuedOutput(stream, 'vshm-test', 1);
    expect(stream.write(Buffer.alloc(stream.writableHighWaterMark - 1))).to.equal(true);
    expect(stream.write('passes\n')).to.equal(false); // over the high-water mark, queued
    expect(stream.writableLength).to.equal(stream.writableHighWaterMark + 6);
  });
});
