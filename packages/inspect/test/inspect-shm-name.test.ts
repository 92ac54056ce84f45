/**
 * vshm-inspect -M NAME where NAME is not a memory object: a FIFO must not block the open (the
 * installed command runs as a child, so a hang is seen and ended by the safety-net timeout), and
 * `.` / `..` are usage errors rather than /dev/shm or /dev. A file of its own because it starts a
 * process (`npm run test:unit` leaves such files out).
 */
import { spawnSync } from 'node:child_process';
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { ROOT } from '../../../test/e2e-procs.js';
import { main } from '../src/cli.js';

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

describe('vshm-inspect -M of something that is not a memory object', function () {
  this.timeout(30_000);
  const fifo = `vshm-inspect-fifo-${process.pid}`;
  after(() => {
    try {
      unlinkSync(`/dev/shm/${fifo}`);
    } catch {
      // Not created.
    }
  });

  it('a FIFO in /dev/shm: one line and exit 1, without waiting for a writer', () => {
    const mk = spawnSync('mkfifo', ['-m', '600', `/dev/shm/${fifo}`]);
    expect(mk.status, String(mk.stderr)).to.equal(0);
    // The timeout is only a safety net: before the fix the open blocked until a writer came.
    const r = spawnSync(process.execPath, [join(ROOT, 'packages/inspect/bin/vshm-inspect.js'), '-M', fifo], { encoding: 'utf8', timeout: 20_000 });
    expect(r.signal, 'vshm-inspect hung opening the FIFO').to.equal(null);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.equal(`vshm-inspect: /dev/shm/${fifo} is not a shared-memory object (not a regular file)\n`);
  });

  for (const name of ['.', '..', '/..']) {
    it(`-M ${name}: a usage error (exit 2), not a look at /dev/shm or /dev`, async () => {
      const out = new Sink();
      const err = new Sink();
      expect(await main(['-M', name], out, err)).to.equal(2);
      expect(err.text).to.equal(`vshm-inspect: bad shared-memory object name '${name}' (try --help)\n`);
    });
  }
});
