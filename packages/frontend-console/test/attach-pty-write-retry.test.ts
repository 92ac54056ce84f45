/**
 * guardPtyWrites: how input queued for a command that does not read is retried. The kernel's pty
 * buffer fills and every write fails with EAGAIN until the command reads; a retry on every
 * event-loop turn kept the front-end at 100 % CPU for as long as the command did not read. The
 * retries back off instead — and once the command reads, every queued byte still arrives, in order.
 * Write attempts are counted through guardPtyWrites' write hook, against event-loop turns.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type IPty } from 'node-pty';
import { dropPtyInput, guardPtyWrites } from '../src/attach-pty.js';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** Far more than the kernel's pty input buffer holds (a few KiB to 64 KiB). */
const TOTAL = 1024 * 1024;
/** Event-loop turns over which the retries of a full pty are counted. */
const TURNS = 200;

describe('guardPtyWrites: retries of a pty whose input stays full', function () {
  this.timeout(60_000);
  let pty: IPty | null = null;
  /** Resolves at the pty's exit: listened for from the spawn on (node-pty does not replay 'exit'). */
  let exited: Promise<void> = Promise.resolve();
  /** The command exited and was reaped: its pid may name another process by now. */
  let gone = false;
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-pty-retry-'));
  });
  afterEach(async () => {
    const p = pty;
    pty = null;
    if (p !== null) {
      dropPtyInput(p); // no retries on the fd after the command is gone
      try {
        if (!gone) process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone already
      }
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('back off while the command does not read (a few attempts over many turns, not one a turn); once it reads, every byte arrives in order', async () => {
    const out = join(dir, 'got');
    // Raw and silent (bytes as sent, no echo); reads nothing until SIGUSR1, then all of it.
    const script = `stty raw -echo; trap 'head -c ${TOTAL} > ${out}; echo got-all; exit 0' USR1; echo ready $$; while :; do sleep 0.05; done`;
    const p = spawn('/bin/sh', ['-c', script], { encoding: null });
    pty = p;
    gone = false;
    exited = new Promise<void>((resolve) =>
      p.onExit(() => {
        gone = true;
        resolve();
      }),
    );
    let output = '';
    const waiters: (() => void)[] = [];
    p.onData((d: string | Buffer) => {
      output += d.toString();
      for (const w of waiters.splice(0)) w();
    });
    const outputMatches = async (re: RegExp): Promise<RegExpExecArray> => {
      for (;;) {
        const m = re.exec(output);
        if (m !== null) return m;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    };
    let attempts = 0;
    let fullSeen: () => void = () => {};
    const full = new Promise<void>((resolve) => (fullSeen = resolve));
    const counting = (fd: number, buffer: Buffer, offset: number): number => {
      attempts++;
      try {
        return writeSync(fd, buffer, offset);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') fullSeen();
        throw err;
      }
    };
    expect(guardPtyWrites(p, counting)).to.equal(true);
    const pid = Number((await outputMatches(/ready (\d+)/))[1]);

    // Printable bytes (raw mode passes them as they are), random: a lost or swapped piece shows.
    const data = Buffer.from(randomBytes(TOTAL).map((b) => 0x20 + (b % 95)));
    p.write(data);
    await full;
    const before = attempts;
    for (let i = 0; i < TURNS; i++) await turn();
    const during = attempts - before;
    expect(during, `write attempts over ${TURNS} event-loop turns while the pty stayed full`).to.be.at.most(TURNS / 10);

    process.kill(pid, 'SIGUSR1');
    await outputMatches(/got-all/);
    const got = readFileSync(out);
    expect(got.length).to.equal(TOTAL);
    expect(got.equals(data), 'the bytes the command read are the bytes written, in order').to.equal(true);
  });
});
