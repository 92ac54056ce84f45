/**
 * Issue 10 item 8: the console bridges — the back-end's `--port-socket` and the front-end's
 * bridge socket — are owner-only like the server socket: mode 0600 even at umask 000, and a
 * connection from another uid is closed with a stderr line before its bytes reach the port.
 *
 * The other uid is real: as root, the client runs as `nobody` through setpriv(1). The socket file
 * is widened to 0666 first (as an operator's chmod or an ACL would), because at 0600 `nobody`
 * cannot even connect (that is checked too). Without root or setpriv those cases are skipped; the
 * policy itself is covered with an injected uid in packages/transport/test/local-socket.test.ts.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { openConsole, type Console } from '@vshm/frontend-console';
import { attachSocket as attachBridge } from '../packages/frontend-console/src/attach-socket.js';
import { useScratch, until } from './e2e-procs.js';

const NOBODY = 65534;
const canSwitchUid = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

/**
 * Connect to `path` as uid/gid `nobody`, write `bytes`, and report how the connection ended:
 * 'EACCES' etc. for a failed connect, 'closed' when the server closed (or reset) it. A server
 * that kept the connection would leave this waiting: the test then fails on its timeout.
 */
function connectAsNobody(path: string, bytes: string): Promise<string> {
  const script = `const s=require('net').connect(${JSON.stringify(path)});` +
    `s.on('connect',()=>s.write(${JSON.stringify(bytes)}));` +
    // A reset (the server closed while our bytes were unread) is the same refusal as a close.
    `s.on('error',e=>{console.log(e.code==='ECONNRESET'||e.code==='EPIPE'?'closed':e.code);process.exit(0)});` +
    `s.on('close',()=>{console.log('closed');process.exit(0)});`;
  const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  return new Promise((resolve) => child.on('close', () => resolve(out.trim())));
}

/** Run `fn` with umask 000 (children spawned inside inherit it). */
async function withUmask0<T>(fn: () => Promise<T>): Promise<T> {
  const old = process.umask(0);
  try {
    return await fn();
  } finally {
    process.umask(old);
  }
}

describe('bridge sockets: 0600, other uids refused (issue 10 item 8)', function () {
  let con: Console | null = null;
  afterEach(async () => {
    await con?.close();
    con = null;
  });
  const s = useScratch(this); // cleans up after the hook above

  it('back-end --port-socket: 0600 at umask 000; nobody refused with a log line, its bytes never reach the port', async function () {
    await s.startServer();
    const path = join(s.dir, 'port.sock');
    const be = await withUmask0(() => s.startBackend(['--port-socket', `org.vshm.sock=${path}`]));
    await until(() => {
      try {
        return statSync(path).isSocket();
      } catch {
        return false;
      }
    }, 'the port socket');
    expect(statSync(path).mode & 0o777).to.equal(0o600);
    con = await openConsole({ socketPath: s.server });
    await con.whenReady();
    const port = await con.driver.waitForPort('org.vshm.sock');
    let received = '';
    port.on('data', (c: Buffer) => (received += c.toString()));

    if (canSwitchUid) {
      chmodSync(s.dir, 0o711); // let nobody reach the socket inside the scratch dir
      expect(await connectAsNobody(path, 'EVIL-AT-0600\n')).to.equal('EACCES');
      chmodSync(path, 0o666);
      expect(await connectAsNobody(path, 'EVIL\n')).to.equal('closed');
      await be.untilStderr(/vshm-console-backend: refused a connection on .*port\.sock from uid 65534 \(pid \d+\)/);
    } else {
      this.test!.title += ' [nobody part skipped: needs root and setpriv]';
    }
    // Our own uid is still served, and only its bytes arrive.
    const own = connect(path);
    own.write('mine\n');
    await until(() => received.includes('mine\n'), 'own bytes at the front-end');
    expect(received).to.equal('mine\n');
    own.destroy();
  });

  it('front-end bridge socket: 0600 at umask 000; nobody refused with a log line, its bytes never reach the port', async function () {
    const path = join(s.dir, 'bridge.sock');
    const fromClients = new PassThrough();
    const toClients = new PassThrough();
    // A duplex port stand-in: what clients write lands in `fromClients`.
    const port = new (await import('node:stream')).Duplex({
      read() {},
      write(chunk, _enc, cb) {
        fromClients.write(chunk);
        cb();
      },
    });
    toClients.pipe(port, { end: false });
    let received = '';
    fromClients.on('data', (c: Buffer) => (received += c.toString()));
    const lines: string[] = [];
    const realWrite = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      if (String(chunk).startsWith('vshm-console-frontend: ')) {
        lines.push(String(chunk));
        return true;
      }
      return (realWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stderr.write;
    const bridge = await withUmask0(() => attachBridge(port, path));
    try {
      expect(statSync(path).mode & 0o777).to.equal(0o600);
      if (canSwitchUid) {
        chmodSync(s.dir, 0o711);
        expect(await connectAsNobody(path, 'EVIL-AT-0600\n')).to.equal('EACCES');
        chmodSync(path, 0o666);
        expect(await connectAsNobody(path, 'EVIL\n')).to.equal('closed');
        expect(lines).to.have.length(1);
        expect(lines[0]).to.match(/^vshm-console-frontend: refused a connection on .*bridge\.sock from uid 65534 \(pid \d+\): only uid \d+ or root may connect\n$/);
      } else {
        this.test!.title += ' [nobody part skipped: needs root and setpriv]';
      }
      const own = connect(path);
      own.write('mine\n');
      await until(() => received.includes('mine\n'), 'own bytes at the port');
      expect(received).to.equal('mine\n');
      own.destroy();
    } finally {
      process.stderr.write = realWrite;
      await bridge.close();
    }
  });
});
