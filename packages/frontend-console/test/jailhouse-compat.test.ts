/**
 * Interop with a Jailhouse-style console back-end (see fixtures/jailhouse-like-backend.ts): kicks
 * on vector 0, single-descriptor chains, and transmit completions that are never notified. A
 * vshm front-end must keep transmitting past the queue size although no transmit interrupt ever
 * comes (spec §4.9: "the Jailhouse console skips transmit completions").
 */
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { ConsoleDriver } from '../src/index.js';
import { JailhouseLikeBackend } from './fixtures/jailhouse-like-backend.js';
import { VirtioFrontend, createLoopbackPair, until } from './fixtures/harness.js';

describe('console front-end against a Jailhouse-style back-end', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start(): Promise<{ be: JailhouseLikeBackend; driver: ConsoleDriver }> {
    const [beDev, feDev] = createLoopbackPair({ size: 65536, vectors: 3, protocol: 0x8003 });
    const be = new JailhouseLikeBackend(beDev, 100, 30);
    const driver = new ConsoleDriver();
    const frontend = new VirtioFrontend(feDev, driver);
    cleanups.push(() => beDev.close(), () => feDev.close(), () => frontend.close());
    be.start();
    await frontend.start();
    await until(() => driver.ready, 'driver probe');
    return { be, driver };
  }

  it('negotiates, reads the size, and delivers typed input', async () => {
    const { be, driver } = await start();
    expect(driver.size).to.deep.equal({ cols: 100, rows: 30 });
    const port = driver.consolePort!;
    const got: Buffer[] = [];
    port.on('data', (d: Buffer) => got.push(d));
    be.type(Buffer.from('hello from the device\n'));
    await until(() => Buffer.concat(got).toString() === 'hello from the device\n', 'input');
  });

  it('keeps transmitting past the queue size without transmit interrupts', async () => {
    const { be, driver } = await start();
    const port = driver.consolePort!;
    // 64 separate writes: eight times the offered queue size of 8.
    const pieces = Array.from({ length: 64 }, () => randomBytes(300));
    for (const p of pieces) port.write(p);
    const want = Buffer.concat(pieces);
    await until(() => Buffer.concat(be.output).length >= want.length, 'all transmitted bytes');
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(sha(Buffer.concat(be.output))).to.equal(sha(want));
    expect(be.txCompleted).to.be.greaterThan(8);
  });
  it('a new back-end does not get output the old one consumed without notifying (§4.10)', async () => {
    const [beDev, feDev] = createLoopbackPair({ size: 65536, vectors: 3, protocol: 0x8003 });
    const old = new JailhouseLikeBackend(beDev);
    const driver = new ConsoleDriver();
    const frontend = new VirtioFrontend(feDev, driver);
    cleanups.push(() => beDev.close(), () => feDev.close(), () => frontend.close());
    old.start();
    await frontend.start();
    await until(() => driver.ready, 'driver probe');
    const port = driver.consolePort;
    port.write('one\n');
    port.write('two\n');
    // The old back-end consumes both and completes them silently: only its used ring says so.
    await until(() => Buffer.concat(old.output).toString() === 'one\ntwo\n', 'both lines at the old back-end');
    expect(old.txCompleted).to.equal(2);
    const lost = new Promise<void>((resolve) => driver.once('lost', () => resolve()));
    const ready = new Promise<void>((resolve) => driver.once('ready', () => resolve()));
    old.stop();
    const fresh = new JailhouseLikeBackend(beDev);
    fresh.start(); // State := RESET: the front-end sees the back-end leave READY
    await lost;
    expect(port.pendingTransmitBytes, 'acknowledged bytes are not kept for a re-send').to.equal(0);
    await ready;
    port.write('three\n');
    await until(() => Buffer.concat(fresh.output).toString().includes('three\n'), 'the new line at the new back-end');
    expect(Buffer.concat(fresh.output).toString()).to.equal('three\n');
  });

  it('end() finishes once the device used every transmit buffer, though none is notified', async () => {
    const { be, driver } = await start();
    const port = driver.consolePort!;
    let finished = false;
    port.on('finish', () => (finished = true));
    // What a command attachment does when its command exits: write, then flush by end().
    port.end(Buffer.from('bye\n'));
    await until(() => Buffer.concat(be.output).toString() === 'bye\n', 'the bytes at the device');
    // Nothing else happens on the link: only the front-end itself can notice the completion.
    await until(() => finished, "the port's writable side to finish");
  });
});
