/**
 * socketConnect when a signal interrupts a blocking connect(). A UNIX stream connect blocks only
 * while the listener's backlog is full; a signal whose handler lacks SA_RESTART then makes it fail
 * with EINTR — Node's own SIGUSR1 handler (which starts the inspector) is such a handler. Unlike
 * TCP, nothing goes on in the kernel after that: the socket is left unconnected. The addon used
 * to wait for POLLOUT and read SO_ERROR (the TCP recipe); an unconnected UNIX socket polls
 * writable at once with SO_ERROR 0, so it returned a socket that was never connected, and the
 * first send failed with ENOTCONN. The test provokes exactly that in a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import binding from '@vshm/addon';
import { ADDON_URL, until } from './helpers.js';

/** connect(2)'s number, as /proc/PID/syscall shows it, where we know it. */
const CONNECT_NR: Record<string, string> = { x64: '42', arm64: '203' };

/** Whether SIGUSR1 is pending for process `pid` or its main thread (/proc status masks). */
function usr1Pending(pid: number): boolean {
  const bit = 1n << 9n; // SIGUSR1 = 10
  const mask = (file: string, field: string): bigint => BigInt('0x' + new RegExp(`^${field}:\\s*([0-9a-f]+)`, 'm').exec(readFileSync(file, 'utf8'))![1]);
  return ((mask(`/proc/${pid}/status`, 'ShdPnd') | mask(`/proc/${pid}/task/${pid}/status`, 'SigPnd')) & bit) !== 0n;
}

describe('addon: socketConnect interrupted by a signal', function () {
  this.timeout(30_000);
  let dir = '';
  let child: ChildProcess | undefined;
  const fds: number[] = [];
  afterEach(() => {
    child?.kill('SIGKILL');
    child = undefined;
    for (const fd of fds.splice(0)) binding.close(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  it('an EINTR from a blocking connect is retried: the socket it returns is connected', async function () {
    const nr = CONNECT_NR[process.arch];
    if (nr === undefined) this.skip(); // cannot see from /proc when the child blocks in connect
    dir = mkdtempSync(join(tmpdir(), 'vshm-eintr-'));
    const path = join(dir, 's.sock');
    const l = binding.socketListen(path, 0o600, 0);
    fds.push(l);
    // Fill the backlog so that the child's connect blocks.
    for (let c = binding.socketConnect(path, true); c >= 0; c = binding.socketConnect(path, true)) fds.push(c);
    const script = `import binding from ${JSON.stringify(ADDON_URL)};
      process.stdout.write('connecting\\n');
      let out;
      try {
        const c = binding.socketConnect(${JSON.stringify(path)});
        out = { ok: true, sent: binding.sendMsg(c, Buffer.from('x'), []) };
      } catch (e) {
        out = { ok: false, code: e.code, syscall: e.syscall };
      }
      process.stdout.write(JSON.stringify(out) + '\\n');`;
    // --inspect-port=0: the inspector that SIGUSR1 starts takes a free port, not 9229.
    const ch = spawn(process.execPath, ['--inspect-port=0', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    child = ch;
    let out = '';
    ch.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const inConnect = (): boolean => {
      try {
        return readFileSync(`/proc/${ch.pid}/task/${ch.pid}/syscall`, 'utf8').split(' ')[0] === nr;
      } catch {
        return false;
      }
    };
    await until(() => out.includes('connecting') && inConnect(), 'the child to block in connect');
    ch.kill('SIGUSR1');
    // Delivered: pending neither for the process nor for its main thread — which the kernel picks,
    // as it sleeps with the signal unblocked. The connect then either came back (the old bug: an
    // unconnected socket, ENOTCONN on the send) or, retried, blocks again.
    await until(() => !usr1Pending(ch.pid!), 'the signal to be delivered');
    await until(() => out.includes('{') || inConnect(), 'the connect to return or block again');
    // Make room: the child's connect completes and its byte arrives on one of the accepted sockets.
    const accepted: number[] = [];
    const acceptAll = (): void => {
      for (let a = binding.socketAccept(l); a >= 0; a = binding.socketAccept(l)) {
        accepted.push(a);
        fds.push(a);
      }
    };
    acceptAll();
    await until(() => out.includes('{'), 'the child to report');
    const result = JSON.parse(out.slice(out.indexOf('{'))) as { ok: boolean; code?: string; syscall?: string };
    expect(result, "the child's socketConnect after EINTR").to.deep.equal({ ok: true, sent: 1 });
    await until(() => {
      acceptAll();
      return accepted.some((fd) => binding.recvMsg(fd, 1, 0)?.bytes.toString() === 'x');
    }, "the child's byte");
  });
});
