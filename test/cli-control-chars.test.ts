/**
 * Every vshm command quotes what the user typed in its diagnostics (an unknown option, a path it
 * cannot open or bind) — with control characters escaped, never raw: an argument holding an
 * escape sequence, CR/LF or a bidi control (a pasted string, a hostile file name handed on by a
 * script) must not rewrite the user's terminal or forge a line. Each command gets such arguments
 * in its usage errors and in its runtime failures.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './e2e-procs.js';

/** ESC CSI (colour), CR, LF, a C1 CSI, DEL and a right-to-left override. */
const HOSTILE = '\x1b[31m\r\n\x9b2J\x7f\u202e';
/** A directory that does not exist, with the hostile characters in its name. */
const NOWHERE = `/nonexistent-vshm-dir${HOSTILE}`;
/** What may not appear raw on stderr: C0 controls but LF, DEL, C1 controls, bidi controls. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

const BINS: Record<string, string> = {
  'vshm-server': 'packages/transport/bin/vshm-server.js',
  'vshm-console-backend': 'packages/backend-console/bin/vshm-console-backend.js',
  'vshm-console-frontend': 'packages/frontend-console/bin/vshm-console-frontend.js',
  'vshm-blk-backend': 'packages/backend-blk/bin/vshm-blk-backend.js',
  'vshm-blk-frontend': 'packages/frontend-blk/bin/vshm-blk-frontend.js',
  'vshm-rng-backend': 'examples/virtio-rng/bin/vshm-rng-backend.js',
  'vshm-rng-frontend': 'examples/virtio-rng/bin/vshm-rng-frontend.js',
  'vshm-inspect': 'packages/inspect/bin/vshm-inspect.js',
};

/** Per command: argument lists and the exit status each must give (2 usage, 1 failure). */
const CASES: Record<string, [string[], number][]> = {
  'vshm-server': [[[`--bogus${HOSTILE}`], 2], [['-l', `64K${HOSTILE}`], 2], [[`operand${HOSTILE}`], 2], [['-S', `${NOWHERE}/sock`], 1]],
  'vshm-console-backend': [[[`--bogus${HOSTILE}`], 2], [['--settle-ms', `1${HOSTILE}`], 2], [[`operand${HOSTILE}`], 2], [['-S', `${NOWHERE}/sock`], 1]],
  'vshm-console-frontend': [[[`--bogus${HOSTILE}`], 2], [['--server-timeout', `1${HOSTILE}`], 2], [[`operand${HOSTILE}`], 2], [['-S', `${NOWHERE}/sock`], 1]],
  'vshm-blk-backend': [[[`--bogus${HOSTILE}`], 2], [['--queues', `1${HOSTILE}`, 'img'], 2], [[`${NOWHERE}/image`], 1]],
  'vshm-blk-frontend': [[[`--bogus${HOSTILE}`], 2], [['--nbd', 'x', '--queues', `1${HOSTILE}`], 2], [[`operand${HOSTILE}`], 2], [['--nbd', `${NOWHERE}/nbd.sock`, '-S', `${NOWHERE}/sock`], 1]],
  'vshm-rng-backend': [[[`--bogus${HOSTILE}`], 2], [[`operand${HOSTILE}`], 2], [['-S', `${NOWHERE}/sock`], 1]],
  'vshm-rng-frontend': [[[`--bogus${HOSTILE}`], 2], [['-n', `1${HOSTILE}`], 2], [[`operand${HOSTILE}`], 2], [['-S', `${NOWHERE}/sock`], 1]],
  'vshm-inspect': [[[`--bogus${HOSTILE}`], 2], [[`operand${HOSTILE}`], 2], [['--shm', `vshm${HOSTILE}`], 1]],
};

function run(bin: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [join(ROOT, bin), ...args], { timeout: 60_000, encoding: 'utf8' }, (err, _stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stderr });
    });
    child.stdin?.end();
  });
}

describe('CLI diagnostics escape control characters the user typed', function () {
  this.timeout(120_000);
  for (const [prog, bin] of Object.entries(BINS)) {
    it(`${prog}: usage errors and failures quote the arguments escaped, one line each`, async () => {
      const results = await Promise.all(CASES[prog].map(async ([args, code]) => ({ args, code, got: await run(bin, args) })));
      for (const { args, code, got } of results) {
        const what = `${prog} ${JSON.stringify(args)}: ${JSON.stringify(got.stderr)}`;
        expect(got.code, what).to.equal(code);
        expect(got.stderr, what).to.not.match(RAW_CONTROL);
        // (A line break may also show folded into a space: vshm-server's library errors do that.)
        expect(got.stderr, `${what}: the argument quoted, escaped`).to.contain('\\x1b[31m').and.to.contain('\\x9b2J\\x7f\\u202e');
        for (const line of got.stderr.split('\n').slice(0, -1)) expect(line.startsWith(`${prog}: `), what).to.equal(true);
      }
    });
  }
});
