/**
 * In-process rig for the block device: a temporary raw image, BlockDevice (optionally over a
 * recording / gated image seam), the real VirtioBackend on a loopback pair, and the Linux-like
 * virtio_blk double as the driver (transport/test/fixtures/linux-like-blk.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLoopbackPair } from '../../../transport/src/testing/loopback.js';
import type { IvshmemDevice } from '../../../transport/src/ivshmem/device.js';
import { VirtioBackend } from '../../../transport/src/virtio/backend.js';
import { LinuxLikeBlk } from '../../../transport/test/fixtures/linux-like-blk.js';
import { BlockDevice, type BlockDeviceOptions } from '../../src/device.js';
import { openImage, type ImageFile } from '../../src/image.js';

/** Shared memory: 4 MiB gives the Linux allocator 1 KiB chunks (issue 11 item 5). */
export const SHM = 4 << 20;

/** A deterministic pattern: byte i of the image at `seed`. */
export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >>> 9)) & 0xff;
  return b;
}

export class TempImage {
  readonly dir = mkdtempSync(join(tmpdir(), 'vshm-blk-'));
  readonly path: string;
  constructor(bytes: number | Buffer, name = 'disk.img') {
    this.path = join(this.dir, name);
    writeFileSync(this.path, typeof bytes === 'number' ? Buffer.alloc(bytes) : bytes);
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The file-I/O seam: wraps a real image, records every call's start and end in `log`, and can
 * hold reads/writes at chosen positions until released, or fail them.
 */
export class SeamImage implements ImageFile {
  readonly inner: ImageFile;
  readonly log: string[] = [];
  /** Positions whose next read or write waits for release(position). */
  readonly holds = new Map<number, { release: () => void; promise: Promise<void>; started: boolean }>();
  /** Make the next call of this kind fail with an error carrying this errno code. */
  failNext: { op: 'read' | 'write' | 'datasync'; code: string } | null = null;

  constructor(inner: ImageFile) {
    this.inner = inner;
  }

  get path(): string {
    return this.inner.path;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  hold(position: number): void {
    let release!: () => void;
    const promise = new Promise<void>((r) => (release = r));
    this.holds.set(position, { release, promise, started: false });
  }

  release(position: number): void {
    this.holds.get(position)?.release();
    this.holds.delete(position);
  }

  /** Whether the held call at `position` has started (is waiting). */
  waiting(position: number): boolean {
    return this.holds.get(position)?.started ?? false;
  }

  private async gate(op: 'read' | 'write' | 'datasync', position: number): Promise<void> {
    const h = this.holds.get(position);
    if (h !== undefined && op !== 'datasync') {
      h.started = true;
      await h.promise;
    }
    if (this.failNext?.op === op) {
      const code = this.failNext.code;
      this.failNext = null;
      throw Object.assign(new Error(`${code}: injected failure, ${op}`), { code });
    }
  }

  async read(buf: Uint8Array, position: number): Promise<void> {
    this.log.push(`read-start ${position}`);
    await this.gate('read', position);
    await this.inner.read(buf, position);
    this.log.push(`read-done ${position}`);
  }

  async write(buf: Uint8Array, position: number): Promise<void> {
    this.log.push(`write-start ${position}`);
    await this.gate('write', position);
    await this.inner.write(buf, position);
    this.log.push(`write-done ${position}`);
  }

  async datasync(): Promise<void> {
    this.log.push('datasync-start');
    await this.gate('datasync', -1);
    await this.inner.datasync();
    this.log.push('datasync-done');
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface BlkRig {
  img: TempImage;
  image: ImageFile;
  seam: SeamImage | null;
  device: BlockDevice;
  be: IvshmemDevice;
  feDev: IvshmemDevice;
  backend: VirtioBackend;
  guest: LinuxLikeBlk;
  needs: Error[];
}

export interface RigOptions {
  size?: number | Buffer;
  device?: BlockDeviceOptions;
  seam?: boolean;
  features?: bigint;
  maxQueues?: number;
  start?: boolean;
}

const rigs: BlkRig[] = [];

export async function blkRig(o: RigOptions = {}): Promise<BlkRig> {
  const img = new TempImage(o.size ?? 1 << 20);
  const real = await openImage(img.path, { readOnly: o.device?.readOnly ?? false });
  const seam = o.seam === true ? new SeamImage(real) : null;
  const image = seam ?? real;
  const device = new BlockDevice(image, await image.size(), o.device);
  const [be, feDev] = createLoopbackPair({ size: SHM, vectors: 3, protocol: 0x8002 });
  const backend = new VirtioBackend(be, device);
  const needs: Error[] = [];
  backend.on('needs-reset', (e: Error) => needs.push(e));
  backend.start();
  const guest = new LinuxLikeBlk(feDev, { features: o.features, maxQueues: o.maxQueues });
  const r: BlkRig = { img, image, seam, device, be, feDev, backend, guest, needs };
  rigs.push(r);
  if (o.start !== false) await guest.start();
  return r;
}

export async function closeRigs(): Promise<void> {
  for (const r of rigs.splice(0)) {
    await r.backend.close();
    r.feDev.close();
    r.be.close();
    await r.image.close().catch(() => undefined);
    r.img.remove();
  }
}
