/**
 * Chaos for the block stack: `vshm-server -P 0x8002`, `vshm-blk-backend IMAGE` and
 * `vshm-blk-frontend --nbd PATH`, in processes of their own, under a seeded random NBD workload
 * from this test over several connections (WRITEs whose every sector names the write's sequence
 * number and its own sector, READs, FLUSHes, TRIMs, WRITE_ZEROES, some with FUA, several in
 * flight per connection), while the back-end — and, less often, the front-end and the server — is
 * killed with SIGKILL at random points and started again on the same image.
 *
 * The steps of a run (docs/decisions.md "Chaos for the block stack (stop 29)" and "…: second
 * kills, queues, block sizes (stop 30)"):
 * - `backend`: the back-end killed; requests sent while none is there wait; a new one started;
 * - `again`: the same, then the new back-end killed again before the requests that wait were
 *   served — at a seeded delay after its start (`early`), once it is on the server (`serving`),
 *   once its session with the front-end began (`connected`), or once the front-end said
 *   "back-end back" (`back`: it is serving the first waiting requests) — sometimes twice; the
 *   seeded delays (here, and before the kill of `gap-*`) are kill points, not waits;
 * - `gap-frontend` / `gap-server`: the back-end killed, then the front-end or the server killed
 *   while requests wait for a back-end;
 * - `frontend`, `server`: those killed while the back-end serves;
 * - `readonly`: the back-end restarted with `--read-only` for a while (sometimes the front-end
 *   too, so that its connections are told READ_ONLY), then writable again; the connections told
 *   READ_ONLY keep it for a while after, and a new connection is told the device as it is now
 *   each time.
 * Each back-end start draws its `--queues` (1–4), each front-end start its `--queues` (1, 2, 4).
 * A second run uses `--block-size 4096` throughout (requests on whole 4-KiB blocks).
 *
 * Knobs: VSHM_BLK_CHAOS_KILLS (steps of the 512-byte run, default 7; the 4096 run a third, ≥ 1),
 * VSHM_BLK_CHAOS_SEED (the workload's and the plan's PRNG; process timing is not seeded, so a seed
 * is a workload and a plan, not a replay), VSHM_BLK_CHAOS_ONLY=STEP (every step that one, for
 * long runs), VSHM_BLK_CHAOS_BLOCK=512|4096 (that run only), VSHM_BLK_CHAOS_DEBUG=1 (a line per
 * step).
 *
 * The oracle. The front-end's stderr goes to a FILE, not a pipe: a read of it sees every line the
 * front-end wrote before the read, so the test knows exactly which of its session lines ("back-end
 * back", "back-end lost, waiting", "the server at … went away") came before it sent a request and
 * before it got the reply. The front-end writes "back-end back" before it posts what waited, and
 * "back-end lost" before it answers what was in flight (both synchronously), so:
 * - every request gets a reply or its connection closes, and a connection closes only when its
 *   front-end died (killed, or gone with its server); every wait is bounded and a bound reached
 *   is a failure;
 * - a request sent while the front-end had no back-end (its last session line "lost") gets no
 *   reply before a "back-end back" written after it was sent — except EPERM (the last device was
 *   read-only) and ESHUTDOWN (the front-end exits);
 * - EIO only with a session line "lost" written after the request was sent (or the server gone),
 *   and only if a session was live at some point between send and reply; ESHUTDOWN only from a
 *   front-end whose server went away; EPERM only for a write on a connection told READ_ONLY, or
 *   while a read-only back-end may have been the device; nothing else, ever. A write on a
 *   connection told READ_ONLY, or sent and answered while the device certainly was the
 *   read-only back-end (from its "back" seen until its kill), gets EPERM, never anything else;
 * - the model: for each sector a set of candidates, the last write (WRITE, TRIM, WRITE_ZEROES;
 *   the last two as zeroes) answered OK plus every write that overlapped it since, answered with
 *   an error or never answered, that may have reached a device: one with no live session between
 *   its send and its reply (or the end of its front-end) never did, nor one answered EPERM (but
 *   a call the driver split, whose first parts an earlier device may have done). A READ
 *   answered OK must show a candidate in each sector (and then narrows it to what it saw); after
 *   the last kill the image FILE must too, sector by sector, and must equal a READ of the whole
 *   disk just before that kill;
 * - a FLUSH, or a write with FUA, answered OK was answered after every write sent before it on
 *   its connection (flush() is a barrier over the writes the server handed the driver before it;
 *   FUA is a flush after the write) — but an earlier write with FUA, whose data is covered and
 *   whose reply waits for a flush of its own that may wait for later writes. Durability proper (fdatasync) cannot show without losing
 *   the host's page cache; the file check reads the cache;
 * - the scheduler keeps overlapping requests apart (no write overlaps anything in flight, no read
 *   overlaps a write in flight), as the README's ordering guarantee asks of clients;
 * - each front-end's session lines alternate ("lost" only with a session, "back" only without);
 * - at the end the CLIs exit 0 on SIGTERM, the NBD socket is gone, nothing is left running.
 */
import { expect } from 'chai';
import { closeSync, existsSync, openSync, readFileSync, statSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { Prng } from '@vshm/transport/testing';
import { NbdTestSocket } from '../packages/frontend-blk/test/fixtures/nbd-test-socket.js';
import { ROOT, SERVER_BIN, useScratch, type Proc, type Scratch } from './e2e-procs.js';

const STEPS = ['backend', 'again', 'frontend', 'server', 'gap-frontend', 'gap-server', 'readonly'] as const;
type Step = (typeof STEPS)[number];
const KILLS = Number(process.env.VSHM_BLK_CHAOS_KILLS ?? 7);
const SEED = Number(process.env.VSHM_BLK_CHAOS_SEED ?? 0xb10c5eed);
/** VSHM_BLK_CHAOS_ONLY=STEP: every step that one (for long runs). */
const ONLY = ((): Step | null => {
  const v = process.env.VSHM_BLK_CHAOS_ONLY ?? '';
  if (v === '') return null;
  if (!(STEPS as readonly string[]).includes(v)) throw new Error(`VSHM_BLK_CHAOS_ONLY=${v}: one of ${STEPS.join(', ')}`);
  return v as Step;
})();
const ONLY_BLOCK = process.env.VSHM_BLK_CHAOS_BLOCK ?? '';
if (ONLY_BLOCK !== '' && ONLY_BLOCK !== '512' && ONLY_BLOCK !== '4096') throw new Error(`VSHM_BLK_CHAOS_BLOCK=${ONLY_BLOCK}: 512 or 4096`);
const DEBUG = process.env.VSHM_BLK_CHAOS_DEBUG !== undefined && process.env.VSHM_BLK_CHAOS_DEBUG !== '';
const BLK_BACKEND = join(ROOT, 'packages/backend-blk/bin/vshm-blk-backend.js');
const BLK_FRONTEND = join(ROOT, 'packages/frontend-blk/bin/vshm-blk-frontend.js');
/** A bound on every wait (a safety net on a loaded machine; nothing is timed by it). */
const WAIT_MS = 60_000;
const SECTOR = 512;
/** A small disk (4 MiB), so that requests overlap often. */
const SECTORS = 8192;
const CONNECTIONS = 3;
/** Requests in flight per connection. */
const DEPTH = 4;
/** The driver's largest request with our back-end (its default maxTransfer): longer calls are split. */
const SPLIT_BYTES = 256 * 1024;

const CMD = { READ: 0, WRITE: 1, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6 } as const;
const FLAG_FUA = 1;
const EPERM = 1;
const EIO = 5;
const ESHUTDOWN = 108;
const NBD_FLAG_READ_ONLY = 1 << 1;
const NBD_FLAG_SEND_TRIM = 1 << 5;
const NAMES: Record<number, string> = { 0: 'READ', 1: 'WRITE', 3: 'FLUSH', 4: 'TRIM', 6: 'WRITE_ZEROES' };
const SECTOR_MAGIC = 0x4b4c4276; // 'vBLK' little-endian

/** Sector `s` as written by write number `n` (n ≥ 1): magic, n, s, then bytes derived from both. */
function fillSector(buf: Buffer, off: number, n: number, s: number): void {
  buf.writeUInt32LE(SECTOR_MAGIC, off);
  buf.writeUInt32LE(n, off + 4);
  buf.writeUInt32LE(s, off + 8);
  let x = (Math.imul(n, 2654435761) ^ Math.imul(s + 1, 40503)) >>> 0;
  for (let i = 12; i < SECTOR; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    buf.writeUInt32LE(x, off + i);
  }
}

const scratchSector = Buffer.alloc(SECTOR);

/** What sector `s` holds: 0 (zeroes), the number of the write that wrote it, or -1 (neither). */
function decodeSector(buf: Buffer, off: number, s: number): number {
  const magic = buf.readUInt32LE(off);
  if (magic === 0) {
    for (let i = off; i < off + SECTOR; i += 4) if (buf.readUInt32LE(i) !== 0) return -1;
    return 0;
  }
  if (magic !== SECTOR_MAGIC || buf.readUInt32LE(off + 8) !== s) return -1;
  const n = buf.readUInt32LE(off + 4);
  if (n === 0) return -1;
  fillSector(scratchSector, 0, n, s);
  return scratchSector.equals(buf.subarray(off, off + SECTOR)) ? n : -1;
}

type SessionLine = 'back' | 'lost' | 'gone';

/**
 * A front-end's stderr, written to a file: a read sees every line written before it — unlike a
 * pipe, whose bytes may still be on their way when the test judges a reply that came by the NBD
 * socket. Positions are byte offsets (read as latin1: one character per byte).
 */
class FeLog {
  /** Every log not closed yet: a failed run closes their watchers in afterEach. */
  static readonly open = new Set<FeLog>();
  private text = '';
  private lines: { kind: SessionLine; at: number }[] = [];
  private readonly watcher: FSWatcher;

  constructor(readonly path: string, onChange: () => void) {
    writeFileSync(path, '');
    this.watcher = watch(path, onChange);
    FeLog.open.add(this);
  }

  /** A descriptor to hand the front-end as its stderr (close it once spawned). */
  openForChild(): number {
    return openSync(this.path, 'a');
  }

  close(): void {
    this.watcher.close();
    FeLog.open.delete(this);
  }

  /** Everything written so far. */
  get all(): string {
    this.pos();
    return this.text;
  }

  /** Bytes written so far (the file re-read when it grew). */
  pos(): number {
    if (statSync(this.path).size !== this.text.length) {
      this.text = readFileSync(this.path, 'latin1');
      this.lines = [];
      for (const m of this.text.matchAll(/back-end back|back-end lost, waiting|the server at .* went away/g)) {
        this.lines.push({ kind: m[0] === 'back-end back' ? 'back' : m[0].startsWith('back-end lost') ? 'lost' : 'gone', at: m.index });
      }
    }
    return this.text.length;
  }

  /** Whether the front-end had a device at `pos` (its first session is there before it serves NBD). */
  liveAt(pos: number): boolean {
    this.pos();
    let live = true;
    for (const l of this.lines) {
      if (l.at >= pos) break;
      if (l.kind === 'lost') live = false;
      else if (l.kind === 'back') live = true;
    }
    return live;
  }

  /** A line of `kind` written in [from, to). */
  has(kind: SessionLine, from: number, to = Infinity): boolean {
    this.pos();
    return this.lines.some((l) => l.kind === kind && l.at >= from && l.at < to);
  }

  /** Whether a session was live at some point of [from, to]. */
  sessionIn(from: number, to: number): boolean {
    return this.liveAt(from) || this.has('back', from, to);
  }

  /** A line out of order: a "lost" without a live session, a "back" with one, or null. */
  disorder(): string | null {
    this.pos();
    let live = true;
    for (const l of this.lines) {
      if (l.kind === 'gone') continue;
      if ((l.kind === 'lost') !== live) return `"${l.kind === 'lost' ? 'back-end lost' : 'back-end back'}" at byte ${l.at} ${live ? 'with' : 'without'} a back-end`;
      live = l.kind === 'back';
    }
    return null;
  }

  /** The last session line at or after `from` is "back". */
  backSince(from: number): boolean {
    this.pos();
    const l = this.lines[this.lines.length - 1];
    return l !== undefined && l.kind === 'back' && l.at >= from;
  }
}

interface Op {
  id: number;
  cookie: bigint;
  type: number;
  flags: number;
  sector: number;
  count: number;
  conn: Conn;
  /** Where its front-end's stderr was when it was sent. */
  posSend: number;
  /** The test's clock when it was sent. */
  clockSend: number;
  /** Sent while its front-end had no device. */
  gap: boolean;
  timer: NodeJS.Timeout;
}

/** One NBD connection: fixed newstyle, NBD_OPT_GO asking for the block sizes, then simple replies. */
class Conn {
  readonly inflight = new Map<bigint, Op>();
  live = true;
  readonly ended: Promise<void>;
  private constructor(
    readonly sock: NbdTestSocket,
    readonly log: FeLog,
    /** The transmission flags and minimum block size it was told. */
    readonly flags: number,
    readonly minBlock: number,
    onReply: (c: Conn, op: Op, error: number, data: Buffer | null) => void,
    onEnd: (c: Conn, why: string) => void,
  ) {
    this.ended = this.readLoop(onReply).then((why) => {
      this.live = false;
      onEnd(this, why);
    });
  }

  get readOnly(): boolean {
    return (this.flags & NBD_FLAG_READ_ONLY) !== 0;
  }

  get trim(): boolean {
    return (this.flags & NBD_FLAG_SEND_TRIM) !== 0;
  }

  static async open(path: string, log: FeLog, onReply: (c: Conn, op: Op, error: number, data: Buffer | null) => void, onEnd: (c: Conn, why: string) => void): Promise<Conn> {
    const sock = new NbdTestSocket(path);
    const hello = await sock.read(18);
    if (hello.toString('latin1', 0, 8) !== 'NBDMAGIC' || hello.readBigUInt64BE(8) !== 0x49484156454f5054n) throw new Error('not an NBD greeting');
    const data = Buffer.alloc(8); // name '' (length 0), one info request: NBD_INFO_BLOCK_SIZE
    data.writeUInt16BE(1, 4);
    data.writeUInt16BE(3, 6);
    const opt = Buffer.alloc(20);
    opt.writeUInt32BE(3, 0); // FIXED_NEWSTYLE | NO_ZEROES
    opt.writeBigUInt64BE(0x49484156454f5054n, 4);
    opt.writeUInt32BE(7, 12); // NBD_OPT_GO
    opt.writeUInt32BE(data.length, 16);
    sock.write(Buffer.concat([opt, data]));
    let size = -1n;
    let flags = -1;
    let minBlock = 512;
    for (;;) {
      const h = await sock.read(20);
      if (h.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error('bad option reply magic');
      const type = h.readUInt32BE(12);
      const len = h.readUInt32BE(16);
      const d = len > 0 ? await sock.read(len) : Buffer.alloc(0);
      if (type === 1) break; // ACK
      if (type !== 3) throw new Error(`NBD_OPT_GO refused: reply 0x${type.toString(16)} ${d.toString()}`);
      const info = d.readUInt16BE(0);
      if (info === 0) {
        size = d.readBigUInt64BE(2);
        flags = d.readUInt16BE(10);
      } else if (info === 3) minBlock = d.readUInt32BE(2);
    }
    expect(size, 'export size').to.equal(BigInt(SECTORS * SECTOR));
    return new Conn(sock, log, flags, minBlock, onReply, onEnd);
  }

  send(op: Op, payload: Buffer | null): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(op.flags, 4);
    h.writeUInt16BE(op.type, 6);
    h.writeBigUInt64BE(op.cookie, 8);
    h.writeBigUInt64BE(BigInt(op.sector * SECTOR), 16);
    h.writeUInt32BE(op.count * SECTOR, 24);
    this.inflight.set(op.cookie, op);
    this.sock.write(payload === null ? h : Buffer.concat([h, payload]));
  }

  /** Resolves with why the replies ended. */
  private async readLoop(onReply: (c: Conn, op: Op, error: number, data: Buffer | null) => void): Promise<string> {
    for (;;) {
      const h = await this.sock.tryRead(16);
      if (h === null) return 'closed';
      if (h.readUInt32BE(0) !== 0x67446698) return `bad reply magic 0x${h.readUInt32BE(0).toString(16)}`;
      const error = h.readUInt32BE(4);
      const cookie = h.readBigUInt64BE(8);
      const op = this.inflight.get(cookie);
      if (op === undefined) return `a reply to cookie ${cookie} that is not in flight`;
      let data: Buffer | null = null;
      if (op.type === CMD.READ && error === 0) {
        data = await this.sock.tryRead(op.count * SECTOR);
        // Cut by the end of the connection: a READ never answered (the check of the close is the same).
        if (data === null) return 'closed';
      }
      this.inflight.delete(cookie);
      onReply(this, op, error, data);
    }
  }
}

/** One chaos run: `stepCount` steps on a disk of `blockSize`-byte blocks. */
async function chaos(s: Scratch, blockSize: number, stepCount: number, seed: number): Promise<void> {
  const prng = new Prng(seed);
  const t0 = Date.now();
  const image = s.path('disk.img');
  writeFileSync(image, Buffer.alloc(SECTORS * SECTOR));
  const nbdPath = s.path('nbd.sock');

  const failures: string[] = [];
  const failure = (line: string): void => {
    if (failures.length < 30) failures.push(line);
    wake();
  };
  /** Waiters woken on every reply, connection end, process exit or output, or failure. */
  let waiters: (() => void)[] = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  const say = (line: string): void => {
    if (DEBUG) console.log(`      ${((Date.now() - t0) / 1000).toFixed(1)} s: ${line}`);
  };
  /** Resolve once `cond()` holds (re-checked on every event); a failure or the bound throws. */
  const until = async (cond: () => boolean, what: string, ms = WAIT_MS): Promise<void> => {
    say(`until ${what}`);
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (failures.length > 0) throw new Error(`failed while waiting for ${what}:\n${failures.join('\n')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out (${ms} ms) waiting for ${what}; ${state()}\n${tails()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if (failures.length > 0) throw new Error(`failed while waiting for ${what}:\n${failures.join('\n')}`);
  };
  /** A kill point `ms` after now: the chaos's own timing, not a wait for something to happen. */
  const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  const logs = new Map<Proc, FeLog>();
  const tails = (): string =>
    s.procs.map((p) => `--- ${p.name} (pid ${p.child.pid}, ${p.running ? 'running' : `exit ${String(p.exitCode)}`}):\n${(logs.get(p)?.all ?? p.stderr).slice(-1500)}`).join('\n');

  // ---- the model ----
  const cand: number[][] = Array.from({ length: SECTORS }, () => [0]);
  const busyW = new Int32Array(SECTORS);
  const busyR = new Int32Array(SECTORS);
  const stats = {
    sent: 0, ok: 0, eio: 0, eshutdown: 0, eperm: 0, unanswered: 0, reads: 0, sectorsChecked: 0, gap: 0, gapOk: 0, gapEio: 0, gapNeverSent: 0, unknownWrites: 0, fua: 0, closes: 0,
  };
  const kills = { backend: 0, frontend: 0, server: 0 };
  const steps: Record<string, number> = {};
  let completions = 0;
  let nextId = 1;
  /** The test's clock: one tick per send, reply and read-only window edge. */
  let clock = 0;
  /** Clock spans in which a read-only back-end may have been the front-end's device. */
  const roWindows: { from: number; to: number }[] = [];
  /** Clock spans in which the front-end's device certainly was a read-only back-end. */
  const roCertain: { from: number; to: number }[] = [];
  let stopping = false;
  const conns: Conn[] = [];
  /** Connections this test closes itself. */
  const ours = new Set<Conn>();
  /** Logs of front-ends that are dying or dead: their connections may close. */
  const dyingLogs = new Set<FeLog>();

  const unit = blockSize / SECTOR;
  const valueOf = (op: Op): number => (op.type === CMD.WRITE ? op.id : 0);
  const isWrite = (type: number): boolean => type === CMD.WRITE || type === CMD.TRIM || type === CMD.WRITE_ZEROES;
  const lock = (op: Op, d: 1 | -1): void => {
    if (op.type === CMD.FLUSH) return;
    const a = isWrite(op.type) ? busyW : busyR;
    for (let i = op.sector; i < op.sector + op.count; i++) a[i] += d;
  };
  const free = (type: number, sector: number, count: number): boolean => {
    for (let i = sector; i < sector + count; i++) if (busyW[i] !== 0 || (isWrite(type) && busyR[i] !== 0)) return false;
    return true;
  };
  const name = (op: Op): string => `#${op.id} ${NAMES[op.type]}${op.flags & FLAG_FUA ? '+FUA' : ''} sectors ${op.sector}+${op.count}`;

  /** A write whose outcome is unknown: each sector it covered may hold it or what it held before. */
  const unknown = (op: Op): void => {
    if (!isWrite(op.type)) return;
    stats.unknownWrites++;
    const v = valueOf(op);
    for (let i = op.sector; i < op.sector + op.count; i++) if (!cand[i].includes(v)) cand[i].push(v);
  };
  /** Check `data` (sectors from `sector`) against the model and narrow it to what was seen. */
  const checkSectors = (data: Buffer, sector: number, what: string): void => {
    const count = data.length / SECTOR;
    for (let k = 0; k < count; k++) {
      const i = sector + k;
      const v = decodeSector(data, k * SECTOR, i);
      stats.sectorsChecked++;
      if (!cand[i].includes(v)) {
        failure(`${what}: sector ${i} holds ${v === -1 ? `garbage (${data.subarray(k * SECTOR, k * SECTOR + 16).toString('hex')}…)` : v === 0 ? 'zeroes' : `write #${v}`}, the model allows ${cand[i].map((c) => (c === 0 ? 'zeroes' : `#${c}`)).join(', ')}`);
        return;
      }
      cand[i] = [v];
    }
  };

  const settle = (op: Op): void => {
    clearTimeout(op.timer);
    lock(op, -1);
    completions++;
    wake();
    setImmediate(pump);
  };

  const onReply = (c: Conn, op: Op, error: number, data: Buffer | null): void => {
    settle(op);
    const replied = ++clock;
    const log = c.log;
    const posReply = log.pos();
    /** It may have reached a device: a session was live between its send and its reply. */
    const mayHaveSent = log.sessionIn(op.posSend, posReply);
    const gone = log.has('gone', 0, posReply);
    if (op.gap && !log.has('back', op.posSend, posReply) && error !== EPERM && error !== ESHUTDOWN) {
      failure(`${name(op)}, sent while its front-end had no back-end, was answered (error ${error}) before the front-end said "back-end back"`);
    }
    if (isWrite(op.type) && error !== EPERM) {
      // Refused at once on a connection told READ_ONLY, and by a read-only device's front-end.
      if (c.readOnly) failure(`${name(op)} answered ${error === 0 ? 'OK' : `error ${error}`} on a connection told READ_ONLY`);
      else if (roCertain.some((w) => op.clockSend > w.from && replied < w.to)) failure(`${name(op)} answered ${error === 0 ? 'OK' : `error ${error}`} while the device was read-only`);
    }
    if (error === 0) {
      stats.ok++;
      if (op.gap) stats.gapOk++;
      if (op.type === CMD.READ) {
        stats.reads++;
        checkSectors(data as Buffer, op.sector, `${name(op)} answered OK`);
        return;
      }
      if (isWrite(op.type)) {
        const v = valueOf(op);
        for (let i = op.sector; i < op.sector + op.count; i++) cand[i] = [v];
      }
      if (op.type === CMD.FLUSH || (op.flags & FLAG_FUA) !== 0) {
        // flush() is a barrier (decisions.md): every write the server read before this FLUSH —
        // all those sent before it on this connection — was answered before the FLUSH was. A
        // write with FUA is flushed after it completed: the same holds. An earlier write with
        // FUA may still be in flight: its data was written before (and so covered), its reply
        // waits for a flush of its own, which may wait for writes that came later.
        const early = [...c.inflight.values()].filter((w) => isWrite(w.type) && w.id < op.id && (w.flags & FLAG_FUA) === 0);
        if (early.length > 0) failure(`${name(op)} answered OK before the writes sent before it on its connection: ${early.map(name).join(', ')}`);
      }
      return;
    }
    if (error === EPERM) {
      stats.eperm++;
      const ro = roWindows.some((w) => op.clockSend < w.to && replied > w.from);
      if (!isWrite(op.type) || !(c.readOnly || ro)) failure(`${name(op)} got EPERM with no read-only back-end or READ_ONLY export${isWrite(op.type) ? '' : ' (and it does not write)'}`);
      // Refused before it was sent: nothing of it landed — unless the driver split it (past
      // 256 KiB) and some parts were done on an earlier device before the rest, waiting, was
      // refused on the read-only one.
      if (!c.readOnly && op.count * SECTOR > SPLIT_BYTES && mayHaveSent) unknown(op);
      return;
    }
    if (error === EIO) {
      stats.eio++;
      if (op.gap) stats.gapEio++;
      if (!mayHaveSent) failure(`${name(op)} got EIO with no device session between its send and its reply`);
      else if (!(log.has('lost', op.posSend, posReply) || gone)) failure(`${name(op)} got EIO and the front-end did not say "back-end lost" (nor lose its server) after it was sent`);
    } else if (error === ESHUTDOWN) {
      stats.eshutdown++;
      if (!gone) failure(`${name(op)} got ESHUTDOWN from a front-end that did not lose its server`);
    } else {
      failure(`${name(op)} got error ${error}: never allowed`);
    }
    // An error: the write may or may not have landed — if it may have reached a device.
    if (mayHaveSent) unknown(op);
    else if (op.gap) stats.gapNeverSent++;
  };

  const onEnd = (c: Conn, why: string): void => {
    const i = conns.indexOf(c);
    if (i >= 0) conns.splice(i, 1);
    stats.closes++;
    if (why !== 'closed') failure(`connection: ${why}`);
    else if (!dyingLogs.has(c.log) && !ours.has(c)) failure(`an NBD connection closed with no front-end kill (${c.inflight.size} requests in flight); ${tails()}`);
    const end = c.log.pos();
    for (const op of c.inflight.values()) {
      settle(op);
      stats.unanswered++;
      if (c.log.sessionIn(op.posSend, end)) unknown(op);
      else if (op.gap) stats.gapNeverSent++;
    }
    c.inflight.clear();
    c.sock.destroy();
    wake();
  };

  const send = (c: Conn, type: number, sector: number, count: number, flags = 0): Op => {
    const id = nextId++;
    const posSend = c.log.pos();
    const gap = !c.log.liveAt(posSend);
    const op: Op = {
      id, cookie: BigInt(id), type, flags, sector, count, conn: c, posSend, clockSend: ++clock, gap,
      timer: setTimeout(() => failure(`${name(op)} unanswered after ${WAIT_MS} ms (its connection still open)`), WAIT_MS),
    };
    if (gap) stats.gap++;
    if (flags & FLAG_FUA) stats.fua++;
    lock(op, 1);
    stats.sent++;
    let payload: Buffer | null = null;
    if (type === CMD.WRITE) {
      payload = Buffer.alloc(count * SECTOR);
      for (let k = 0; k < count; k++) fillSector(payload, k * SECTOR, id, sector + k);
    }
    c.send(op, payload);
    return op;
  };

  /** One random request on `c`, or false if the range drawn is busy. */
  const issue = (c: Conn): boolean => {
    const r = prng.int(100);
    let type: number = r < 40 ? CMD.WRITE : r < 72 ? CMD.READ : r < 80 ? CMD.FLUSH : r < 90 ? CMD.TRIM : CMD.WRITE_ZEROES;
    if (type === CMD.FLUSH) {
      send(c, type, 0, 0);
      return true;
    }
    // A client keeps to what it was told: TRIM only with SEND_TRIM, whole minimum blocks.
    if (type === CMD.TRIM && !c.trim) type = CMD.WRITE_ZEROES;
    const u = Math.max(unit, c.minBlock / SECTOR);
    // Mostly small requests; some up to 256 KiB (the driver's split size) and past it.
    const count = u * (prng.bool(0.8) ? 1 + prng.int(Math.ceil(16 / u)) : 1 + prng.int(640 / u));
    const sector = u * prng.int((SECTORS - count) / u + 1);
    const fua = isWrite(type) && prng.bool(type === CMD.WRITE ? 0.25 : 0.15) ? FLAG_FUA : 0;
    if (!free(type, sector, count)) return false;
    send(c, type, sector, count, fua);
    return true;
  };

  function pump(): void {
    if (stopping) return;
    for (const c of conns) {
      if (!c.live) continue;
      let tries = 0;
      while (c.inflight.size < DEPTH && tries < 4) if (!issue(c)) tries++;
    }
  }

  // ---- the processes ----
  let expected = new Set<Proc>();
  const watchExit = (p: Proc): Proc => {
    void p.exited.then(({ code, signal }) => {
      if (!expected.has(p)) failure(`${p.name} exited (${String(code ?? signal)}) on its own; stderr: ${(logs.get(p)?.all ?? p.stderr).slice(-2000)}`);
      wake();
    });
    return p;
  };
  const startServer = async (): Promise<Proc> => {
    const p = watchExit(s.spawn('server', SERVER_BIN, ['-l', '16M', '-n', '2', '-V', '3', '-P', '0x8002', '-S', s.server]));
    await p.untilStderr(/listening on/, WAIT_MS);
    return p;
  };
  let readOnly = false;
  let beQueues = 1;
  /** A back-end process (not yet on the server); its options are drawn here. */
  const spawnBackend = (): Proc => {
    beQueues = 1 + prng.int(4);
    const args = ['-S', s.server, '--queues', String(beQueues), '--block-size', String(blockSize)];
    if (readOnly) args.push('--read-only');
    return watchExit(s.spawn('blk-backend', BLK_BACKEND, [...args, image]));
  };
  const startBackend = async (): Promise<Proc> => {
    const p = spawnBackend();
    await p.untilStderr(/serving .* as peer 0/, WAIT_MS);
    return p;
  };
  let feGen = 0;
  let feQueues = 1;
  let log!: FeLog;
  const startFrontend = async (): Promise<Proc> => {
    feGen++;
    feQueues = prng.pick([1, 2, 4]);
    log = new FeLog(s.path(`frontend-${feGen}.stderr`), wake);
    const fd = log.openForChild();
    const p = s.spawn('blk-frontend', BLK_FRONTEND, ['-S', s.server, '--nbd', nbdPath, '--queues', String(feQueues)], { stdio: ['pipe', 'pipe', fd] });
    closeSync(fd);
    logs.set(p, log);
    watchExit(p);
    await until(() => /serving NBD on/.test(log.all), 'the front-end to serve NBD');
    for (let i = 0; i < CONNECTIONS; i++) conns.push(await Conn.open(nbdPath, log, onReply, onEnd));
    setImmediate(pump);
    return p;
  };
  const exitOf = async (p: Proc, what: string): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    let r: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    void p.exited.then((x) => {
      r = x;
      wake();
    });
    await until(() => r !== null, `${p.name} to exit ${what}`);
    return r as unknown as { code: number | null; signal: NodeJS.Signals | null };
  };
  /** Wait until `n` more requests were settled (the workload moves). */
  const progress = (n: number, what: string): Promise<void> => {
    const target = completions + n;
    return until(() => completions >= target, `${n} completions ${what}`);
  };
  const state = (): string =>
    `kills ${JSON.stringify(kills)}; ${JSON.stringify(stats)}; completions ${completions}; in flight ${conns.map((c) => [...c.inflight.values()].map(name).join(' ')).join(' | ')}`;

  let server = await startServer();
  let be = await startBackend();
  let fe = await startFrontend();
  await progress(30, 'at start');

  const kill = async (p: Proc, what: 'backend' | 'frontend' | 'server'): Promise<void> => {
    kills[what]++;
    expected.add(p);
    await p.kill('SIGKILL');
    await exitOf(p, 'after SIGKILL');
  };
  /** Kill the back-end the front-end has a session with, and wait until the front-end says so. */
  const killLiveBackend = async (): Promise<void> => {
    const p = log.pos();
    await kill(be, 'backend');
    await until(() => log.has('lost', p), 'the front-end to say "back-end lost, waiting"');
  };
  /** Requests sent now wait for the next back-end: one FLUSH per connection at least, and what the workload adds. */
  const gapRequests = (): void => {
    for (const c of conns) if (c.live) send(c, CMD.FLUSH, 0, 0);
    pump();
  };
  /**
   * `p` was started with the front-end at `from` in its stderr: wait until its session with the
   * front-end is on. Its own "front-end connected" comes after the front-end is done with every
   * earlier back-end (a killed one's "lost" included), so once it is seen, the front-end's last
   * session line being a "back" after `from` is this back-end's.
   */
  const settleBackend = async (p: Proc, from: number): Promise<void> => {
    await p.untilStderr(/front-end connected/, WAIT_MS);
    await until(() => log.backSince(from), 'the front-end to say "back-end back"');
  };
  /** Start a back-end after a loss (the front-end waiting) and wait for its session. */
  const restartBackend = async (): Promise<void> => {
    const from = log.pos();
    be = await startBackend();
    await settleBackend(be, from);
  };
  /** The server killed: both CLIs say it went away and exit 1 (the back-end may be dead already). */
  const killServer = async (): Promise<void> => {
    const dying = [...conns];
    dyingLogs.add(log);
    const beAlive = be.running;
    if (beAlive) expected.add(be);
    expected.add(fe);
    await kill(server, 'server');
    if (beAlive) {
      const beExit = await exitOf(be, 'after its server was killed');
      expect(beExit.code, `exit code of the back-end without a server\n${tails()}`).to.equal(1);
      expect(be.stderr).to.match(/server at .* went away/);
    }
    const feExit = await exitOf(fe, 'after its server was killed');
    expect(feExit.code, `exit code of the front-end without a server\n${tails()}`).to.equal(1);
    expect(log.all).to.match(/the server at .* went away/);
    await until(() => dying.every((c) => !c.live), 'the NBD connections of the front-end that lost its server to close');
    expect(existsSync(nbdPath), 'the NBD socket removed by the exiting front-end').to.equal(false);
    server = await startServer();
    be = await startBackend();
    fe = await startFrontend();
  };
  const killFrontend = async (): Promise<void> => {
    const dying = [...conns];
    dyingLogs.add(log);
    await kill(fe, 'frontend');
    await until(() => dying.every((c) => !c.live), 'the dead front-end\'s NBD connections to close');
  };
  /** Replace connections told READ_ONLY by new ones (they keep it for ever). */
  const reopenReadOnly = async (): Promise<void> => {
    for (const c of conns.filter((x) => x.readOnly)) {
      ours.add(c);
      c.sock.destroy();
      await until(() => !c.live, 'a READ_ONLY connection of ours to close');
      conns.push(await Conn.open(nbdPath, log, onReply, onEnd));
    }
    setImmediate(pump);
  };

  /** What a new connection is told now (it is closed at once): the device as it is now. */
  const newExport = async (): Promise<{ readOnly: boolean; trim: boolean; minBlock: number }> => {
    const c = await Conn.open(nbdPath, log, onReply, onEnd);
    ours.add(c);
    c.sock.destroy();
    await until(() => !c.live, 'a connection of ours to close');
    return { readOnly: c.readOnly, trim: c.trim, minBlock: c.minBlock };
  };

  const runStep = async (step: Step): Promise<void> => {
    switch (step) {
      case 'backend':
        await killLiveBackend();
        gapRequests();
        await restartBackend();
        break;
      case 'again': {
        await killLiveBackend();
        gapRequests();
        const rounds = prng.bool(0.25) ? 2 : 1;
        for (let r = 0; r < rounds; r++) {
          // The next back-end, killed again before the waiting requests were served (or while
          // it serves the first of them).
          const from = log.pos();
          const stage = prng.pick(['early', 'serving', 'connected', 'back'] as const);
          const wait = prng.int(400);
          be = spawnBackend();
          say(`second kill at ${stage}${stage === 'early' ? ` (${wait} ms)` : ''}`);
          steps[`again:${stage}`] = (steps[`again:${stage}`] ?? 0) + 1;
          if (stage === 'early') await delay(wait);
          else if (stage === 'serving') await be.untilStderr(/serving .* as peer 0/, WAIT_MS);
          else if (stage === 'connected') await be.untilStderr(/front-end connected/, WAIT_MS);
          else await until(() => log.has('back', from), 'the front-end to say "back-end back"');
          await kill(be, 'backend');
          // How far it got: not on the server yet, on it without a session, or with one.
          const got = !/serving .* as peer 0/.test(be.stderr) ? 'unborn' : /front-end connected/.test(be.stderr) ? 'session' : 'no-session';
          steps[`again:${got}`] = (steps[`again:${got}`] ?? 0) + 1;
          gapRequests();
        }
        await restartBackend();
        break;
      }
      case 'frontend':
        await killFrontend();
        fe = await startFrontend();
        break;
      case 'gap-frontend':
        await killLiveBackend();
        gapRequests();
        await delay(prng.int(200));
        await killFrontend();
        be = await startBackend();
        fe = await startFrontend();
        break;
      case 'server':
        await killServer();
        break;
      case 'gap-server':
        await killLiveBackend();
        gapRequests();
        await delay(prng.int(200));
        await killServer();
        break;
      case 'readonly': {
        // To a read-only back-end: writes get EPERM, connections told READ_ONLY (a front-end
        // restarted meanwhile) never get a write OK; then back to a writable one.
        await killLiveBackend();
        readOnly = true;
        const window = { from: ++clock, to: Infinity };
        roWindows.push(window);
        gapRequests();
        await restartBackend();
        const certain = { from: ++clock, to: Infinity };
        roCertain.push(certain);
        // The connections keep what they were told; a new one is told the device as it is now.
        expect(await newExport(), 'a new connection to the read-only back-end').to.deep.equal({ readOnly: true, trim: false, minBlock: blockSize });
        await progress(10 + prng.int(60), 'on the read-only back-end');
        if (prng.bool(0.5)) {
          await killFrontend();
          fe = await startFrontend();
          expect(conns.every((c) => c.readOnly), 'connections opened on a read-only device are told READ_ONLY').to.equal(true);
          await progress(10 + prng.int(30), 'on the read-only back-end, connections told READ_ONLY');
        }
        certain.to = ++clock;
        await killLiveBackend();
        readOnly = false;
        gapRequests();
        await restartBackend();
        window.to = ++clock;
        expect(await newExport(), 'a new connection to the writable back-end again').to.deep.equal({ readOnly: false, trim: true, minBlock: blockSize });
        // Connections told READ_ONLY keep it on the writable device; then they are replaced.
        await progress(10 + prng.int(30), 'on the writable back-end again');
        await reopenReadOnly();
        break;
      }
    }
  };

  const plan: Step[] = [];
  // The first seven (the default run) hold every kind but `server` alone (gap-server kills it).
  const mix: Step[] = ['again', 'readonly', 'gap-server', 'frontend', 'gap-frontend', 'again', 'backend', 'server', 'again', 'backend', 'frontend', 'again'];
  for (let k = 0; k < stepCount; k++) plan.push(ONLY ?? (stepCount <= 2 ? (k === 0 ? 'again' : 'backend') : mix[k % mix.length]));
  for (let k = plan.length - 1; k > 0; k--) {
    const j = prng.int(k + 1);
    [plan[k], plan[j]] = [plan[j], plan[k]];
  }

  for (const [k, step] of plan.entries()) {
    await progress(1 + prng.int(120), `before step ${k + 1} (${step})`);
    say(`step ${k + 1}: ${step} (back-end --queues ${beQueues}, front-end --queues ${feQueues}); ${state()}`);
    steps[step] = (steps[step] ?? 0) + 1;
    await runStep(step);
    await progress(10, `after step ${k + 1} (${step})`);
  }
  await progress(30, 'after the last step');

  // Drain: no new requests; everything in flight is answered.
  stopping = true;
  await until(() => conns.every((c) => c.inflight.size === 0), 'the last requests to be answered');
  expect(conns.length, 'open connections').to.equal(CONNECTIONS);
  // A READ of the whole disk through NBD, then the back-end killed once more: the image file
  // must be what that READ saw, and both what the model allows.
  const whole = Buffer.alloc(SECTORS * SECTOR);
  const c0 = conns[0];
  const CHUNK = 1024;
  /** READ sectors [sct, sct + CHUNK) on c0; the reply handler checks it and narrows the model. */
  const readChunk = async (sct: number, what: string): Promise<void> => {
    const before = stats.reads;
    const op = send(c0, CMD.READ, sct, CHUNK);
    await until(() => !c0.inflight.has(op.cookie), `${what}: READ of sectors ${sct}+${CHUNK}`);
    expect(stats.reads, `${what}: READ of sectors ${sct}+${CHUNK} failed`).to.equal(before + 1);
  };
  for (let sct = 0; sct < SECTORS; sct += CHUNK) {
    await readChunk(sct, 'the final pass');
    for (let k = sct; k < sct + CHUNK; k++) {
      const v = cand[k][0];
      if (v !== 0) fillSector(whole, k * SECTOR, v, k);
    }
  }
  await killLiveBackend();
  const file = readFileSync(image);
  expect(file.length).to.equal(SECTORS * SECTOR);
  checkSectors(file, 0, 'the image file after the last kill');
  expect(failures, 'failures').to.deep.equal([]);
  expect(file.equals(whole), 'the image file equals the last READ of the whole disk').to.equal(true);
  // And the back-end restarted on that image serves it.
  await restartBackend();
  for (let sct = 0; sct < SECTORS; sct += CHUNK) await readChunk(sct, 'after the last restart');

  // The end: every CLI exits 0 on SIGTERM, the NBD socket is removed, nothing runs.
  for (const c of [...conns]) {
    ours.add(c);
    c.sock.destroy();
    await until(() => !c.live, 'our connections to close');
  }
  for (const p of [fe, be, server]) {
    expected.add(p);
    await p.stop();
    const { code } = await exitOf(p, 'on SIGTERM');
    expect(code, `${p.name} exit status on SIGTERM\n${(logs.get(p)?.all ?? p.stderr).slice(-2000)}`).to.equal(0);
  }
  for (const l of logs.values()) {
    l.close();
    // Every front-end's session lines alternate: a loss only of a session it had, a "back" only without one.
    expect(l.disorder(), `session lines of ${l.path}`).to.equal(null);
  }
  expect(existsSync(nbdPath), 'the NBD socket after the front-end exited').to.equal(false);
  expect(s.procs.filter((p) => p.running).map((p) => p.name), 'still running').to.deep.equal([]);
  expected = new Set();

  const summary = `blk chaos: ${blockSize}-byte blocks, seed ${seed}; steps ${JSON.stringify(steps)}; kills: back-end ${kills.backend}, front-end ${kills.frontend}, server ${kills.server}; ${JSON.stringify(stats)}`;
  console.log(`      ${summary}`);
  expect(failures, 'failures').to.deep.equal([]);
  if (kills.backend > 0) expect(stats.gap, 'requests sent while no back-end was there').to.be.greaterThan(0);
  // Some requests were on the device at a kill (twelve are in flight nearly all the time).
  if (kills.backend + kills.server >= 2) expect(stats.eio, 'EIO replies (requests in flight at a kill)').to.be.greaterThan(0);
  if (plan.includes('readonly')) expect(stats.eperm, 'EPERM replies (writes to a read-only back-end)').to.be.greaterThan(0);
  expect(stats.reads).to.be.greaterThan(10 + plan.length);
}

describe('blk chaos: SIGKILL of the back-end (and front-end, server) under a random NBD workload', function () {
  afterEach(() => {
    for (const l of FeLog.open) l.close();
  });
  const s = useScratch(this, 3_600_000);

  it(`${KILLS} steps, seed ${SEED}, 512-byte blocks: every request answered or its connection closed, errors only from kills, reads and the image file match the model`, async function () {
    if (ONLY_BLOCK === '4096') this.skip();
    await chaos(s, 512, KILLS, SEED);
  });

  it(`${Math.max(1, Math.floor(KILLS / 3))} steps, seed ${SEED + 1}, --block-size 4096: the same on whole 4-KiB blocks`, async function () {
    if (ONLY_BLOCK === '512') this.skip();
    await chaos(s, 4096, Math.max(1, Math.floor(KILLS / 3)), SEED + 1);
  });
});
