/**
 * Seeded hostile-ring generator (spec §6, checklist 38/39). Each case builds a queue
 * over a fresh 64 KiB buffer, lets a hostile peer (MockDriver / MockDevice) post a mix of valid
 * chains and corrupted ring contents, runs the engine under test, and asserts:
 *
 * - device side: only RingError is ever thrown; every chain segment lies inside one section the
 *   device may read (readable) or write (writable), checked with predicates written here
 *   independently of validation.ts; every byte the device changed is in the used ring or in a
 *   writable segment it was handed; nothing beyond the window (guard region) or in the FE's
 *   output section changes; once broken it writes nothing; every case ends broken (a final
 *   avail.idx jump is forced when no mutation broke it earlier). The mutations cover every item
 *   of §6.3 (the 1024-entry cap of an indirect chain included) and the §6.1 enable checks; the
 *   honest chains between them are valid, so a natural break names the mutation that caused it
 *   (`HostileCaseResult.mutation`).
 * - driver side: only RingError is thrown; every token comes back exactly once, either through
 *   collect() (with len ≤ its writable size) or failAll(); the driver never writes the used ring.
 *
 * A failed assertion throws {@link HostileAssertionError} naming the seed, so a CI failure is
 * reproducible by hand: `runHostileDeviceCase(seed)`.
 */
import { VIRTQ_DESC_F_NEXT as NEXT, VIRTQ_DESC_F_WRITE as WRITE, VIRTQ_DESC_F_INDIRECT as INDIRECT, descTableSize, availRingSize } from 'virtio-spec-types';
import { RingError, VshmError } from '../errors.js';
import { MemoryView } from '../ring/memory.js';
import { packedRingAddresses, type QueueAddresses } from '../ring/ring-layout.js';
import { createAccessPolicy } from '../ring/validation.js';
import { DeviceQueue } from '../ring/device-queue.js';
import { DriverQueue } from '../ring/driver-queue.js';
import { MockDriver, type MockSegment } from './mock-driver.js';
import { MockDevice } from './mock-device.js';
import { Prng } from './prng.js';

/** An engine misbehaved under a hostile peer. */
export class HostileAssertionError extends VshmError {
  constructor(readonly seed: number, message: string, options?: { cause?: unknown }) {
    super('VSHM_ERR_HOSTILE_ASSERTION', '8', `hostile seed ${seed}: ${message}`, options);
  }
}

// Layout: RW 32 KiB, OUT 8 KiB, 2 peers, device = peer 0; window 48 KiB; guard up to 64 KiB.
const MEM = 0x10000;
const RW = 0x8000;
const OUT = 0x2000;
const BE = RW;
const FE = RW + OUT;
const WINDOW = RW + 2 * OUT;
const GUARD = 0xa5;

/** Independent §6.2 predicates for the device (peer 0), deliberately not using validation.ts. */
function sectionEnd(addr: number): number {
  return addr < RW ? RW : addr < FE ? FE : WINDOW;
}
function devMayRead(addr: number, len: number, iso: boolean): boolean {
  if (!(Number.isSafeInteger(addr) && addr >= 0 && addr < WINDOW && len > 0)) return false;
  if (iso && !(addr >= FE)) return false;
  return addr + len <= sectionEnd(addr);
}
function devMayWrite(addr: number, len: number, iso: boolean): boolean {
  if (!devMayRead(addr, len, false) || addr >= FE) return false;
  return !iso || addr >= BE;
}

export interface HostileCaseResult {
  seed: number;
  /** RingError code that broke the queue. */
  code: string;
  /** Whether a generated mutation broke it (false: the final forced avail.idx jump did). */
  natural: boolean;
  /**
   * The last mutation applied before the queue broke (`'bad-config'`: refused at enable), or
   * null when none was: which §6 rule a natural break exercised.
   */
  mutation: string | null;
  /** Chains popped successfully before breaking. */
  popped: number;
}

const MUTATIONS = [
  'head-oob', 'next-oob', 'loop', 'oob-addr', 'cross-section', 'overflow', 'huge-addr', 'write-perm', 'order',
  'indirect-len', 'indirect-next', 'indirect-nested', 'indirect-loop', 'avail-jump', 'dup-head', 'garbage-desc',
  'garbage-avail', 'random-avail-idx', 'bad-config', 'indirect-long', 'indirect-next-oob',
] as const;

/**
 * Bytes of one honest indirect table (at most 4 segments are posted) and how many fit below the
 * pools: a step's honest chains each get a table of their own, so that valid traffic stays valid
 * (tables that overlapped corrupted each other, and queues broke with no mutation applied).
 */
const TABLE_SLOT = 64;

/** Entries of the 'indirect-long' chain: one more than the §6.3 item 3 cap at queue sizes ≤ 1024. */
const LONG_INDIRECT = 1025;

/** Run one seeded device-side case; throws HostileAssertionError on an engine failure. */
export function runHostileDeviceCase(seed: number, maxSteps = 10): HostileCaseResult {
  const rng = new Prng(seed);
  const fail = (msg: string, cause?: unknown): never => {
    throw new HostileAssertionError(seed, msg, { cause });
  };
  const iso = rng.bool(0.3);
  const size = 1 << rng.int(6);
  const indirect = rng.bool(0.6);
  const eventIdx = rng.bool(0.5);
  const mem = new MemoryView(new ArrayBuffer(MEM));
  for (let i = 0; i < WINDOW / 4; i++) mem.u32[i] = rng.next();
  mem.u8.fill(GUARD, WINDOW);
  const policy = createAccessPolicy({ rwSize: RW, outputSectionSize: OUT, ownPeer: 0, enforceIsolation: iso });
  let q: QueueAddresses = iso
    ? { size, desc: FE, avail: FE + descTableSize(size), used: BE }
    : packedRingAddresses(size, 0x100);
  // The FE zeroes what it allocates (§5.1); the BE zeroes a used ring in its section (§5.2).
  mem.zero(q.desc, descTableSize(size));
  mem.zero(q.avail, availRingSize(size));
  if (!iso) mem.zero(q.used, 6 + 8 * size);
  const readPool = iso ? [FE + 0x800, FE + OUT] : [0x1000, RW];
  const writePool = iso ? [BE + 0x400, BE + OUT] : rng.bool() ? [0x1000, RW] : [BE + 0x400, BE + OUT];
  const tableArea = iso ? FE + 0x600 : 0xa00;
  const tableSlots = (readPool[0] - tableArea) / TABLE_SLOT;
  const mutationRate = rng.pick([0.05, 0.2, 0.5]);
  if (rng.bool(0.05)) {
    // Hostile queue configuration (§6.1).
    q = { ...q, ...rng.pick([{ desc: q.desc + 8 }, { avail: q.avail + 1 }, { used: FE }, { used: WINDOW - 8 }, { size: size * 3 }, { desc: RW - 16 }]) };
  }
  const drv = new MockDriver(mem, q);
  let dev: DeviceQueue;
  const before0 = mem.u8.slice();
  try {
    dev = new DeviceQueue({ ...q, memory: mem, policy, eventIdx, indirect });
  } catch (e) {
    if (!(e instanceof RingError)) fail('enable threw a non-RingError', e);
    if (Buffer.compare(before0, mem.u8) !== 0) fail('a refused enable wrote memory');
    return { seed, code: (e as RingError).code, natural: true, mutation: 'bad-config', popped: 0 };
  }
  const usedStart = q.used;
  const usedEnd = q.used + 6 + 8 * size;
  const randAddr = (pool: number[], len: number) => pool[0] + rng.int(Math.max(1, pool[1] - pool[0] - len));
  const inFlight: number[] = [];
  let popped = 0;
  let lastMutation: string | null = null;
  const tmp = new Uint8Array(0x2000);

  for (let step = 0; step < maxSteps && !dev.broken; step++) {
    // ---- hostile driver phase ----
    drv.readUsed();
    const posts = rng.int(size + 1);
    let tablesUsed = 0; // every chain of the previous step was popped: its table was read
    for (let k = 0; k < posts; k++) {
      const segs: MockSegment[] = [];
      const nr = rng.int(3);
      const nw = rng.int(3);
      for (let s = 0; s < nr + nw || s === 0; s++) {
        const len = rng.bool(0.1) ? 0 : 1 + rng.int(256);
        const write = s >= nr;
        segs.push({ addr: randAddr(write ? writePool : readPool, len), len, write });
      }
      const useTable = indirect && rng.bool(0.3) && tablesUsed < tableSlots;
      const head = useTable ? drv.addIndirect(segs, tableArea + TABLE_SLOT * tablesUsed++) : drv.addChain(segs);
      if (head < 0) break;
    }
    let published = false;
    if (rng.bool(mutationRate)) {
      const kind = rng.pick(MUTATIONS);
      published = mutate(kind);
      if (kind !== 'bad-config') lastMutation = kind;
    }
    if (!published) drv.publish();

    // ---- device phase ----
    const snapshot = mem.u8.slice();
    const written: number[] = []; // [addr, len] pairs handed out as writable this step
    const brokenBefore = dev.broken;
    try {
      if (rng.bool(0.3)) dev.disableNotifications();
      for (let c = dev.pop(); c; c = dev.pop()) {
        popped++;
        for (let i = 0; i < c.segmentCount; i++) {
          const a = c.addrs[i];
          const l = c.lens[i];
          const ok = c.isWritable(i) ? devMayWrite(a, l, iso) : devMayRead(a, l, iso);
          if (!ok) fail(`chain ${c.head}: segment [${a}, +${l}) (${c.isWritable(i) ? 'writable' : 'readable'}) outside the policy`);
          if (c.isWritable(i)) written.push(a, l);
        }
        c.read(tmp.subarray(0, Math.min(tmp.length, c.readableLength)));
        tmp.fill(step + 1, 0, Math.min(tmp.length, c.writableLength));
        const n = c.write(tmp.subarray(0, Math.min(tmp.length, c.writableLength)));
        if (rng.bool(0.8)) dev.push(c.head, rng.int(n + 1));
        else inFlight.push(c.head);
      }
      while (inFlight.length > 0 && rng.bool(0.5)) dev.push(inFlight.pop()!, 0);
      dev.publish();
      if (rng.bool(0.5)) dev.enableNotifications();
    } catch (e) {
      if (e instanceof HostileAssertionError) throw e;
      if (!(e instanceof RingError)) fail('device threw a non-RingError', e);
      if (!dev.broken) fail('RingError without breaking the queue', e);
    }
    const snap32 = new Uint32Array(snapshot.buffer);
    const cur32 = mem.u32;
    for (let wi = 0; wi < MEM / 4; wi++) {
      if (cur32[wi] === snap32[wi]) continue; // fast path: compare words, inspect bytes of changed ones
      for (let i = wi * 4; i < wi * 4 + 4; i++) {
        if (mem.u8[i] === snapshot[i]) continue;
        if (i >= usedStart && i < usedEnd && !brokenBefore) continue;
        let inside = false;
        for (let w = 0; w < written.length && !inside; w += 2) inside = i >= written[w] && i < written[w] + written[w + 1];
        if (!inside) fail(`device wrote byte 0x${i.toString(16)} outside the used ring and its writable segments`);
      }
    }
  }

  let natural = dev.broken;
  if (!dev.broken) {
    // Force the end: drain, then an avail.idx jump must break the queue.
    try {
      while (dev.pop() !== null) popped++;
      drv.setAvailIdx(dev.lastAvailIdx + size + 1);
      dev.pop();
      natural = false;
    } catch (e) {
      if (!(e instanceof RingError)) fail('device threw a non-RingError', e);
    }
    if (!dev.broken) fail('queue not broken after a forced avail.idx jump');
  }
  const after = mem.u8.slice();
  if (dev.pop() !== null || dev.publish() || dev.enableNotifications()) fail('broken queue still active');
  if (Buffer.compare(after, mem.u8) !== 0) fail('broken queue wrote memory');
  for (let i = WINDOW; i < MEM; i++) if (mem.u8[i] !== GUARD) fail('guard region changed');
  return { seed, code: dev.error!.code, natural, mutation: natural ? lastMutation : null, popped };

  /** Apply one mutation; returns true if it already published avail.idx. */
  function mutate(kind: (typeof MUTATIONS)[number]): boolean {
    const i = rng.int(size);
    const j = rng.int(size);
    const a = randAddr(readPool, 64);
    switch (kind) {
      case 'head-oob': drv.makeAvail(size + rng.int(65536 - size)); return false;
      case 'next-oob': drv.writeDesc(i, a, 16, NEXT, size + rng.int(65536 - size)); drv.makeAvail(i); return false;
      case 'loop': drv.writeDesc(i, a, 16, NEXT, j); drv.writeDesc(j, a, 16, NEXT, i); drv.makeAvail(i); return false;
      case 'oob-addr': drv.writeDesc(i, WINDOW + rng.int(0x100000), 1 + rng.int(64), rng.bool() ? WRITE : 0, 0); drv.makeAvail(i); return false;
      case 'cross-section': drv.writeDesc(i, rng.pick([RW, FE, WINDOW]) - 1 - rng.int(16), 32, rng.bool() ? WRITE : 0, 0); drv.makeAvail(i); return false;
      case 'overflow': drv.writeDescRaw(i, 0xffffffff - rng.int(64), 0xffffffff, 64 + rng.int(4096), rng.bool() ? WRITE : 0, 0); drv.makeAvail(i); return false;
      case 'huge-addr': drv.writeDescRaw(i, rng.next(), 0x200000 + rng.int(0xffdfffff), 16, 0, 0); drv.makeAvail(i); return false;
      case 'write-perm': drv.writeDesc(i, FE + rng.int(OUT - 64), 16, WRITE, 0); drv.makeAvail(i); return false;
      case 'order': drv.writeDesc(i, randAddr(writePool, 16), 16, WRITE | NEXT, j); drv.writeDesc(j, a, 16, 0, 0); drv.makeAvail(i); return false;
      case 'indirect-len': drv.writeDesc(i, tableArea, rng.pick([0, 8, 24, 0x100000]), INDIRECT, 0); drv.makeAvail(i); return false;
      case 'indirect-next': drv.writeDescAt(tableArea, a, 8, 0, 0); drv.writeDesc(i, tableArea, 16, INDIRECT | NEXT, j); drv.makeAvail(i); return false;
      case 'indirect-nested': drv.writeDescAt(tableArea, tableArea, 16, INDIRECT, 0); drv.writeDesc(i, tableArea, 16, INDIRECT, 0); drv.makeAvail(i); return false;
      case 'indirect-next-oob': drv.writeDescAt(tableArea, a, 8, NEXT, 1 + rng.int(65535)); drv.writeDesc(i, tableArea, 16, INDIRECT, 0); drv.makeAvail(i); return false;
      case 'indirect-loop': drv.writeDescAt(tableArea, a, 8, NEXT, 1); drv.writeDescAt(tableArea + 16, a, 8, NEXT, 0); drv.writeDesc(i, tableArea, 32, INDIRECT, 0); drv.makeAvail(i); return false;
      case 'avail-jump': drv.setAvailIdx(dev.lastAvailIdx + size + 1 + rng.int(65536 - 2 * size - 1)); return true;
      case 'dup-head': if (inFlight.length > 0) drv.makeAvail(rng.pick(inFlight)); return false;
      case 'garbage-desc': for (let k = 0; k < 4; k++) mem.u32[(q.desc >>> 2) + rng.int(4 * size)] = rng.next(); return false;
      case 'garbage-avail': for (let k = 0; k < 2; k++) mem.u16[(q.avail + 4) / 2 + rng.int(size)] = rng.next() & 0xffff; return false;
      case 'random-avail-idx': drv.setAvailIdx(rng.int(65536)); return true;
      case 'bad-config': return false; // only meaningful at enable, handled above
      case 'indirect-long': {
        // A well-formed indirect chain one entry longer than max(queue size, 1024) (§6.3.3).
        // 16 KiB of table: only the R/W section holds it (the isolated layout's sections are 8 KiB).
        if (iso) return false;
        for (let k = 0; k < LONG_INDIRECT; k++) {
          const last = k === LONG_INDIRECT - 1;
          drv.writeDescAt(tableArea + 16 * k, a, 1 + rng.int(64), last ? 0 : NEXT, last ? 0 : k + 1);
        }
        drv.writeDesc(i, tableArea, 16 * LONG_INDIRECT, INDIRECT, 0);
        drv.makeAvail(i);
        return false;
      }
    }
  }
}

export interface HostileDriverResult {
  seed: number;
  /** RingError code if the driver broke, else ''. */
  code: string;
  delivered: number;
  failed: number;
}

/** Run one seeded driver-side case (hostile device, §6.4); throws HostileAssertionError on failure. */
export function runHostileDriverCase(seed: number, maxSteps = 10): HostileDriverResult {
  const rng = new Prng(seed);
  const fail = (msg: string, cause?: unknown): never => {
    throw new HostileAssertionError(seed, msg, { cause });
  };
  const size = 1 << rng.int(6);
  const eventIdx = rng.bool();
  const mem = new MemoryView(new ArrayBuffer(MEM));
  const q = packedRingAddresses(size, 0x100);
  const drv = new DriverQueue<number>({ ...q, memory: mem, eventIdx, indirect: false });
  const dev = new MockDevice(mem, q);
  const writableOf = new Map<number, number>(); // token → writable bytes posted
  const seen = new Set<number>();
  let nextToken = 1;
  let delivered = 0;
  const usedStart = q.used;
  const usedEnd = q.used + 6 + 8 * size;
  const mutationRate = rng.pick([0.05, 0.2, 0.5]);
  for (let step = 0; step < maxSteps && !drv.broken; step++) {
    while (drv.numFree > 0 && rng.bool(0.8)) {
      const w = rng.bool() ? 1 + rng.int(128) : 0;
      const tok = nextToken++;
      const head = w > 0 ? drv.add([0x2000, 8], [0x3000, w], tok) : drv.add1(0x2000, 8, false, tok);
      if (head < 0) break;
      writableOf.set(tok, w);
    }
    drv.publish();
    for (let c = dev.popAvail(); c; c = dev.popAvail()) {
      const w = c.writable.reduce((s, [, l]) => s + l, 0);
      if (rng.bool(0.8)) dev.pushUsed(c.head, rng.int(w + 1));
    }
    let raw = false;
    if (rng.bool(mutationRate)) {
      switch (rng.int(5)) {
        case 0: dev.pushUsed(rng.int(0x10000), 0); break;
        case 1: dev.pushUsed(rng.int(size), rng.next()); break;
        case 2: dev.setUsedIdx(dev.usedIdx + size + 1 + rng.int(1000)); raw = true; break;
        case 3: dev.setUsedIdx(rng.int(65536)); raw = true; break;
        case 4: dev.writeUsedElem(rng.int(size), rng.int(2 * size), rng.int(300)); break;
      }
    }
    if (!raw) dev.publish();
    const usedBefore = mem.u8.slice(usedStart, usedEnd);
    try {
      drv.collect((tok, len) => {
        if (seen.has(tok)) fail(`token ${tok} delivered twice`);
        seen.add(tok);
        delivered++;
        const w = writableOf.get(tok);
        if (w === undefined || len > w) fail(`token ${tok}: len ${len} above its ${w} writable bytes`);
      });
      if (rng.bool(0.3)) drv.disableCallbacks();
      else drv.enableCallbacks();
    } catch (e) {
      if (e instanceof HostileAssertionError) throw e;
      if (!(e instanceof RingError)) fail('driver threw a non-RingError', e);
      if (!drv.broken) fail('RingError without breaking the queue', e);
    }
    if (Buffer.compare(usedBefore, mem.u8.subarray(usedStart, usedEnd)) !== 0) fail('driver wrote the used ring');
  }
  const code = drv.error?.code ?? '';
  const rest = drv.failAll();
  for (const tok of rest) {
    if (seen.has(tok)) fail(`token ${tok} both delivered and failed`);
    seen.add(tok);
  }
  if (seen.size !== writableOf.size) fail(`${writableOf.size - seen.size} tokens lost`);
  return { seed, code, delivered, failed: rest.length };
}
