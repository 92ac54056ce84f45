/**
 * attachPty: input for a command that does not read it stays bounded. node-pty's write() has no
 * back-pressure (it queues whatever it cannot hand the kernel), so the port must stop flowing
 * while the pty holds a backlog — else a back-end fed by `cat bigfile` grows the front-end's
 * memory by the whole file while the command sleeps — and flow again once the command reads.
 */
import { expect } from 'chai';
import { closeSync, fstatSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachPty } from '../src/attach-pty.js';
import type { ConsolePort } from '../src/port.js';
import { FakePort } from './fixtures/fake-port.js';
import { until } from '../../transport/test/fixtures/until.js';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** SIGKILL to `pid` unless it is gone already. */
const kill = (pid: number): void => {
  try {
    if (pid !== 0) process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
};
const CHUNK = 64 * 1024;
const TOTAL = 8 * 1024 * 1024;

describe('attachPty: input back-pressure', function () {
  this.timeout(60_000);

  it('stops taking port input while the command does not read, and delivers all of it once it does', async () => {
    const port = new FakePort({ attached: true, size: { cols: 80, rows: 24 } });
    // Raw and silent, so the bytes arrive as sent and are not echoed; reads nothing until SIGUSR1.
    const script = `stty raw -echo; trap 'head -c ${TOTAL} > /dev/null; echo; echo got-all; exit 0' USR1; echo ready $$; while :; do sleep 0.05; done`;
    const a = attachPty(port as unknown as ConsolePort, '/bin/sh', ['-c', script], (e) => expect.fail(e.message));
    const pid = Number((await port.until(/ready (\d+)/))[1]);
    const chunk = Buffer.alloc(CHUNK, 0x61);
    let pushed = 0;
    // Push while the attachment takes the bytes (the port stays flowing and its buffer empty).
    while (pushed < TOTAL && port.readableFlowing !== false) {
      port.push(chunk);
      pushed += CHUNK;
      await turn();
    }
    expect(port.readableFlowing, `the port kept flowing after ${pushed} bytes the command never read`).to.equal(false);
    expect(pushed).to.be.at.most(1024 * 1024);
    // The command starts reading: the port flows again and everything gets through.
    process.kill(pid, 'SIGUSR1');
    while (pushed < TOTAL) {
      if (port.push(chunk)) pushed += CHUNK;
      else {
        pushed += CHUNK;
        while (port.readableLength > 0) await turn();
      }
    }
    await port.until(/got-all/);
    expect(await a.done).to.equal(0);
    await a.close();
  });

  it('input the command never read does not reach a file opened on the pty fd\'s number after node-pty closed it', async () => {
    // The command stops reading, then lets go of its terminal (all its fds on it closed) but lives
    // on: node-pty sees EIO and closes the master fd at once, while its 'exit' (where the queue
    // used to be dropped) waits for the process. The test opens a file on that fd number the
    // moment it is closed — as any open, accept or pipe of the program might — and the queued
    // input must not land in it. (`trap "" HUP`: the sleep survives the hangup the close sends.)
    // Whether a write is still in flight on libuv's thread pool when the terminal hangs up varies
    // from run to run (node-pty's own EIO handling then happened to empty the queue): three rounds.
    const sizes: number[] = [];
    for (let round = 0; round < 3; round++) sizes.push(await oneRound());
    expect(sizes, 'input bytes written into the file on the old fd number, per round').to.deep.equal([0, 0, 0]);

    async function oneRound(): Promise<number> {
      const port = new FakePort({ attached: true, size: { cols: 80, rows: 24 } });
      const script = `stty raw -echo; trap 'trap "" HUP; exec sleep 60 <&- >&- 2>&-' USR1; echo ready $$; while :; do sleep 0.05; done`;
      const dir = mkdtempSync(join(tmpdir(), 'vshm-pty-fd-'));
      const ptmx = (): number[] => readdirSync('/proc/self/fd').map(Number).filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === '/dev/ptmx';
        } catch {
          return false;
        }
      });
      const before = new Set(ptmx());
      // Every socket's destroy: where node-pty's read stream closes the master fd (synchronously).
      const realDestroy = Socket.prototype.destroy;
      let masterFd = -1;
      let taken: { fd: number; path: string } | null = null;
      const spare: number[] = [];
      Socket.prototype.destroy = function (this: Socket, ...args: Parameters<Socket['destroy']>) {
        const fd = (this as unknown as { _handle?: { fd?: number } })._handle?.fd;
        const r = realDestroy.apply(this, args);
        if (fd === masterFd && taken === null) {
          // Take that number now, in the same turn: open files until one gets it.
          for (let i = 0; i < 1000 && taken === null; i++) {
            const path = join(dir, `f${i}`);
            const got = openSync(path, 'w+');
            if (got === fd) taken = { fd: got, path };
            else if (got > fd) {
              closeSync(got);
              break;
            } else spare.push(got);
          }
        }
        return r;
      };
      let pid = 0;
      try {
        const a = attachPty(port as unknown as ConsolePort, '/bin/sh', ['-c', script], (e) => expect.fail(e.message));
        pid = Number((await port.until(/ready (\d+)/))[1]);
        const mine = ptmx().filter((fd) => !before.has(fd));
        expect(mine, 'the pty master of this test').to.have.length(1);
        masterFd = mine[0];
        const chunk = Buffer.alloc(CHUNK, 0x61);
        while (port.readableFlowing !== false) {
          port.push(chunk);
          await turn();
        }
        // Input is queued in node-pty now (the port paused for it). The command hangs up its terminal.
        process.kill(pid, 'SIGUSR1');
        await until(() => taken !== null, 'node-pty to close the master fd (and the test to take its number)');
        // node-pty retried every event-loop turn: a few turns show any write that follows the close.
        for (let i = 0; i < 20; i++) await turn();
        const size = fstatSync(taken!.fd).size;
        kill(pid);
        expect(await a.done).to.equal(128 + 9);
        await a.close();
        return size;
      } finally {
        Socket.prototype.destroy = realDestroy;
        kill(pid);
        for (const fd of spare) closeSync(fd);
        if (taken !== null) closeSync(taken.fd);
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});
