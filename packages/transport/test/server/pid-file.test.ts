/**
 * The `-p` pid file (server-pid-file.ts): created with O_EXCL | O_NOFOLLOW, so a symlink (even a
 * dangling one) is refused and its target untouched; a stale file of a dead process is replaced,
 * a live one or a foreign file refused; removal only unlinks a file that still holds our pid.
 * The CLI side: a refused pid file is one stderr line, exit 1, nothing left behind.
 */
import { expect } from 'chai';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPidFile, parsePidFile, PidFileError, removePidFile } from '../../src/server/pid-file.js';
import { useCliRig } from '../fixtures/server-cli-rig.js';

function refused(fn: () => void): PidFileError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(PidFileError);
    expect(err).to.have.property('code', 'VSHM_ERR_PID_FILE');
    return err as PidFileError;
  }
  throw new Error('expected a PidFileError');
}

describe('server pid file (-p): O_EXCL | O_NOFOLLOW', function () {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-pid-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('creates the file with our pid and removes it', () => {
    const p = join(dir, 's.pid');
    createPidFile(p, 4242);
    expect(readFileSync(p, 'utf8')).to.equal('4242\n');
    expect(lstatSync(p).isFile()).to.equal(true);
    removePidFile(p, 4242);
    expect(existsSync(p)).to.equal(false);
  });

  it('refuses a symlink to an existing file and leaves the target untouched', () => {
    const target = join(dir, 'precious');
    writeFileSync(target, 'keep me\n');
    const p = join(dir, 's.pid');
    symlinkSync(target, p);
    const err = refused(() => createPidFile(p, 4242, () => false));
    expect(err.message).to.include(p).and.to.include('symbolic link');
    expect(readFileSync(target, 'utf8')).to.equal('keep me\n');
    expect(lstatSync(p).isSymbolicLink()).to.equal(true);
  });

  it('refuses a dangling symlink and creates nothing at its target', () => {
    const target = join(dir, 'nothing-here');
    const p = join(dir, 's.pid');
    symlinkSync(target, p);
    refused(() => createPidFile(p, 4242, () => false));
    expect(existsSync(target)).to.equal(false);
  });

  it('refuses a pid file of a live process, untouched', () => {
    const p = join(dir, 's.pid');
    writeFileSync(p, '777\n');
    const err = refused(() => createPidFile(p, 4242, (pid) => pid === 777));
    expect(err.message).to.include('running process 777');
    expect(readFileSync(p, 'utf8')).to.equal('777\n');
  });

  it('replaces the stale pid file of a process that is gone', () => {
    const p = join(dir, 's.pid');
    writeFileSync(p, '777\n');
    createPidFile(p, 4242, () => false);
    expect(readFileSync(p, 'utf8')).to.equal('4242\n');
  });

  it('refuses a regular file that does not hold a pid, and a directory', () => {
    const p = join(dir, 'notes.txt');
    writeFileSync(p, 'my notes\n');
    expect(refused(() => createPidFile(p, 4242, () => false)).message).to.include('does not hold a pid');
    expect(readFileSync(p, 'utf8')).to.equal('my notes\n');
    const d = join(dir, 'sub');
    mkdirSync(d);
    expect(refused(() => createPidFile(d, 4242, () => false)).message).to.include('not a regular file');
  });

  it('names the path and errno when the directory does not exist', () => {
    const p = join(dir, 'no', 's.pid');
    const err = refused(() => createPidFile(p, 4242));
    expect(err.message).to.include(p).and.to.include('ENOENT');
  });

  it('removal leaves a file that no longer holds our pid', () => {
    const p = join(dir, 's.pid');
    writeFileSync(p, '999\n');
    removePidFile(p, 4242);
    expect(readFileSync(p, 'utf8')).to.equal('999\n');
  });

  it('parsePidFile accepts exactly one positive decimal pid', () => {
    expect(parsePidFile('123\n')).to.equal(123);
    expect(parsePidFile(' 7 ')).to.equal(7);
    for (const bad of ['', '\n', '0\n', '-1', '12 13', 'abc', '0x10', '99999999999']) expect(parsePidFile(bad), bad).to.equal(null);
  });

  describe('vshm-server -p in a child process', function () {
    const rig = useCliRig();

    it('a symlinked pid file: exit 1, one stderr line naming it, target untouched, nothing left', async () => {
      const target = join(dir, 'precious');
      writeFileSync(target, 'keep me\n');
      const p = join(dir, 's.pid');
      symlinkSync(target, p);
      const sock = join(dir, 's.sock');
      const c = rig.server(['-S', sock, '-p', p]);
      expect((await c.exit).code).to.equal(1);
      expect(c.stderrLines()).to.have.length(1);
      expect(c.stderrLines()[0]).to.match(/^vshm-server: pid file .*s\.pid is a symbolic link/);
      expect(readFileSync(target, 'utf8')).to.equal('keep me\n');
      expect(existsSync(sock), 'socket removed after the failed start').to.equal(false);
    });

    it('replaces a stale pid file and removes it at SIGHUP', async () => {
      const p = join(dir, 's.pid');
      // A pid that cannot be running: above the kernel's pid_max ceiling (2^22).
      writeFileSync(p, `${2 ** 22 + 1}\n`);
      const sock = join(dir, 's.sock');
      const c = await rig.ready(['-S', sock, '-p', p]);
      expect(readFileSync(p, 'utf8')).to.equal(`${c.proc.pid}\n`);
      c.proc.kill('SIGHUP');
      expect(await c.exit).to.deep.equal({ code: 0, signal: null });
      expect(existsSync(p)).to.equal(false);
      expect(existsSync(sock)).to.equal(false);
    });
  });
});
