/**
 * Shared setup for the §3 device-model tests (§8 items 17–22), which prove each item on three
 * implementations of IvshmemDevice:
 *  - usePeerRig(): an IvshmemPeer in this process against a scripted fake server, which keeps its
 *    own copy of every eventfd and maps the state table, so it sees exactly what the peer does;
 *  - useTwoProcRig() (+ useConsolePair()): peers in child processes against the real server;
 *  - useLoopbackPair(): the in-process loopback pair.
 * Each use*() registers its hooks in the calling describe block. Waits are event-driven (one
 * event-loop turn at a time), bounded only by a generous timeout; nothing sleeps.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import binding from '@vshm/addon';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import { createLoopbackPair } from '../../src/testing/loopback.js';
import { IvshmemPeer, type PeerOptions } from '../../src/ivshmem/peer.js';
import { IvshmemServer } from '../../src/server/server.js';
import { FakeServer, countFds } from '../fixtures/peer-fake-server.js';
import { ChildPeer } from '../fixtures/peer-harness.js';

const b = binding;
const WAIT_MS = 20000;

/** Event-driven wait: re-check `pred` once per event-loop turn, bounded by a generous timeout. */
export async function until(pred: () => boolean, what: string): Promise<void> {
  const end = Date.now() + WAIT_MS;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** Resolves after every setImmediate queued so far (and those they queue, a few rounds deep) ran. */
export async function drain(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

/** An eventfd's counter without consuming it (fdinfo prints it in hex). */
export function eventfdCount(fd: number): number {
  const m = /eventfd-count:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m) throw new Error(`fd ${fd} is not an eventfd`);
  return parseInt(m[1], 16);
}

/** Enables interrupts on `dev` and records every delivered vector. */
export function record(dev: IvshmemDevice): number[] {
  const got: number[] = [];
  dev.onInterrupt = (v) => got.push(v);
  dev.interruptsEnabled = true;
  return got;
}

export interface PeerRig {
  fake: FakeServer;
  mem: number;
  table: Uint32Array;
  /** efd[id][v]: the fake server's copy of each eventfd. */
  efd: number[][];
  peer: IvshmemPeer | undefined;
  /** Fds of this process not held by the fake server. */
  clientFds(): number;
  /** INIT for id 1 of 2 with 3 vectors, then the standard burst (peer 0's fds, then own). */
  sendBurst(init?: Record<string, number>): void;
  connect(opts?: PeerOptions): Promise<IvshmemPeer>;
}

export function usePeerRig(): PeerRig {
  const rig = {
    peer: undefined,
    clientFds: (): number => countFds() - rig.fake.ownedCount,
    sendBurst(init: Record<string, number> = {}): void {
      rig.fake.init({ id: 1, maxPeers: 2, vectors: 3, protocol: 0x8003, ...init }, rig.mem);
      for (const id of [0, 1]) for (let v = 0; v < 3; v++) rig.fake.eventFd(id, v, rig.efd[id][v]);
    },
    async connect(opts: PeerOptions = {}): Promise<IvshmemPeer> {
      rig.sendBurst();
      rig.peer = await IvshmemPeer.fromSocket(rig.fake.cli, { binding: b, ...opts });
      return rig.peer;
    },
  } as PeerRig;
  beforeEach(() => {
    rig.fake = new FakeServer(b);
    rig.mem = rig.fake.memfd(65536);
    const tableBuf = b.mmap(rig.mem, 0, 4096, b.PROT_READ | b.PROT_WRITE);
    rig.table = new Uint32Array(tableBuf);
    rig.efd = [0, 1].map(() => [0, 1, 2].map(() => rig.fake.eventfd()));
    rig.peer = undefined;
  });
  afterEach(() => {
    rig.peer?.close();
    b.munmap(rig.table.buffer as ArrayBuffer);
    rig.fake.close();
  });
  return rig;
}

export interface TwoProcRig {
  /** The real server of the running test (after startServer()). */
  readonly server: IvshmemServer;
  startServer(opts: { memorySize: number; outputSectionSize?: number; vectors: number; protocol?: number }): Promise<string>;
  /** Start a child peer and wait until its connect() resolved; children connect in order. */
  child(path: string, mode?: string): Promise<[ChildPeer, Record<string, unknown>]>;
}

export function useTwoProcRig(): TwoProcRig {
  let dir: string;
  let server: IvshmemServer | undefined;
  let children: ChildPeer[];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-peer-'));
    children = [];
  });
  afterEach(async () => {
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.exit));
    await server?.stop();
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get server() {
      return server!;
    },
    async startServer(opts) {
      const socketPath = join(dir, 'ivshmem.sock');
      server = new IvshmemServer({ socketPath, maxPeers: 2, ...opts });
      await server.start();
      return socketPath;
    },
    async child(path, mode = '') {
      const c = new ChildPeer(path, mode);
      children.push(c);
      const ready = await c.ready();
      expect(ready.type, String(ready.message)).to.equal('ready');
      return [c, ready];
    },
  };
}

export interface ConsolePair {
  be: ChildPeer;
  fe: ChildPeer;
}

/**
 * The virtio console layout (-l 64K -V 3 -P 0x8003) with a back-end child (id 0) and a front-end
 * child (id 1), both with interrupts enabled, fresh for each test.
 */
export function useConsolePair(rig: TwoProcRig): ConsolePair {
  const pair = {} as ConsolePair;
  beforeEach(async () => {
    const path = await rig.startServer({ memorySize: 65536, vectors: 3, protocol: 0x8003 });
    let info;
    [pair.be, info] = await rig.child(path);
    expect(info).to.include({ id: 0, protocol: 0xc003, vectors: 3, windowSize: 61440 });
    [pair.fe, info] = await rig.child(path);
    expect(info).to.include({ id: 1, protocol: 0x8003 });
    await pair.be.request({ op: 'enable' });
    await pair.fe.request({ op: 'enable' });
  });
  return pair;
}

/** A fresh loopback pair per test ([back-end id 0, front-end id 1]), closed afterwards. */
export function useLoopbackPair(): { pair: [IvshmemDevice, IvshmemDevice] } {
  const rig = {} as { pair: [IvshmemDevice, IvshmemDevice] };
  beforeEach(() => {
    rig.pair = createLoopbackPair();
  });
  afterEach(() => {
    rig.pair[0].close();
    rig.pair[1].close();
  });
  return rig;
}
