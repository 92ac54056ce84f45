/**
 * A Linux guest's virtio_console (without MULTIPORT) on the Linux-like virtio_ivshmem double
 * (transport/test/fixtures/linux-like-frontend.ts), as spec §7.3 describes it to a back-end:
 *
 * - queue 0 receive / queue 1 transmit; cols/rows read from config with SIZE (and again on every
 *   config change);
 * - DRIVER_OK comes first, then the receive queue is filled with 4096-byte single-descriptor
 *   writable buffers until it is full, and only then is the console port registered: data
 *   completed before that is discarded (its buffers are freed, not re-posted);
 * - a receive buffer the port consumed is posted again;
 * - transmit: the tty layer hands at most 2048 bytes at a time, one descriptor each, and the
 *   driver busy-waits on the used ring for each one (no interrupt needed);
 * - a bounce allocation failing while filling the receive queue ("shared memory is full") makes
 *   adding the port fail ("Error allocating inbufs"): the unused buffers are detached and the port
 *   never appears; the device itself stays set up.
 */
import { ConsoleFeature, featureBit } from 'virtio-spec-types';
import type { IvshmemDevice } from '../../../transport/src/ivshmem/device.js';
import {
  LinuxFrontendError,
  LinuxLikeFrontend,
  type LinuxQueue,
} from '../../../transport/test/fixtures/linux-like-frontend.js';

export const RX_BUFFER = 4096;
export const TX_MAX = 2048;

export interface LinuxConsoleOptions {
  /** Register the console port right after filling the receive queue (default true). */
  autoRegister?: boolean;
}

export class LinuxLikeConsole {
  readonly fe: LinuxLikeFrontend;
  /** The console port is registered (hvc): received data is kept. */
  registered = false;
  /** Why adding port 0 failed, if it did. */
  portError: LinuxFrontendError | null = null;
  /** Data the port received, per completed buffer. */
  readonly received: Buffer[] = [];
  /** Bytes completed before the port was registered (dropped, as Linux does). */
  discarded = 0;
  /** Size of every receive buffer posted. */
  readonly rxPosted: number[] = [];
  /** Size of every transmit buffer posted. */
  readonly txPosted: number[] = [];
  cols = 0;
  rows = 0;
  private readonly autoRegister: boolean;

  constructor(dev: IvshmemDevice, opts: LinuxConsoleOptions = {}) {
    this.fe = new LinuxLikeFrontend(dev);
    this.autoRegister = opts.autoRegister ?? true;
  }

  get rxq(): LinuxQueue {
    return this.fe.queues[0];
  }

  get txq(): LinuxQueue {
    return this.fe.queues[1];
  }

  text(): string {
    return Buffer.concat(this.received).toString('latin1');
  }

  /** PCI probe, virtio probe, virtcons_probe: queues, DRIVER_OK, then port 0. */
  async start(): Promise<void> {
    const fe = this.fe;
    fe.probe();
    const SIZE = featureBit(ConsoleFeature.SIZE);
    const f = await fe.negotiate(SIZE | featureBit(ConsoleFeature.MULTIPORT) | featureBit(ConsoleFeature.EMERG_WRITE));
    if ((f & featureBit(ConsoleFeature.MULTIPORT)) !== 0n) throw new Error('this double covers a console without MULTIPORT');
    await fe.findVqs([
      { name: 'input', callback: () => this.inIntr() },
      { name: 'output', callback: null }, // out_intr only wakes writers; put_chars polls
    ]);
    if ((f & SIZE) !== 0n) await this.readSize();
    fe.onConfigChange = () => {
      if ((fe.features & SIZE) !== 0n) void this.readSize().catch(() => undefined);
    };
    await fe.driverOk();
    this.addPort0();
  }

  /** The console port appears (hvc registration), some time after DRIVER_OK. */
  registerPort(): void {
    if (this.portError === null) this.registered = true;
  }

  private addPort0(): void {
    const q = this.rxq;
    try {
      for (;;) {
        if (q.vring.freeDescriptors === 0) break;
        q.add([], [RX_BUFFER], null);
        this.rxPosted.push(RX_BUFFER);
        q.kick(); // add_inbuf kicks after every buffer
      }
    } catch (err) {
      if (!(err instanceof LinuxFrontendError) || err.code !== 'ENOMEM') throw err;
      this.fe.log.push('Error allocating inbufs');
      this.portError = err;
      q.vring.detachUnused(true);
      return;
    }
    if (this.autoRegister) this.registerPort();
  }

  private inIntr(): void {
    const q = this.rxq;
    let reposted = false;
    for (let c = q.getBuf(); c !== null; c = q.getBuf()) {
      if (!this.registered) {
        this.discarded += c.len; // flush_bufs: dropped and freed
        continue;
      }
      this.received.push(Buffer.from(c.data));
      q.add([], [RX_BUFFER], null);
      this.rxPosted.push(RX_BUFFER);
      reposted = true;
    }
    if (reposted) q.kick();
  }

  private async readSize(): Promise<void> {
    this.cols = await this.fe.readConfig(0, 2);
    this.rows = await this.fe.readConfig(2, 2);
  }

  /** put_chars in ≤ 2048-byte pieces, each one awaited by polling the used ring. */
  async write(data: Uint8Array): Promise<void> {
    const q = this.txq;
    for (let at = 0; at < data.length; at += TX_MAX) {
      const piece = data.subarray(at, Math.min(data.length, at + TX_MAX));
      q.add([piece], [], null);
      this.txPosted.push(piece.length);
      q.kick();
      const start = Date.now();
      while (q.getBuf() === null) {
        if (this.fe.broken) throw new LinuxFrontendError('EIO', 'device broken');
        if (Date.now() - start > 20000) throw new LinuxFrontendError('ETIMEDOUT', 'transmit buffer never used');
        await new Promise((r) => setImmediate(r));
      }
    }
  }
}
