/**
 * Structure-aware queue-operation fuzzing: an honest driver (DriverQueue) and an honest device
 * (DeviceQueue) over one buffer, driven by a seeded random sequence of the operations each side
 * may do at any time — add (chain or indirect), publish, pop, push, publish used, collect, and
 * turning notifications/callbacks off and on — with or without EVENT_IDX. Where the hostile
 * generators (hostile.ts) check that a lying peer cannot hurt the engine, this one checks that
 * two honest engines never disagree, whatever the interleaving:
 *
 * - no operation throws, and neither queue ever reports itself broken;
 * - the device pops chains in avail order, each with exactly the segments the driver posted
 *   (addresses, lengths, readable/writable split), and reads the bytes the driver wrote;
 * - the driver gets every token back exactly once, in the order the device pushed them, with the
 *   `len` the device pushed and the bytes the device wrote;
 * - no lost wake-up: after a side re-armed notifications and saw nothing pending, the other
 *   side's next publish that brings it work says "notify";
 * - at the end both sides drain completely and hold nothing in flight.
 *
 * A failure throws {@link HostileAssertionError} naming the seed (`runQueueOpsCase(seed)`
 * reproduces it).
 */
import { MemoryView } from '../ring/memory.js';
import { packedRingAddresses } from '../ring/ring-layout.js';
import { createAccessPolicy } from '../ring/validation.js';
import { DeviceQueue } from '../ring/device-queue.js';
import { DriverQueue } from '../ring/driver-queue.js';
import { HostileAssertionError } from './hostile.js';
import { Prng } from './prng.js';

const MEM = 0x30000;
const BUF_BASE = 0x10000;
const SLOT = 1024;
/** Buffer slots; a queue holds at most 64 requests, so a free one is always there. */
const SLOTS = (MEM - BUF_BASE) / SLOT;
const TABLE_BASE = 0x8000;
const MAX_SEGS = 4;

interface Posted {
  token: number;
  head: number;
  readable: number[]; // flat [addr, len, …]
  writable: number[];
  /** Bytes the device pushed as written, once pushed. */
  written: number;
  /** Its buffer slot (and indirect table slot), held until the token is collected. */
  slot: number;
}

export interface QueueOpsResult {
  seed: number;
  /** Operations executed. */
  ops: number;
  /** Requests that went the whole way round. */
  completed: number;
}

/** Run one seeded sequence of `steps` operations; throws HostileAssertionError on a failure. */
export function runQueueOpsCase(seed: number, steps = 200): QueueOpsResult {
  const rng = new Prng(seed);
  const fail = (msg: string, cause?: unknown): never => {
    throw new HostileAssertionError(seed, msg, { cause });
  };
  const size = 1 << rng.int(7); // 1 … 64
  const eventIdx = rng.bool();
  const indirect = rng.bool();
  const mem = new MemoryView(new ArrayBuffer(MEM));
  const q = packedRingAddresses(size, 0x100);
  const policy = createAccessPolicy({ rwSize: MEM, outputSectionSize: 0, ownPeer: 0, enforceIsolation: false });
  const drv = new DriverQueue<number>({ ...q, memory: mem, eventIdx, indirect });
  const dev = new DeviceQueue({ ...q, memory: mem, policy, eventIdx, indirect });

  // Driver-side truth: posted by avail order, and the order the device pushed them.
  const byToken = new Map<number, Posted>();
  const availOrder: Posted[] = []; // published or not, in add order
  let published = 0; // how many of availOrder the driver has published
  let popped = 0; // how many of availOrder the device has popped
  const held: { p: Posted; chain: ReturnType<DeviceQueue['pop']> }[] = [];
  const pushedOrder: Posted[] = [];
  let collected = 0;
  let nextToken = 1;
  let deviceAsleep = false; // re-armed and saw nothing: waits for a kick
  let driverAsleep = false; // re-armed and saw nothing: waits for an interrupt
  let ops = 0;

  const pattern = (token: number, i: number): number => (token * 31 + i * 7) & 0xff;
  // A request's buffers stay its own until the driver collected it: a slot taken by token number
  // alone was handed to a later token while an earlier one was still in flight.
  const freeSlots = Array.from({ length: SLOTS }, (_, k) => SLOTS - 1 - k);

  const add = (): void => {
    const nSegs = 1 + rng.int(MAX_SEGS);
    const nr = rng.int(nSegs + 1);
    const useIndirect = indirect && nSegs > 1 && rng.bool(0.5);
    if (!useIndirect && drv.numFree < nSegs) return;
    if (useIndirect && drv.numFree < 1) return;
    const token = nextToken++;
    const slot = freeSlots.pop();
    if (slot === undefined) fail(`no free buffer slot with ${byToken.size} requests in flight`);
    const base = BUF_BASE + slot! * SLOT;
    const readable: number[] = [];
    const writable: number[] = [];
    let off = 0;
    for (let s = 0; s < nSegs; s++) {
      const len = 1 + rng.int(SLOT / MAX_SEGS - 1);
      (s < nr ? readable : writable).push(base + off, len);
      if (s < nr) for (let i = 0; i < len; i++) mem.u8[base + off + i] = pattern(token, off + i);
      else mem.u8.fill(0, base + off, base + off + len);
      off += len;
    }
    const head = useIndirect
      ? drv.addIndirect(readable, writable, token, TABLE_BASE + slot! * 16 * MAX_SEGS)
      : drv.add(readable, writable, token);
    if (head < 0) fail(`add refused with ${drv.numFree} free descriptors for ${useIndirect ? 1 : nSegs}`);
    const p: Posted = { token, head, readable, writable, written: -1, slot: slot! };
    byToken.set(token, p);
    availOrder.push(p);
  };

  const driverPublish = (): void => {
    const before = published;
    const notify = drv.publish();
    published = availOrder.length;
    if (published > before && deviceAsleep) {
      if (!notify) fail(`lost kick: device asleep, ${published - before} new chains published without notify`);
      deviceAsleep = false;
    }
  };

  const pop = (): void => {
    let chain;
    try {
      chain = dev.pop();
    } catch (e) {
      fail('pop threw on an honest ring', e);
    }
    if (chain === null || chain === undefined) {
      if (popped < published) fail(`pop returned null with ${published - popped} published chains pending`);
      return;
    }
    deviceAsleep = false;
    if (popped >= published) fail('pop returned a chain that was never published');
    const p = availOrder[popped++];
    if (chain.head !== p.head) fail(`popped head ${chain.head}, expected ${p.head} (token ${p.token})`);
    const segs = [...p.readable, ...p.writable];
    if (chain.segmentCount !== segs.length / 2 || chain.readableCount !== p.readable.length / 2) {
      fail(`token ${p.token}: ${chain.segmentCount}/${chain.readableCount} segments, posted ${segs.length / 2}/${p.readable.length / 2}`);
    }
    for (let s = 0; s < chain.segmentCount; s++) {
      if (chain.addrs[s] !== segs[2 * s] || chain.lens[s] !== segs[2 * s + 1]) fail(`token ${p.token}: segment ${s} differs`);
    }
    const data = new Uint8Array(chain.readableLength);
    chain.read(data, 0);
    for (let i = 0; i < data.length; i++) if (data[i] !== pattern(p.token, i)) fail(`token ${p.token}: readable byte ${i} differs`);
    held.push({ p, chain: chain });
  };

  const push = (): void => {
    if (held.length === 0) return;
    // Out of order on purpose: a device may complete chains in any order.
    const k = rng.int(held.length);
    const { p, chain } = held.splice(k, 1)[0];
    const wl = chain!.writableLength;
    const written = wl === 0 ? 0 : rng.int(wl + 1);
    const out = new Uint8Array(written);
    for (let i = 0; i < written; i++) out[i] = pattern(p.token ^ 0x55, i);
    if (chain!.write(out, 0) !== written) fail(`token ${p.token}: write copied short`);
    p.written = written;
    dev.push(chain!.head, written);
    pushedOrder.push(p);
  };

  let usedPublished = 0;
  const devicePublish = (): void => {
    const before = usedPublished;
    const notify = dev.publish();
    usedPublished = pushedOrder.length;
    if (usedPublished > before && driverAsleep) {
      if (!notify) fail(`lost interrupt: driver asleep, ${usedPublished - before} used entries published without notify`);
      driverAsleep = false;
    }
  };

  const collect = (max: number): void => {
    try {
      drv.collect((token, len) => {
        driverAsleep = false;
        const p = byToken.get(token);
        if (p === undefined) fail(`collected unknown or repeated token ${token}`);
        byToken.delete(token);
        if (collected >= usedPublished) fail(`token ${token} collected before it was published`);
        const want = pushedOrder[collected++];
        if (want.token !== token) fail(`collected token ${token}, device pushed ${want.token} at that place`);
        if (len !== p!.written) fail(`token ${token}: len ${len}, device wrote ${p!.written}`);
        let i = 0;
        for (let s = 0; s < p!.writable.length && i < len; s += 2) {
          for (let j = 0; j < p!.writable[s + 1] && i < len; j++, i++) {
            if (mem.u8[p!.writable[s] + j] !== pattern(token ^ 0x55, i)) fail(`token ${token}: written byte ${i} differs`);
          }
        }
        freeSlots.push(p!.slot);
      }, max);
    } catch (e) {
      if (e instanceof HostileAssertionError) throw e;
      fail('collect threw on an honest ring', e);
    }
  };

  for (ops = 0; ops < steps; ops++) {
    switch (rng.int(10)) {
      case 0:
      case 1:
        add();
        break;
      case 2:
        driverPublish();
        break;
      case 3:
      case 4:
        pop();
        break;
      case 5:
        push();
        break;
      case 6:
        devicePublish();
        break;
      case 7:
        collect(rng.bool(0.3) ? 1 + rng.int(4) : Number.POSITIVE_INFINITY);
        break;
      case 8:
        // Device goes to sleep only when re-arming finds nothing pending (§4.9 protocol).
        if (rng.bool()) {
          dev.disableNotifications();
          deviceAsleep = false; // polls from now on
        } else if (!dev.enableNotifications() && held.length === 0) deviceAsleep = popped === published;
        break;
      default:
        if (rng.bool()) {
          drv.disableCallbacks();
          driverAsleep = false; // polls from now on
        } else if (!drv.enableCallbacks()) driverAsleep = collected === usedPublished;
    }
    if (dev.broken || drv.broken) fail(`queue broken after op ${ops}`);
  }
  // Drain: publish, consume, complete and collect everything still in flight.
  driverPublish();
  for (let guard = 0; popped < published; guard++) {
    pop();
    if (guard > size * 4) fail('drain: device stalled');
  }
  while (held.length > 0) push();
  devicePublish();
  collect(Number.POSITIVE_INFINITY);
  if (byToken.size !== 0) fail(`${byToken.size} tokens never came back`);
  if (drv.inFlightCount !== 0 || dev.inFlightCount !== 0) fail(`in flight after drain: driver ${drv.inFlightCount}, device ${dev.inFlightCount}`);
  return { seed, ops, completed: collected };
}
