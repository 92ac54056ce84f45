/**
 * virtio-rng over vshm: a worked example of the device plug-in API using only the public
 * `@vshm/transport` API. See README.md for a walkthrough.
 */
import { openBackend, openFrontend, type IvshmemPeer, type VirtioBackend, type OpenBackendOptions, type OpenFrontendOptions } from '@vshm/transport';
import { RngDevice, type RngDeviceOptions } from './device.js';
import { RngDriver, type RngDriverOptions } from './driver.js';

export * from './device.js';
export * from './driver.js';

/** Connect as the rng back-end (start it before the front-end) and serve. */
export async function openRngBackend(
  socketPath: string,
  opts: OpenBackendOptions & { device?: RngDeviceOptions } = {},
): Promise<{ peer: IvshmemPeer; transport: VirtioBackend; device: RngDevice }> {
  const { device: devOpts, ...rest } = opts;
  const device = new RngDevice(devOpts);
  const { peer, transport } = await openBackend(socketPath, device, rest);
  return { peer, transport, device };
}

/** Connect as the rng front-end; `rng.read(n)` works once the device is live (reads wait until then). */
export async function openRngFrontend(
  socketPath: string,
  opts: OpenFrontendOptions & { driver?: RngDriverOptions } = {},
): Promise<{ peer: IvshmemPeer; transport: { close(): Promise<void> }; rng: RngDriver }> {
  const { driver: drvOpts, ...rest } = opts;
  const rng = new RngDriver(drvOpts);
  const { peer, transport } = await openFrontend(socketPath, rng, rest);
  return { peer, transport, rng };
}
