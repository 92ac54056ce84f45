/**
 * virtio-rng / entropy device (OASIS VIRTIO 1.2 §5.4): one request queue of device-writable
 * buffers, no device-specific features, no config space.
 */
export const RNG_REQUESTQ = 0;
export const RNG_QUEUE_COUNT = 1;
export const RNG_CONFIG_SIZE = 0;
