/**
 * The image the device serves: a raw file or a block device, reached through a small async
 * interface (`ImageFile`) so tests can inject a recording or failing one (the file-I/O seam).
 *
 * Every call takes an explicit position (pread/pwrite semantics): many requests run at once on
 * one descriptor with no shared file offset. Errors are `ImageError`s naming the operation, the
 * path and the errno code.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import binding from '@vshm/addon';
import { VshmError } from '@vshm/transport';

/**
 * An image I/O failure: `code` VSHM_ERR_IMAGE; `errnoCode` is the errno name ('ENOENT', 'EIO',
 * 'ENOSPC', …), `syscall` the operation and `path` the image.
 */
export class ImageError extends VshmError {
  readonly errnoCode: string;
  readonly path: string;
  readonly syscall: string;
  /** What went wrong in words ('no such file or directory', 'not a regular file or block device'). */
  readonly reason: string;
  constructor(syscall: string, path: string, errnoCode: string, text: string, options?: { cause?: unknown }) {
    super('VSHM_ERR_IMAGE', '', `${syscall}: ${path}: ${errnoCode} (${text})`, options);
    this.errnoCode = errnoCode;
    this.path = path;
    this.syscall = syscall;
    this.reason = text;
  }

  /** Wrap a Node fs error (`ENOENT: no such file or directory, open '…'`) keeping its errno name. */
  static from(err: unknown, syscall: string, path: string): ImageError {
    if (err instanceof ImageError) return err;
    const e = err as NodeJS.ErrnoException;
    const code = typeof e?.code === 'string' ? e.code : 'EIO';
    const m = /^[A-Z0-9_]+: ([^,]+)/.exec(typeof e?.message === 'string' ? e.message : '');
    return new ImageError(syscall, path, code, m ? m[1] : String(e?.message ?? e), { cause: err });
  }
}

/** What the device needs from its image. All positions and lengths are in bytes. */
export interface ImageFile {
  readonly path: string;
  readonly readOnly: boolean;
  /** Fill `buf` from `position`; bytes past the end of the image read as zero. */
  read(buf: Uint8Array, position: number): Promise<void>;
  /**
   * Optional, synchronous: copy what the page cache already holds of [position, +length) into
   * `views` (in order; bytes past `length` untouched), never waiting for the storage, so no I/O
   * into `views` runs once it returned. Returns the bytes copied — short, down to 0, where the
   * cache ends, at end of file, or when the image cannot be read this way; never throws (the
   * caller fetches the rest with read(), which reports errors).
   */
  readCached?(views: readonly Uint8Array[], length: number, position: number): number;
  /** Write all of `buf` at `position` (resolves once the write call returned). */
  write(buf: Uint8Array, position: number): Promise<void>;
  /**
   * Make `length` bytes at `position` read as zeroes. `discard`: the range may be deallocated
   * (hole punched) — DISCARD; `zeroes`: the range stays allocated (zero-range) — WRITE_ZEROES
   * without unmap. Where the file system or device cannot do either, zeroes are written.
   */
  zeroRange(position: number, length: number, how: 'discard' | 'zeroes'): Promise<void>;
  /** fdatasync: every write that returned before this call is on stable storage when it resolves. */
  datasync(): Promise<void>;
  /** Current size in bytes (re-read from the file system or the block device each call). */
  size(): Promise<number>;
  close(): Promise<void>;
}

/** Zeroes are written in pieces of this size where fallocate cannot zero a range. */
const ZERO_CHUNK = 1 << 20;
let zeroChunk: Uint8Array | undefined;

/** fallocate errors that mean "this file system or device does not do that mode": not tried again. */
const UNSUPPORTED = new Set(['EOPNOTSUPP', 'ENOTSUP', 'ENOSYS', 'ENODEV']);
/**
 * fallocate's refusal of this one range: a block device answers EINVAL for a range not aligned to
 * its logical block size (a 512-aligned DISCARD on a 4096-byte-sector disk) or starting past its
 * end, while a mode it lacks is EOPNOTSUPP. The range is zeroed by writing, the mode kept.
 */
const THIS_RANGE = 'EINVAL';

/**
 * @internal Test seam of one image (`OpenImageOptions.seam`): stands in for the calls where a
 * test cannot make the file system fail on purpose.
 */
export interface ImageSeam {
  /** Called instead of the addon's fallocate (same arguments; reject with an errno `code`). */
  fallocate?(fd: number, mode: number, offset: number, length: number): Promise<void>;
  /**
   * Called before each write of the zero-writing fallback (one chunk of at most 1 MiB at
   * `position`); a rejection fails that write as an I/O error of the write would.
   */
  zeroWrite?(position: number, length: number): Promise<void>;
}

/** The image over a Node FileHandle (fs.promises: libuv thread pool, positioned I/O). */
class FileImage implements ImageFile {
  readonly path: string;
  readonly readOnly: boolean;
  private readonly fh: FileHandle;
  private readonly seam: ImageSeam | undefined;
  /** fallocate modes the file refused as unsupported (not for one range): not tried again for this image. */
  private readonly unsupported = new Set<'discard' | 'zeroes'>();
  /** readCached() in use: off when not wanted or once the file system said it cannot. */
  private cached: boolean;

  constructor(path: string, fh: FileHandle, readOnly: boolean, cached: boolean, seam?: ImageSeam) {
    this.path = path;
    this.fh = fh;
    this.readOnly = readOnly;
    this.cached = cached;
    this.seam = seam;
  }

  readCached(views: readonly Uint8Array[], length: number, position: number): number {
    if (!this.cached) return 0;
    try {
      const n = binding.preadCached(this.fh.fd, views, length, position);
      if (n >= 0) return n;
      this.cached = false; // EOPNOTSUPP: this file (system) cannot; do not ask per request
    } catch {
      // An I/O error or a closed descriptor: read() repeats the read and reports it.
    }
    return 0;
  }

  async read(buf: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < buf.length) {
        const { bytesRead } = await this.fh.read(buf, done, buf.length - done, position + done);
        if (bytesRead === 0) break; // end of file: the rest reads as zero
        done += bytesRead;
      }
    } catch (err) {
      throw ImageError.from(err, 'read', this.path);
    }
    if (done < buf.length) buf.fill(0, done);
  }

  async write(buf: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < buf.length) {
        const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, position + done);
        if (bytesWritten === 0) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        done += bytesWritten;
      }
    } catch (err) {
      throw ImageError.from(err, 'write', this.path);
    }
  }

  async zeroRange(position: number, length: number, how: 'discard' | 'zeroes'): Promise<void> {
    if (length === 0) return;
    if (!this.unsupported.has(how)) {
      const mode =
        binding.FALLOC_FL_KEEP_SIZE | (how === 'discard' ? binding.FALLOC_FL_PUNCH_HOLE : binding.FALLOC_FL_ZERO_RANGE);
      try {
        await (this.seam?.fallocate ?? binding.fallocate)(this.fh.fd, mode, position, length);
        return;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code !== THIS_RANGE && (typeof code !== 'string' || !UNSUPPORTED.has(code))) throw ImageError.from(err, 'fallocate', this.path);
        if (code !== THIS_RANGE) this.unsupported.add(how);
      }
    }
    zeroChunk ??= new Uint8Array(ZERO_CHUNK);
    for (let at = 0; at < length; at += ZERO_CHUNK) {
      const n = Math.min(ZERO_CHUNK, length - at);
      if (this.seam?.zeroWrite !== undefined) {
        try {
          await this.seam.zeroWrite(position + at, n);
        } catch (err) {
          throw ImageError.from(err, 'write', this.path);
        }
      }
      await this.write(zeroChunk.subarray(0, n), position + at);
    }
  }

  async datasync(): Promise<void> {
    try {
      await this.fh.datasync();
    } catch (err) {
      throw ImageError.from(err, 'fdatasync', this.path);
    }
  }

  async size(): Promise<number> {
    let st;
    try {
      st = await this.fh.stat();
    } catch (err) {
      throw ImageError.from(err, 'fstat', this.path);
    }
    if (st.isFile()) return st.size;
    if (st.isBlockDevice()) return blockDeviceSize(this.path, st.rdev);
    throw new ImageError('open', this.path, 'EINVAL', 'not a regular file or block device');
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/**
 * Size of a block device. Node has no BLKGETSIZE64 ioctl and fstat reports 0, so read the
 * kernel's `/sys/dev/block/MAJOR:MINOR/size` (always in 512-byte units).
 */
async function blockDeviceSize(path: string, rdev: number): Promise<number> {
  // Linux dev_t encoding (glibc gnu_dev_major/minor) for rdev values that fit a double exactly.
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | (Math.floor(rdev / 4096) & ~0xff & 0xfffff00);
  const sys = `/sys/dev/block/${major}:${minor}/size`;
  try {
    const sectors = Number((await readFile(sys, 'utf8')).trim());
    if (!Number.isSafeInteger(sectors)) throw new Error(`unparsable size in ${sys}`);
    return sectors * 512;
  } catch (err) {
    throw ImageError.from(err, 'size', `${path} (${sys})`);
  }
}

export interface OpenImageOptions {
  readOnly?: boolean;
  /**
   * Offer readCached() (default true): page-cache reads straight into the caller's views through
   * the addon's non-blocking preadv2.
   */
  cachedReads?: boolean;
  /** @internal Failures injected by tests (see ImageSeam). */
  seam?: ImageSeam;
}

/** Open `path` read-write (or read-only) as an image; rejects with an ImageError. */
export async function openImage(path: string, opts: OpenImageOptions = {}): Promise<ImageFile> {
  const readOnly = opts.readOnly ?? false;
  const mode = readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR;
  let fh: FileHandle;
  try {
    // O_NONBLOCK first: a FIFO put where the image was expected would hold open() (and a pool
    // thread) until some writer came, a tty until carrier. Once fstat shows a file or a block
    // device, the same inode is opened again through /proc/self/fd without it — no path lookup,
    // so nothing can be swapped in between — and the probing fd is closed.
    const probe = await open(path, mode | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
    try {
      const st = await probe.stat();
      if (!st.isFile() && !st.isBlockDevice()) throw new ImageError('open', path, 'EINVAL', 'not a regular file or block device');
      fh = await open(`/proc/self/fd/${probe.fd}`, mode);
    } finally {
      await probe.close().catch(() => undefined);
    }
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw ImageError.from(err, 'open', path);
  }
  const img = new FileImage(path, fh, readOnly, opts.cachedReads ?? true, opts.seam);
  try {
    await img.size(); // refuse directories, sockets, … at open time
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
  return img;
}
