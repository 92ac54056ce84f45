/**
 * attachPty: input for a command that does not read it stays bounded. node-pty's write() has no
 * back-pressure (it queues whatever it cannot hand the kernel), so the port must stop flowing
 * while the pty holds a backlog — else a back-end fed by `cat bigfile` grows the front-end's
 * memory by the whole file while the command sleeps — and flow again once the command reads.
 */
import { expect } from 'chai';
import { attachPty } from '../src/attach-pty.js';
import type { ConsolePort } from '../src/port.js';
import { FakePort } from './fixtures/fake-port.js';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
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
});
