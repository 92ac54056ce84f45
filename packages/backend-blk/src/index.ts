/**
 * @vshm/backend-blk: the virtio-blk device (id 2) of vshm over a raw image file or block device,
 * built on `@vshm/transport`'s public plug-in API only (plus the addon's `preadCached` for reads
 * the page cache holds, image.ts).
 */
import { openBackend, type IvshmemPeer, type OpenBackendOptions, type VirtioBackend } from '@vshm/transport';
import { openBlockDevice, type BlockDevice, type BlockDeviceOptions } from './device.js';

export * from './device.js';
export * from './image.js';
export * from './request.js';

/** Open `imagePath`, connect to the vshm server at `socketPath` as the block back-end and serve. */
export async function openBlockBackend(
  socketPath: string,
  imagePath: string,
  opts: OpenBackendOptions & { device?: BlockDeviceOptions } = {},
): Promise<{ peer: IvshmemPeer; transport: VirtioBackend; device: BlockDevice }> {
  const { device: devOpts, ...rest } = opts;
  const device = await openBlockDevice(imagePath, devOpts);
  try {
    const { peer, transport } = await openBackend(socketPath, device, rest);
    return { peer, transport, device };
  } catch (err) {
    await device.image.close().catch(() => undefined);
    throw err;
  }
}
