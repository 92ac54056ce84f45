/**
 * Chaos (issue 9 item 7, first bullet): a pattern stream both ways through vshm-server +
 * vshm-console-backend + vshm-console-frontend while each of the three is killed with SIGKILL
 * at random points of the stream and started again; at the end both received streams are
 * compared with what was sent.
 *
 * Wiring: "out" = the test writes to the front-end's bridge socket (--bridge), reads the
 * back-end's stdout; "in" = the test writes to the back-end's stdin, reads the bridge socket.
 * Each direction is a sequence of numbered fixed-size records (RECORD_BYTES, see record()): the
 * direction letter, the sequence number, a check string derived from both, the sequence number
 * again, a newline. Any byte that is wrong or in the wrong place shows.
 *
 * Kills: VSHM_CHAOS_KILLS of each process (default 10; 100 for a long run), in an order drawn
 * from a seeded PRNG (VSHM_CHAOS_SEED), each at a random point of the stream: after a random
 * number of records flowed in both directions since the last restart. Kills are sequential: the
 * killed process is started again and the next kill waits until both directions flow again.
 *
 * What may be lost, precisely (docs/protocol.md §4.10, delivery): only data that was inside a
 * killed front-end or back-end process, or in its pipes, socket or rings, at the moment of the
 * kill — never because of a server kill, never data written after the kill. Checked as: a lost
 * record n of a direction must lie in the window of some kill of the front-end or back-end,
 * [next record not yet received at the kill, first record written after the kill). The writer
 * toward the killed process stops at the kill and resumes on the new process, so its window ends
 * at the kill. One exception, by construction of the protocol: when the front-end is killed, the
 * back-end may still fill the dead front-end's receive buffers until it notices (its line
 * "front-end left"), so the "in" window of a front-end kill ends at that line.
 * A record cut by a kill (a chain boundary inside it, the rest inside the dead process) arrives
 * as a prefix glued to the suffix of a later record on one line ("torn"); both records count as
 * lost and must be explained as above; torn pieces must still match the pattern.
 * Never allowed: a duplicated record (or a torn suffix of a record already received), a record
 * out of order, a line that is not made of pattern bytes, a loss outside every kill window.
 */
import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { Prng } from '@vshm/transport/testing';
import { BACKEND_BIN, FRONTEND_BIN, useScratch, type Proc } from './e2e-procs.js';

const KILLS = Number(process.env.VSHM_CHAOS_KILLS ?? 10);
const SEED = Number(process.env.VSHM_CHAOS_SEED ?? 0x5eed9);
/** A bound for each wait (a safety net; nothing is timed). */
const WAIT_MS = 120_000;
const SEQ_DIGITS = 10;
const CHECK_CHARS = 9;
/** dir + seq + '-' + check + '-' + seq + '\n' */
const RECORD_BYTES = 1 + SEQ_DIGITS + 1 + CHECK_CHARS + 1 + SEQ_DIGITS + 1;

type Dir = 'F' | 'B';

function check(dir: Dir, n: number): string {
  const p = new Prng((n * 2654435761 + (dir === 'F' ? 0x1234567 : 0x7654321)) >>> 0);
  let s = '';
  for (let i = 0; i < CHECK_CHARS; i++) s += 'abcdefghijklmnopqrstuvwxyz'[p.int(26)];
  return s;
}

/** Record n of a direction (RECORD_BYTES, newline included). */
export function record(dir: Dir, n: number): string {
  const seq = String(n).padStart(SEQ_DIGITS, '0');
  return `${dir}${seq}-${check(dir, n)}-${seq}\n`;
}

/** The record number of a whole line, or null if the line is not exactly a record. */
function parseRecord(dir: Dir, line: string): number | null {
  if (line.length !== RECORD_BYTES - 1 || line[0] !== dir) return null;
  const n = Number(line.slice(1, 1 + SEQ_DIGITS));
  if (!Number.isSafeInteger(n) || record(dir, n) !== `${line}\n`) return null;
  return n;
}

/** Checks one received stream, fed chunk by chunk across process instances. */
class StreamChecker {
  /** Next record expected in order (= last whole record received + 1). */
  next = 0;
  received = 0;
  bytes = 0;
  duplicated = 0;
  reordered = 0;
  corrupted: string[] = [];
  /** The first duplicates and reorders, for the failure message. */
  readonly events: string[] = [];
  torn = 0;
  /** Lost record numbers (gaps and torn records). */
  readonly lost: number[] = [];
  private partial = '';
  private listeners: (() => void)[] = [];

  constructor(readonly dir: Dir) {}

  feed(chunk: Buffer): void {
    this.bytes += chunk.length;
    const text = this.partial + chunk.toString('latin1');
    const lines = text.split('\n');
    this.partial = lines.pop() as string;
    for (const line of lines) this.line(line);
    for (const l of this.listeners.splice(0)) l();
  }

  /** Resolves on the next fed chunk (or after a bound). */
  changed(): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, 1000);
      this.listeners.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private line(line: string): void {
    const n = parseRecord(this.dir, line);
    if (n !== null) {
      this.whole(n);
      return;
    }
    // Torn: the prefix of record j, then the suffix of record m (j < m), cut by a kill.
    const t = this.tornParts(line);
    if (t === null) {
      this.corrupted.push(line.slice(0, 80));
      return;
    }
    this.torn++;
    if (process.env.VSHM_CHAOS_DEBUG) console.log(`torn ${this.dir} at next ${this.next}: ${JSON.stringify(line)} -> ${JSON.stringify(t)} during ${this.phase}`);
    if (t.whole) {
      // The prefix of a record lost with a killed process, then a whole record.
      this.whole(t.m as number);
      return;
    }
    if (t.m !== null && t.m < this.next) {
      this.duplicated++; // a piece of a record that already arrived whole
      return;
    }
    if (t.m !== null) {
      for (let k = this.next; k <= t.m; k++) this.lost.push(k);
      this.next = t.m + 1;
    }
  }

  /** What the test is doing (for the failure message). */
  phase = 'start';

  private whole(n: number): void {
    if (n > this.next + 5000 && this.events.length < 6) this.events.push(`jump from ${this.next} to ${n} during ${this.phase}`);
    if (n >= this.next) {
      for (let k = this.next; k < n; k++) this.lost.push(k);
      this.next = n + 1;
      this.received++;
      return;
    }
    // Behind: either a duplicate (received before) or out of order (reported lost before).
    const i = this.lost.indexOf(n);
    if (i >= 0) {
      this.lost.splice(i, 1);
      if (this.reordered++ < 3) this.events.push(`record ${n} after ${this.next - 1}`);
    } else if (this.duplicated++ < 3) {
      this.events.push(`record ${n} again after ${this.next - 1}`);
    }
  }

  /** Split a torn line into a record prefix and a record suffix; null if no split fits. */
  private tornParts(line: string): { j: number | null; m: number | null; whole: boolean } | null {
    // Only the newline of some record is left: the cut began at a record boundary.
    if (line.length === 0) return { j: null, m: null, whole: false };
    // k = 0: the cut began at a record boundary (only a suffix is left of this line).
    for (let k = 0; k <= line.length; k++) {
      const head = line.slice(0, k);
      const tail = line.slice(k);
      if (tail.length > RECORD_BYTES - 1) continue;
      const j = this.prefixOf(head);
      if (j === undefined) continue;
      const whole = parseRecord(this.dir, tail);
      if (whole !== null) return { j, m: whole, whole: true };
      if (j === undefined) continue;
      const m = this.suffixOf(tail);
      if (m === undefined) continue;
      return { j, m, whole: false };
    }
    return null;
  }

  /** The record `head` is a proper prefix of (null: too short to tell), or undefined: none. */
  private prefixOf(head: string): number | null | undefined {
    if (head.length === 0) return null;
    // At most the whole record without its newline (the cut may begin at the newline).
    if (head[0] !== this.dir || head.length > RECORD_BYTES - 1) return undefined;
    if (head.length < 1 + SEQ_DIGITS) return /^\d*$/.test(head.slice(1)) ? null : undefined;
    const n = Number(head.slice(1, 1 + SEQ_DIGITS));
    return Number.isSafeInteger(n) && record(this.dir, n).startsWith(head) ? n : undefined;
  }

  /** The record `tail` (newline excluded) is a proper suffix of (null: too short), or undefined. */
  private suffixOf(tail: string): number | null | undefined {
    // Only the '-' before the trailing number makes the number whole: digits alone may be the
    // end of any record.
    // Empty: the cut ended right before a record's newline.
    if (tail.length <= SEQ_DIGITS) return /^\d*$/.test(tail) ? null : undefined;
    const n = Number(tail.slice(-SEQ_DIGITS));
    return Number.isSafeInteger(n) && record(this.dir, n).endsWith(`${tail}\n`) ? n : undefined;
  }
}

/** Writes one direction's records to whatever stream is current; pauses while there is none. */
class Writer {
  sent = 0;
  private target: NodeJS.WritableStream | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  readonly done: Promise<void>;

  constructor(readonly dir: Dir) {
    this.done = this.run();
  }

  /** Switch to a new stream (null: pause now — called right before a kill). */
  set(target: NodeJS.WritableStream | null): void {
    this.target = target;
    this.wake?.();
  }

  stop(): void {
    this.stopped = true;
    this.target = null;
    this.wake?.();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const t = this.target;
      if (t === null) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        continue;
      }
      // A burst of records, then yield: back-pressure pauses the writer until drain.
      let chunk = '';
      for (let i = 0; i < 16; i++) chunk += record(this.dir, this.sent + i);
      this.sent += 16;
      const ok = t.write(chunk);
      if (!ok) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            t.off('drain', done);
            t.off('close', done);
            this.wake = null;
            resolve();
          };
          t.on('drain', done);
          t.on('close', done);
          this.wake = done; // a switch or stop ends the wait too
        });
      } else {
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }
}

interface Window {
  from: number;
  to: number;
  what: string;
}

describe('chaos: SIGKILL of server, back-end and front-end under a two-way stream (issue 9 item 7)', function () {
  const s = useScratch(this, 3_600_000);

  it(`${KILLS} kills of each process, seed ${SEED}: nothing duplicated, reordered or corrupted; lost only inside killed processes`, async () => {
    const prng = new Prng(SEED);
    const out = new StreamChecker('F'); // front-end → back-end
    const inn = new StreamChecker('B'); // back-end → front-end
    const outWriter = new Writer('F');
    const inWriter = new Writer('B');
    const windows: { F: Window[]; B: Window[] } = { F: [], B: [] };
    const kills = { server: 0, backend: 0, frontend: 0 };
    const bridge = s.path('bridge.sock');
    let expectedExit: Proc | null = null;
    let failure: Error | null = null;

    const watch = (p: Proc): void => {
      void p.exited.then(({ code, signal }) => {
        if (p !== expectedExit && failure === null) failure = new Error(`${p.name} exited (${String(code ?? signal)}) on its own; stderr: ${p.stderr.slice(-3000)}`);
      });
    };
    const startServer = async (): Promise<Proc> => {
      const p = await s.startServer();
      watch(p);
      return p;
    };
    const startBackend = async (): Promise<Proc> => {
      const p = s.spawn('backend', BACKEND_BIN, ['-S', s.server, '--settle-ms', '0'], { keepStdout: false });
      p.child.stdout?.on('data', (c: Buffer) => out.feed(c));
      watch(p);
      await p.untilStderr(/serving the console on/, WAIT_MS);
      inWriter.set(p.child.stdin);
      return p;
    };
    let client: Socket | null = null;
    const startFrontend = async (): Promise<Proc> => {
      const p = s.spawn('frontend', FRONTEND_BIN, ['-S', s.server, '--wait-forever', '--bridge', bridge], { keepStdout: false });
      watch(p);
      await p.untilStderr(/listening on/, WAIT_MS);
      const c = connect(bridge);
      c.on('data', (chunk: Buffer) => inn.feed(chunk));
      c.on('error', () => {}); // a killed front-end resets the connection
      await new Promise<void>((resolve, reject) => {
        c.once('connect', resolve);
        c.once('error', reject);
      });
      client = c;
      outWriter.set(c);
      return p;
    };

    /** Wait until both directions received `n` more whole records (the system is recovered). */
    const flow = async (n: number, what: string): Promise<void> => {
      const o = out.next + n;
      const i = inn.next + n;
      const deadline = Date.now() + WAIT_MS;
      while (out.next < o || inn.next < i) {
        if (failure !== null) throw failure;
        if (Date.now() > deadline) {
          throw new Error(`no flow ${what}: out ${out.next}/${o}, in ${inn.next}/${i}; stderr:\n${s.procs.map((p) => `${p.name}: ${p.stderr.slice(-1500)}`).join('\n')}`);
        }
        await Promise.race([out.changed(), inn.changed()]);
      }
    };

    let server = await startServer();
    let be = await startBackend();
    let fe = await startFrontend();
    await flow(50, 'at start');

    const plan: ('server' | 'backend' | 'frontend')[] = [];
    for (let k = 0; k < KILLS; k++) plan.push('server', 'backend', 'frontend');
    for (let k = plan.length - 1; k > 0; k--) {
      const j = prng.int(k + 1);
      [plan[k], plan[j]] = [plan[j], plan[k]];
    }

    for (const [step, victim] of plan.entries()) {
      out.phase = inn.phase = `before kill ${step + 1} (${victim})`;
      await flow(1 + prng.int(400), `before kill ${step + 1} (${victim})`);
      out.phase = inn.phase = `kill ${step + 1} (${victim})`;
      kills[victim]++;
      if (victim === 'server') {
        expectedExit = server;
        await server.kill('SIGKILL');
        server = await startServer();
      } else if (victim === 'backend') {
        inWriter.set(null);
        windows.F.push({ from: out.next, to: outWriter.sent, what: `back-end kill ${kills.backend}` });
        windows.B.push({ from: inn.next, to: inWriter.sent, what: `back-end kill ${kills.backend}` });
        expectedExit = be;
        await be.kill('SIGKILL');
        await be.exited; // all of its stdout is in before the next back-end writes
        be = await startBackend();
      } else {
        outWriter.set(null);
        const left = (be.stderr.match(/front-end left/g) ?? []).length;
        const fromIn = inn.next;
        windows.F.push({ from: out.next, to: outWriter.sent, what: `front-end kill ${kills.frontend}` });
        expectedExit = fe;
        const dying = client as Socket | null;
        const drained = dying === null || dying.closed ? Promise.resolve() : new Promise((resolve) => dying.once('close', resolve));
        await fe.kill('SIGKILL');
        await fe.exited;
        await drained; // what the dead front-end had sent us is read before the socket closes
        client = null;
        // The back-end may fill the dead front-end's receive buffers until it notices.
        await be.until(() => (be.stderr.match(/front-end left/g) ?? []).length > left, 'front-end left', WAIT_MS);
        windows.B.push({ from: fromIn, to: inWriter.sent, what: `front-end kill ${kills.frontend}` });
        fe = await startFrontend();
      }
      expectedExit = null;
    }
    await flow(50, 'after the last kill');

    // Drain: stop writing and wait for everything sent to arrive.
    outWriter.stop();
    inWriter.stop();
    const deadline = Date.now() + WAIT_MS;
    while ((out.next < outWriter.sent || inn.next < inWriter.sent) && Date.now() < deadline && failure === null) {
      await Promise.race([out.changed(), inn.changed()]);
    }
    if (failure !== null) throw failure;
    // Whatever did not arrive is lost (and must be explained like any other loss).
    for (let k = out.next; k < outWriter.sent; k++) out.lost.push(k);
    for (let k = inn.next; k < inWriter.sent; k++) inn.lost.push(k);

    const unexplained = (c: StreamChecker, w: Window[]): number[] => c.lost.filter((n) => !w.some((x) => n >= x.from && n < x.to));
    const badOut = unexplained(out, windows.F);
    const badIn = unexplained(inn, windows.B);
    const summary =
      `chaos: seed ${SEED}; kills: server ${kills.server}, back-end ${kills.backend}, front-end ${kills.frontend}; ` +
      `out (front-end → back-end): ${outWriter.sent} records sent, ${out.received} received (${out.bytes} bytes compared), ${out.lost.length} lost (${out.torn} torn), ${out.duplicated} duplicated, ${out.reordered} reordered, ${out.corrupted.length} corrupted, ${badOut.length} lost outside a kill window; ` +
      `in (back-end → front-end): ${inWriter.sent} records sent, ${inn.received} received (${inn.bytes} bytes compared), ${inn.lost.length} lost (${inn.torn} torn), ${inn.duplicated} duplicated, ${inn.reordered} reordered, ${inn.corrupted.length} corrupted, ${badIn.length} lost outside a kill window`;
    console.log(`      ${summary}`);
    const show = (ns: number[]): string => ns.slice(0, 20).join(', ');
    expect(out.corrupted, 'corrupted lines (out)').to.deep.equal([]);
    expect(inn.corrupted, 'corrupted lines (in)').to.deep.equal([]);
    const events = `out: ${out.events.join('; ')}; in: ${inn.events.join('; ')}`;
    expect([out.duplicated, inn.duplicated], `duplicated records (out, in): ${events}`).to.deep.equal([0, 0]);
    expect([out.reordered, inn.reordered], `reordered records (out, in): ${events}`).to.deep.equal([0, 0]);
    expect(badOut, `out: lost outside every kill window (first: ${show(badOut)})`).to.deep.equal([]);
    expect(badIn, `in: lost outside every kill window (first: ${show(badIn)})`).to.deep.equal([]);
    // The stream really went through: far more records arrived than the kills could take.
    expect(out.received).to.be.greaterThan(100 + plan.length);
    expect(inn.received).to.be.greaterThan(100 + plan.length);
  });
});
