/**
 * vshm-inspect --pid identifies the memory object by device AND inode, as the kernel does. Inode
 * numbers are per filesystem: two fresh tmpfs mounts number their first file alike, so a process
 * can hold an fd on an unrelated object with the very inode number of its vshm memory. The test
 * provokes exactly that in a private mount namespace (unshare -m, or -rm without root): the child
 * opens a decoy on one tmpfs first (the lower fd), then the memory on another, maps its state
 * table, and writes a different mark into each. Matching by inode alone opened the decoy.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import binding from '@vshm/addon';
import { attachPid, parseMaps } from '../src/index.js';
import { deviceOf } from '../src/attach.js';

const ADDON = import.meta.resolve('@vshm/addon');

/**
 * Opens the decoy (fd N) then the memory (fd N+1), maps the memory's state table, marks both.
 * With a fourth argument `map-both` the decoy is mapped like a state table too (two candidates).
 */
const CHILD = `
const { openSync, writeSync } = await import('node:fs');
const b = (await import(process.argv[1])).default;
const decoy = openSync(process.argv[3], 'r+');
writeSync(decoy, Buffer.from('D'), 0, 1, 0);
if (process.argv[4] === 'map-both') b.mmap(decoy, 0, 4096, b.PROT_READ | b.PROT_WRITE);
const mem = openSync(process.argv[2], 'r+');
new Uint8Array(b.mmap(mem, 0, 4096, b.PROT_READ | b.PROT_WRITE))[0] = 0x4d;
process.stdout.write(decoy + ' ' + mem + '\\n');
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
`;

/** unshare with a private mount namespace, as root or through a user namespace; null if neither works. */
function unshareArgs(): string[] | null {
  for (const args of [['-m'], ['-rm']]) {
    const r = spawnSync('unshare', [...args, 'true'], { stdio: 'ignore' });
    if (r.status === 0) return args;
  }
  return null;
}

describe('vshm-inspect --pid: memory matched by device and inode', function () {
  this.timeout(20000);

  it('a maps line and a stat result name the same device alike, beyond 8-bit major and minor numbers', () => {
    // glibc's makedev(0x1003, 0x12345): what node:fs reports as st_dev for that device.
    const dev = (0x003n << 8n) | (0x1000n << 32n) | 0x45n | (0x12300n << 12n);
    expect(deviceOf({ dev })).to.equal('1003:12345');
    expect(deviceOf({ dev: 0x27n })).to.equal('0:27');
    const [m] = parseMaps('7f0000000000-7f0000001000 r--s 00000000 1003:12345 42 /dev/shm/x\n7f0000001000-7f0000002000 r--s 00000000 00:27 0 /anon\n');
    expect(m.dev).to.equal('1003:12345');
    expect(m.ino).to.equal(42);
    expect(parseMaps('7f0000000000-7f0000001000 r--s 00000000 00:27 7 /memfd:x (deleted)\n')[0].dev).to.equal('0:27');
  });
  let dir = '';
  let child: ChildProcess | undefined;
  const savedStatusDir = process.env.VSHM_STATUS_DIR;

  afterEach(() => {
    child?.stdin?.end();
    child?.kill();
    child = undefined;
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    dir = '';
    if (savedStatusDir === undefined) delete process.env.VSHM_STATUS_DIR;
    else process.env.VSHM_STATUS_DIR = savedStatusDir;
  });

  /**
   * The child of CHILD in a private mount namespace, the memory and the decoy on two fresh tmpfs
   * mounts; resolves with its pid and fds. Skips the test where no mount namespace can be made.
   */
  async function collision(ctx: Mocha.Context, mode = ''): Promise<{ pid: number; decoyFd: number; memFd: number }> {
    const un = unshareArgs();
    if (un === null) ctx.skip(); // no mount namespaces here: the collision cannot be set up
    dir = mkdtempSync(join(tmpdir(), 'vshm-inode-'));
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    const script =
      `mkdir ${a} ${b} && mount -t tmpfs mem ${a} && mount -t tmpfs decoy ${b} && ` +
      `truncate -s 8192 ${a}/x && truncate -s 12288 ${b}/x && ` +
      `exec "$0" --input-type=module -e "$1" "$2" "${a}/x" "${b}/x" "$3"`;
    child = spawn('unshare', [...un!, 'sh', '-c', script, process.execPath, CHILD, ADDON, mode], { stdio: ['pipe', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child!.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child!.on('exit', (code) => reject(new Error(`child exited ${code} before it was ready`)));
    });
    const [decoyFd, memFd] = line.split(' ').map(Number);
    return { pid: child!.pid!, decoyFd, memFd };
  }

  it('a decoy fd with the same inode number on another filesystem is not taken for the memory', async function () {
    const { pid, decoyFd, memFd } = await collision(this);
    const decoy = statSync(`/proc/${pid}/fd/${decoyFd}`);
    const mem = statSync(`/proc/${pid}/fd/${memFd}`);
    // The precondition: same inode number, different filesystems, decoy first in /proc/PID/fd.
    expect(decoy.ino).to.equal(mem.ino);
    expect(decoy.dev).to.not.equal(mem.dev);
    expect(decoyFd).to.be.below(memFd);

    const att = attachPid(binding, pid);
    try {
      expect(att.layout.size, `opened via ${att.openedVia}`).to.equal(8192);
      expect(new Uint8Array(att.stateTable)[0]).to.equal(0x4d);
      expect(att.openedVia).to.equal(`/proc/${pid}/fd/${memFd}`);
    } finally {
      att.close();
    }
  });

  it('a status file names its memory by device and inode: of two mapped objects with one inode number, the one it names is taken, and only files of that device describe it', async function () {
    const { pid, decoyFd, memFd } = await collision(this, 'map-both');
    const mem = statSync(`/proc/${pid}/fd/${memFd}`, { bigint: true });
    const decoy = statSync(`/proc/${pid}/fd/${decoyFd}`, { bigint: true });
    expect(decoy.ino).to.equal(mem.ino);
    expect(decoy.dev).to.not.equal(mem.dev);
    // The process's status file names the memory; a live process of ours (this one) has a file
    // naming the decoy's device with the same inode number: it must not count for this memory.
    const status = join(dir, 'status');
    mkdirSync(status, { mode: 0o700 });
    process.env.VSHM_STATUS_DIR = status;
    const file = (dev: bigint, size: number, role: string): string => JSON.stringify({
      format: 'vshm-status/1', pid: role === 'back-end' ? pid : process.pid, updated: new Date().toISOString(), peer: { id: role === 'back-end' ? 0 : 1, maxPeers: 2, vectors: 1, protocol: 0xc003 },
      memory: { dev: `0x${dev.toString(16)}`, ino: Number(mem.ino), size, outputSectionSize: 0 },
      transport: { role, phase: 'serving', deviceId: 3, offeredFeatures: null, negotiatedFeatures: null, status: 0, headerSize: 88, queues: [] },
    });
    writeFileSync(join(status, `${pid}.json`), file(mem.dev, 8192, 'back-end'), { mode: 0o600 });
    writeFileSync(join(status, `${process.pid}.json`), file(decoy.dev, 12288, 'front-end'), { mode: 0o600 });

    const att = attachPid(binding, pid);
    try {
      expect(att.layout.size, `opened via ${att.openedVia}`).to.equal(8192);
      expect(new Uint8Array(att.stateTable)[0]).to.equal(0x4d);
      // Only the file of this memory describes it; the other names the decoy's device.
      expect(att.status.map((f) => f.transport.role)).to.deep.equal(['back-end']);
    } finally {
      att.close();
    }
  });
});
