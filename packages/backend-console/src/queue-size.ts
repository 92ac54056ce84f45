/**
 * `queueSize: 'auto'`: the console's queue size follows the shared memory it is served on.
 *
 * What bounds the size is a Linux guest (virtio_console over virtio_ivshmem, spec §5.1, §7.1):
 * it allocates every ring and every bounce buffer from the R/W section, whatever the output
 * sections are, and keeps each receive queue full of page-sized buffers — port 0's receiveq, and
 * with MULTIPORT also the control receiveq and the receiveq of every port the device adds. A
 * buffer it cannot place makes the port (or, for the control queue, the whole device) fail. Its
 * rings cost little beside that (two rings of N entries take under 4 % of N pages), and its
 * transmit copies need room on top (one per blocking write: ≤ 2 KiB on the console, ≤ 32 KiB on
 * a named port).
 *
 * Rule: the largest power of two N in [floor, 256] whose receive buffers, N pages on each of the
 * K receive queues, take at most a quarter of the R/W section, counted in whole pages rounded up:
 * K · N ≤ ⌈RW / 16 KiB⌉. A quarter leaves three quarters for the header, the rings and transmit
 * copies. The rounding up keeps the sizes people give the server (-l 1M, -l 4M: a power of two,
 * of which the state table takes 4 KiB) on the step their size suggests rather than one below;
 * it adds less than a page. 256 is the ceiling, where throughput stops growing (docs/decisions.md,
 * "Console queue size follows the region"). The floor:
 * - without MULTIPORT, 8 whatever the memory: the Jailhouse default, known to work for a Linux
 *   guest at the reference -l 64K (§7.1), where the rule alone would give 4;
 * - with MULTIPORT, 1: the rule all the way down. Three or more receive queues of 8 pages do not
 *   fit a Linux guest at 64K at all (the control receiveq fails, or a port does), and at 128K
 *   they leave no 32 KiB block for a write(2) on a named port; smaller queues let the guest bring
 *   every port up there, at the cost of receive throughput nobody gets on so little memory
 *   anyway (docs/decisions.md, "MULTIPORT queues below 8 on small regions").
 *
 * The output sections play no part: a Linux guest never uses them, and a vshm front-end that does
 * (§5.2) picks the largest size its own pools hold anyway (VirtioDriverOps.queueBuffers).
 */
import type { DeviceMemory } from '@vshm/transport';

/** Smallest size `'auto'` offers without MULTIPORT: what the console offered before it followed the memory. */
export const AUTO_QUEUE_MIN = 8;
/** Smallest size `'auto'` offers with MULTIPORT: the quarter rule alone (see above). */
export const AUTO_QUEUE_MIN_MULTIPORT = 1;
/** Largest size `'auto'` offers. */
export const AUTO_QUEUE_MAX = 256;
/** A Linux guest's receive buffer: one page (virtio_console's fill_queue; 4 KiB pages assumed). */
export const LINUX_RX_BUFFER = 4096;
/** Share of the R/W section the receive buffers may take: 1/4. */
const RX_SHARE = 4;

/**
 * Receive queues a Linux guest keeps full: port 0's receiveq, or with MULTIPORT the control
 * receiveq plus one receiveq per port (the device adds all `maxNrPorts` ports it has).
 */
export function linuxReceiveQueues(multiport: boolean, maxNrPorts: number): number {
  return multiport ? 1 + maxNrPorts : 1;
}

/**
 * The size `'auto'` offers on a region with `memory`, for a device whose Linux guest keeps
 * `receiveQueues` receive queues full, never below `floor` (see the rule above: AUTO_QUEUE_MIN,
 * or AUTO_QUEUE_MIN_MULTIPORT for a device with MULTIPORT).
 */
export function autoQueueSize(memory: Pick<DeviceMemory, 'rwSize'>, receiveQueues: number, floor = AUTO_QUEUE_MIN): number {
  const budgetPages = Math.ceil(memory.rwSize / (RX_SHARE * LINUX_RX_BUFFER));
  let n = floor;
  while (n < AUTO_QUEUE_MAX && receiveQueues * n * 2 <= budgetPages) n *= 2;
  return n;
}
