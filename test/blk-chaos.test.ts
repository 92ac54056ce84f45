/**
 * Chaos for the block stack: `vshm-server -P 0x8002`, `vshm-blk-backend IMAGE` and
 * `vshm-blk-frontend --nbd PATH`, in processes of their own, under a seeded random NBD workload
 * from this test over several connections (WRITEs whose every sector names the write's sequence
 * number and its own sector, READs, FLUSHes, TRIMs, WRITE_ZEROES, several in flight per
 * connection), while the back-end — and, less often, the front-end and the server — is killed
 * with SIGKILL at random points and started again on the same image.
 *
 * Knobs: VSHM_BLK_CHAOS_KILLS (default 6: about half back-end kills, a third front-end, a sixth
 * server; 1 or 2 kills are back-end kills only; VSHM_BLK_CHAOS_ONLY=backend|frontend|server makes
 * every kill one of that process), VSHM_BLK_CHAOS_SEED (the workload's and the
 * kills' PRNG; process timing is not seeded, so a seed is a workload and a kill plan, not a
 * replay), VSHM_BLK_CHAOS_DEBUG=1 (a line per kill).
 *
 * The oracle (docs/decisions.md "Chaos for the block stack (stop 29)"):
 * - every request gets a reply or its connection closes, and a connection closes only when its
 *   front-end died (killed, or gone with its server); every wait is bounded and a bound reached
 *   is a failure;
 * - errors: EIO only for a request sent before the front-end said "back-end lost" after a kill
 *   of the back-end (or the server) and not answered before that kill; ESHUTDOWN only around a
 *   server kill (the front-end exits and fails what waits for a device); nothing else, ever;
 * - a request sent after the front-end said "back-end lost" waits for the next back-end: no
 *   reply before that back-end was started, then OK;
 * - the model: for each sector a set of candidates, the last write (WRITE, TRIM, WRITE_ZEROES;
 *   the last two as zeroes) answered OK plus every write that overlapped it since and was answered
 *   with an error or never answered. A READ answered OK must show a candidate in each sector (and
 *   then narrows it to what it saw); after the last kill the image FILE must too, sector by sector,
 *   and must equal a READ of the whole disk just before that kill;
 * - a FLUSH answered OK was answered after every write sent before it on its connection (flush()
 *   is a barrier over the writes the server handed the driver before it). Its durability proper
 *   (fdatasync) cannot show without losing the host's page cache; the file check reads the cache;
 * - the scheduler keeps overlapping requests apart (no write overlaps anything in flight, no read
 *   overlaps a write in flight), as the README's ordering guarantee asks of clients;
 * - at the end the CLIs exit 0 on SIGTERM, the NBD socket is gone, nothing is left running.
 */
import { expect } from 'chai';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Prng } from '@vshm/transport/testing';
import { NbdTestSocket } from '../packages/frontend-blk/test/fixtures/nbd-test-socket.js';
import { ROOT, SERVER_BIN, useScratch, type Proc } from './e2e-procs.js';

const KILLS = Number(process.env.VSHM_BLK_CHAOS_KILLS ?? 6);
const SEED = Number(process.env.VSHM_BLK_CHAOS_SEED ?? 0xb10c5eed);
type Victim = 'backend' | 'frontend' | 'server';
/** VSHM_BLK_CHAOS_ONLY=backend|frontend|server: every kill of that one (for long runs). */
const ONLY = ((): Victim | null => {
  const v = process.env.VSHM_BLK_CHAOS_ONLY ?? '';
  if (v === '') return null;
  if (v !== 'backend' && v !== 'frontend' && v !== 'server') throw new Error(`VSHM_BLK_CHAOS_ONLY=${v}: backend, frontend or server`);
  return v;
})();
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

const CMD = { READ: 0, WRITE: 1, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6 } as const;
const EIO = 5;
const ESHUTDOWN = 108;
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

interface Op {
  id: number;
  cookie: bigint;
  type: number;
  sector: number;
  count: number;
  conn: Conn;
  /** Back-end losses (back-end and server kills) begun before it was sent. */
  lossesAtSend: number;
  /** Server kills begun before it was sent. */
  serverKillsAtSend: number;
  /** Sent while a server kill was under way (its front-end not gone yet). */
  serverDying: boolean;
  /** Sent while a back-end kill was under way and the front-end had not said "back-end lost" yet. */
  mayBeOnDeadDevice: boolean;
  /** Sent after the front-end said "back-end lost" and before the next back-end was started. */
  gap: boolean;
  timer: NodeJS.Timeout;
}

/** One NBD connection: the fixed-newstyle handshake (EXPORT_NAME ''), then simple replies. */
class Conn {
  readonly inflight = new Map<bigint, Op>();
  live = true;
  readonly ended: Promise<void>;
  private constructor(
    readonly sock: NbdTestSocket,
    /** The front-end generation it was opened on. */
    readonly feGen: number,
    onReply: (c: Conn, op: Op, error: number, data: Buffer | null) => void,
    onEnd: (c: Conn, why: string) => void,
  ) {
    this.ended = this.readLoop(onReply).then((why) => {
      this.live = false;
      onEnd(this, why);
    });
  }

  static async open(path: string, feGen: number, onReply: (c: Conn, op: Op, error: number, data: Buffer | null) => void, onEnd: (c: Conn, why: string) => void): Promise<Conn> {
    const sock = new NbdTestSocket(path);
    const hello = await sock.read(18);
    if (hello.toString('latin1', 0, 8) !== 'NBDMAGIC' || hello.readBigUInt64BE(8) !== 0x49484156454f5054n) throw new Error('not an NBD greeting');
    const reply = Buffer.alloc(20);
    reply.writeUInt32BE(3, 0); // FIXED_NEWSTYLE | NO_ZEROES
    reply.writeBigUInt64BE(0x49484156454f5054n, 4);
    reply.writeUInt32BE(1, 12); // NBD_OPT_EXPORT_NAME, name '' (length 0)
    sock.write(reply);
    const info = await sock.read(10);
    expect(info.readBigUInt64BE(0), 'export size').to.equal(BigInt(SECTORS * SECTOR));
    return new Conn(sock, feGen, onReply, onEnd);
  }

  send(op: Op, payload: Buffer | null): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
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

describe('blk chaos: SIGKILL of the back-end (and front-end, server) under a random NBD workload', function () {
  const s = useScratch(this, 3_600_000);

  it(`${KILLS} kills, seed ${SEED}: every request answered or its connection closed, errors only from kills, reads and the image file match the model`, async () => {
    const prng = new Prng(SEED);
    const t0 = Date.now();
    const image = s.path('disk.img');
    writeFileSync(image, Buffer.alloc(SECTORS * SECTOR));
    const nbdPath = s.path('nbd.sock');

    const failures: string[] = [];
    const failure = (line: string): void => {
      if (failures.length < 30) failures.push(line);
      wake();
    };
    /** Waiters woken on every reply, connection end, process exit or failure. */
    let waiters: (() => void)[] = [];
    const wake = (): void => {
      for (const w of waiters.splice(0)) w();
    };
    /** Resolve once `cond()` holds (re-checked on every event); a failure or the bound throws. */
    const until = async (cond: () => boolean, what: string, ms = WAIT_MS): Promise<void> => {
      if (DEBUG) console.log(`      ${((Date.now() - t0) / 1000).toFixed(1)} s: until ${what}`);
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
    const tails = (): string => s.procs.map((p) => `--- ${p.name} (pid ${p.child.pid}, ${p.running ? 'running' : `exit ${String(p.exitCode)}`}):\n${p.stderr.slice(-1500)}`).join('\n');

    // ---- the model ----
    const cand: number[][] = Array.from({ length: SECTORS }, () => [0]);
    const busyW = new Int32Array(SECTORS);
    const busyR = new Int32Array(SECTORS);
    const stats = { sent: 0, ok: 0, eio: 0, eshutdown: 0, unanswered: 0, reads: 0, sectorsChecked: 0, gap: 0, gapOk: 0, unknownWrites: 0, closes: 0 };
    const kills = { backend: 0, frontend: 0, server: 0 };
    let completions = 0;
    let nextId = 1;
    /** Back-end losses begun (a back-end kill, or a server kill: the back-end exits with it). */
    let losses = 0;
    let serverKills = 0;
    /** A back-end kill is under way and the front-end has not said "back-end lost" yet. */
    let lossUnseen = false;
    /** A server kill is under way: its front-end may still answer, and then exits. */
    let serverDying = false;
    /** The front-end said "back-end lost" and no new back-end was started yet. */
    let noBackend = false;
    let feGen = 0;
    let stopping = false;
    const conns: Conn[] = [];
    /** Connections this test closes itself. */
    const ours = new Set<Conn>();

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
    const name = (op: Op): string => `#${op.id} ${NAMES[op.type]} sectors ${op.sector}+${op.count}`;

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
      if (op.gap && noBackend) failure(`${name(op)}, sent while no back-end was there, was answered (error ${error}) before a back-end was started`);
      if (error === 0) {
        stats.ok++;
        if (op.gap) stats.gapOk++;
        if (op.type === CMD.READ) {
          stats.reads++;
          checkSectors(data as Buffer, op.sector, `${name(op)} answered OK`);
        } else if (isWrite(op.type)) {
          const v = valueOf(op);
          for (let i = op.sector; i < op.sector + op.count; i++) cand[i] = [v];
        } else {
          // flush() is a barrier (decisions.md): every write the server read before this FLUSH —
          // all those sent before it on this connection — was answered before the FLUSH was.
          const early = [...c.inflight.values()].filter((w) => isWrite(w.type) && w.id < op.id);
          if (early.length > 0) failure(`${name(op)} answered OK before the writes sent before it on its connection: ${early.map(name).join(', ')}`);
        }
        return;
      }
      // An error: the write may or may not have landed.
      unknown(op);
      if (error === EIO) {
        stats.eio++;
        if (!(losses > op.lossesAtSend || op.mayBeOnDeadDevice)) failure(`${name(op)} got EIO with no back-end lost while it was in flight (sent after the front-end said "back-end lost"${op.gap ? ', while no back-end was there' : ''})`);
      } else if (error === ESHUTDOWN) {
        stats.eshutdown++;
        if (!(serverKills > op.serverKillsAtSend || op.serverDying)) failure(`${name(op)} got ESHUTDOWN with no server kill while it was in flight`);
      } else {
        failure(`${name(op)} got error ${error}: never allowed`);
      }
    };

    const onEnd = (c: Conn, why: string): void => {
      const i = conns.indexOf(c);
      if (i >= 0) conns.splice(i, 1);
      stats.closes++;
      if (why !== 'closed') failure(`connection ${c.feGen}: ${why}`);
      else if (c.feGen === feGen && !ours.has(c)) failure(`an NBD connection closed with no front-end kill (${c.inflight.size} requests in flight); ${tails()}`);
      for (const op of c.inflight.values()) {
        settle(op);
        stats.unanswered++;
        unknown(op);
      }
      c.inflight.clear();
      c.sock.destroy();
      wake();
    };

    const send = (c: Conn, type: number, sector: number, count: number): Op => {
      const id = nextId++;
      const op: Op = {
        id, cookie: BigInt(id), type, sector, count, conn: c,
        lossesAtSend: losses, serverKillsAtSend: serverKills, serverDying, mayBeOnDeadDevice: lossUnseen, gap: noBackend,
        timer: setTimeout(() => failure(`${name(op)} unanswered after ${WAIT_MS} ms (its connection still open)`), WAIT_MS),
      };
      if (noBackend) stats.gap++;
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
      const type = r < 40 ? CMD.WRITE : r < 72 ? CMD.READ : r < 80 ? CMD.FLUSH : r < 90 ? CMD.TRIM : CMD.WRITE_ZEROES;
      if (type === CMD.FLUSH) {
        send(c, type, 0, 0);
        return true;
      }
      // Mostly small requests; some up to 256 KiB (the driver's split size) and past it.
      const count = prng.bool(0.8) ? 1 + prng.int(16) : 1 + prng.int(640);
      const sector = prng.int(SECTORS - count + 1);
      if (!free(type, sector, count)) return false;
      send(c, type, sector, count);
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
    const watch = (p: Proc): Proc => {
      void p.exited.then(({ code, signal }) => {
        if (!expected.has(p)) failure(`${p.name} exited (${String(code ?? signal)}) on its own; stderr: ${p.stderr.slice(-2000)}`);
        wake();
      });
      return p;
    };
    const startServer = async (): Promise<Proc> => {
      const p = watch(s.spawn('server', SERVER_BIN, ['-l', '16M', '-n', '2', '-V', '3', '-P', '0x8002', '-S', s.server]));
      await p.untilStderr(/listening on/, WAIT_MS);
      return p;
    };
    const startBackend = async (): Promise<Proc> => {
      const p = watch(s.spawn('blk-backend', BLK_BACKEND, ['-S', s.server, image]));
      await p.untilStderr(/serving .* as peer 0/, WAIT_MS);
      return p;
    };
    const startFrontend = async (): Promise<Proc> => {
      feGen++;
      const p = watch(s.spawn('blk-frontend', BLK_FRONTEND, ['-S', s.server, '--nbd', nbdPath]));
      await p.untilStderr(/serving NBD on/, WAIT_MS);
      for (let i = 0; i < CONNECTIONS; i++) conns.push(await Conn.open(nbdPath, feGen, onReply, onEnd));
      setImmediate(pump);
      return p;
    };
    const count = (p: Proc, re: RegExp): number => (p.stderr.match(re) ?? []).length;
    /** Wait until `n` more requests were settled (the workload moves). */
    const progress = (n: number, what: string): Promise<void> => {
      const target = completions + n;
      return until(() => completions >= target, `${n} completions ${what}`);
    };
    /** Wait for the exit of `p` (expected), bounded. */
    const exitOf = async (p: Proc, what: string): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
      let r: { code: number | null; signal: NodeJS.Signals | null } | null = null;
      void p.exited.then((x) => {
        r = x;
        wake();
      });
      await until(() => r !== null, `${p.name} to exit ${what}`);
      return r as unknown as { code: number | null; signal: NodeJS.Signals | null };
    };
    const state = (): string =>
      `kills ${JSON.stringify(kills)}; ${JSON.stringify(stats)}; completions ${completions}; in flight ${conns.map((c) => [...c.inflight.values()].map(name).join(' ')).join(' | ')}`;

    let server = await startServer();
    let be = await startBackend();
    let fe = await startFrontend();
    await progress(30, 'at start');

    const plan: Victim[] = [];
    for (let k = 0; k < KILLS; k++) plan.push(ONLY ?? (KILLS > 2 && k % 3 === 1 ? 'frontend' : KILLS > 2 && k % 6 === 3 ? 'server' : 'backend'));
    for (let k = plan.length - 1; k > 0; k--) {
      const j = prng.int(k + 1);
      [plan[k], plan[j]] = [plan[j], plan[k]];
    }

    for (const [step, victim] of plan.entries()) {
      await progress(1 + prng.int(120), `before kill ${step + 1} (${victim})`);
      kills[victim]++;
      if (DEBUG) console.log(`      ${((Date.now() - t0) / 1000).toFixed(1)} s: kill ${step + 1}: ${victim}; ${state()}`);
      if (victim === 'backend') {
        const lost = count(fe, /back-end lost, waiting/g);
        const back = count(fe, /back-end back/g);
        lossUnseen = true;
        losses++;
        expected.add(be);
        await be.kill('SIGKILL');
        await exitOf(be, 'after SIGKILL');
        await fe.until(() => count(fe, /back-end lost, waiting/g) > lost, '"back-end lost, waiting"', WAIT_MS);
        lossUnseen = false;
        noBackend = true;
        // Requests sent now wait for the next back-end: one FLUSH per connection at least, and
        // whatever the workload adds (the EIO replies made room).
        for (const c of conns) if (c.live) send(c, CMD.FLUSH, 0, 0);
        pump();
        noBackend = false;
        be = await startBackend();
        await fe.until(() => count(fe, /back-end back/g) > back, '"back-end back"', WAIT_MS);
      } else if (victim === 'frontend') {
        const dying = [...conns];
        expected.add(fe);
        feGen++; // its connections may close from here on
        await fe.kill('SIGKILL');
        await exitOf(fe, 'after SIGKILL');
        await until(() => dying.every((c) => !c.live), 'the dead front-end\'s NBD connections to close');
        fe = await startFrontend();
      } else {
        // The server: both CLIs say it went away and exit 1 (the front-end first answers what it
        // can: EIO for what was on the device, ESHUTDOWN for what waited, then closes the export).
        const dying = [...conns];
        losses++;
        serverKills++;
        lossUnseen = true;
        serverDying = true;
        feGen++; // the front-end exits: its connections close
        expected.add(server).add(be).add(fe);
        await server.kill('SIGKILL');
        const beExit = await exitOf(be, 'after its server was killed');
        const feExit = await exitOf(fe, 'after its server was killed');
        expect([beExit.code, feExit.code], `exit codes of the back-end and front-end without a server\n${tails()}`).to.deep.equal([1, 1]);
        expect(be.stderr).to.match(/server at .* went away/);
        expect(fe.stderr).to.match(/the server at .* went away/);
        await until(() => dying.every((c) => !c.live), 'the NBD connections of the front-end that lost its server to close');
        lossUnseen = false;
        serverDying = false;
        expect(existsSync(nbdPath), 'the NBD socket removed by the exiting front-end').to.equal(false);
        server = await startServer();
        be = await startBackend();
        fe = await startFrontend();
      }
      await progress(10, `after kill ${step + 1} (${victim})`);
    }
    await progress(30, 'after the last kill');

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
    expected.add(be);
    await be.kill('SIGKILL');
    await exitOf(be, 'after the last SIGKILL');
    const file = readFileSync(image);
    expect(file.length).to.equal(SECTORS * SECTOR);
    checkSectors(file, 0, 'the image file after the last kill');
    expect(failures, 'failures').to.deep.equal([]);
    expect(file.equals(whole), 'the image file equals the last READ of the whole disk').to.equal(true);
    // And the back-end restarted on that image serves it.
    const back = count(fe, /back-end back/g);
    be = await startBackend();
    await fe.until(() => count(fe, /back-end back/g) > back, '"back-end back" after the last restart', WAIT_MS);
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
      expect(code, `${p.name} exit status on SIGTERM\n${p.stderr.slice(-2000)}`).to.equal(0);
    }
    expect(existsSync(nbdPath), 'the NBD socket after the front-end exited').to.equal(false);
    expect(s.procs.filter((p) => p.running).map((p) => p.name), 'still running').to.deep.equal([]);
    expected = new Set();

    const summary = `blk chaos: seed ${SEED}; kills: back-end ${kills.backend}, front-end ${kills.frontend}, server ${kills.server}; ${JSON.stringify(stats)}`;
    console.log(`      ${summary}`);
    expect(failures, 'failures').to.deep.equal([]);
    if (kills.backend > 0) expect(stats.gap, 'requests sent while no back-end was there').to.be.greaterThan(0);
    // Some requests were on the device at a kill (twelve are in flight nearly all the time).
    if (kills.backend + kills.server >= 2) expect(stats.eio, 'EIO replies (requests in flight at a kill)').to.be.greaterThan(0);
    expect(stats.reads).to.be.greaterThan(10 + plan.length);
  });
});
