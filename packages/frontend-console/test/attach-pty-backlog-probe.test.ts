/**
 * The input back-pressure of attachPty rests on a private field of node-pty (its write queue,
 * read by ptyInputBacklog): node-pty's write() has no public drain signal. These tests make a
 * node-pty upgrade that drops or reshapes the field loud instead of silently unbounded: the first
 * fails on such an upgrade (against the real node-pty), the second pins the run-time warning.
 */
import { expect } from 'chai';
import { spawn, type IPty } from 'node-pty';
import { dropPtyInput, probeInputBacklog, ptyInputBacklog } from '../src/attach-pty.js';

/** A pty running a command that never reads its input, raw (no echo, no line editing), once it is ready. */
async function spawnNonReader(): Promise<IPty> {
  const p = spawn('/bin/sh', ['-c', 'stty raw -echo; echo ready; exec sleep 30'], { encoding: null });
  await new Promise<void>((resolve) => {
    let out = '';
    p.onData((d: string | Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
  });
  return p;
}

describe('attachPty: the node-pty input queue it reads', function () {
  this.timeout(20_000);
  let pty: IPty | null = null;
  afterEach(async () => {
    const p = pty;
    pty = null;
    if (p === null) return;
    // node-pty keeps retrying its queued writes on the master fd (setImmediate on EAGAIN) after
    // the command died and the fd was closed: a later test's pty that gets the same fd number
    // would receive these bytes as its input. Drop the queue first, then wait for the exit.
    dropPtyInput(p);
    const exited = new Promise<void>((resolve) => p.onExit(() => resolve()));
    p.kill('SIGKILL');
    await exited;
  });

  it('the installed node-pty still exposes its write queue and fills it for a command that does not read', async () => {
    const p = (pty = await spawnNonReader());
    const MSG = 'node-pty no longer has _writeStream._writeQueue (see ptyInputBacklog): input back-pressure of --pty is gone; find the new queue or a drain signal';
    expect(ptyInputBacklog(p), MSG).to.equal(0);
    // Far more than the kernel's pty buffer takes while nobody reads.
    for (let i = 0; i < 64; i++) p.write(Buffer.alloc(16 * 1024, 0x61));
    const backlog = ptyInputBacklog(p);
    expect(backlog, MSG).to.be.a('number');
    expect(backlog!).to.be.above(0);
    expect(backlog!).to.be.at.most(64 * 16 * 1024);
  });

  it('dropPtyInput empties the queue and stops the retries: nothing more is written', async () => {
    const p = (pty = await spawnNonReader());
    for (let i = 0; i < 64; i++) p.write(Buffer.alloc(16 * 1024, 0x61));
    const held = ptyInputBacklog(p)!;
    expect(held).to.be.above(0);
    expect(dropPtyInput(p)).to.equal(held);
    expect(ptyInputBacklog(p)).to.equal(0);
    // No retry is pending any more: a turn later the queue is still empty and nothing was retried.
    const ws = (p as unknown as { _writeStream: { _writeImmediate?: unknown } })._writeStream;
    expect(ws._writeImmediate).to.equal(undefined);
    await new Promise((r) => setImmediate(r));
    expect(ptyInputBacklog(p)).to.equal(0);
    expect(dropPtyInput({} as IPty)).to.equal(0); // a node-pty that hides its queue: nothing to drop
  });

  it('a node-pty without the queue: null, and one warning that input is not flow-controlled', () => {
    const warnings: string[] = [];
    const hidden = {} as IPty;
    expect(ptyInputBacklog(hidden)).to.equal(null);
    expect(probeInputBacklog(hidden, 'cat', (m) => warnings.push(m))).to.equal(false);
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.match(/^node-pty does not expose its input queue: input to 'cat' is not flow-controlled/);
    // A reshaped queue (entries without buffer/offset) counts as hidden too.
    const reshaped = { _writeStream: { _writeQueue: [{ data: 'x' }] } } as unknown as IPty;
    expect(ptyInputBacklog(reshaped)).to.equal(null);
    // The real shape: no warning.
    const fine = { _writeStream: { _writeQueue: [] } } as unknown as IPty;
    expect(probeInputBacklog(fine, 'cat', (m) => warnings.push(m))).to.equal(true);
    expect(warnings).to.have.length(1);
  });
});
