/**
 * @vshm/backend-console: the virtio-console device (back-end) over vshm (spec §7).
 */
export { ConsoleDevice, MAX_PORT_NAME_BYTES, type ConsoleDeviceOptions, type ConsoleSize } from './device.js';
export { ConsolePort, type ConsolePortAttachOptions } from './port.js';
export { InputBuffer } from './input-buffer.js';
export { ConsoleSession } from './session.js';
export { AUTO_QUEUE_MAX, AUTO_QUEUE_MIN, AUTO_QUEUE_MIN_MULTIPORT, autoQueueSize, LINUX_RX_BUFFER, linuxReceiveQueues } from './queue-size.js';
