/**
 * A Linux guest (virtio_console over virtio_ivshmem) and the interrupt vector count, with
 * MULTIPORT.
 *
 * The guest asks for 1 + (queues with a callback) MSI-X vectors. Every console queue has one but
 * the control transmitq, so with `max_nr_ports` = P it asks for 2·(P + 1). When the device has that
 * many, it takes them all and numbers the queues 1, 2, 3 … in setup order — counting the control
 * transmitq too. The last transmitq then gets vector 2·(P + 1), one past what it allocated; its
 * interrupt request fails and virtio_console's probe with it ("Error -22 initializing vqs"): no
 * console, no ports. With fewer vectors the guest shares one vector among the queues and works.
 * A vshm front-end numbers only the queues it uses and is not affected.
 */

/** Vectors from which a Linux guest fails with `maxNrPorts` ports (MULTIPORT negotiated). */
export function linuxMultiportVectorLimit(maxNrPorts: number): number {
  return 2 * (maxNrPorts + 1);
}

/**
 * The warning for a back-end offering MULTIPORT with `maxNrPorts` ports on a device with
 * `vectors` vectors, or null when a Linux guest copes.
 */
export function linuxVectorWarning(multiport: boolean, maxNrPorts: number, vectors: number): string | null {
  if (!multiport) return null;
  const limit = linuxMultiportVectorLimit(maxNrPorts);
  if (vectors < limit) return null;
  return (
    `${vectors} interrupt vectors with ${maxNrPorts} console ports: a Linux guest fails to set up its queues ` +
    `(virtio_ivshmem numbers one vector too many); give the server -V ${limit - 1} or fewer (-V 3 is enough)`
  );
}
