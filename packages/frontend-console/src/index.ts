/**
 * @vshm/frontend-console: the virtio-console driver (front-end, spec §7) with ports as Node
 * Duplex streams, and `openConsole()` to run it over a vshm server.
 */
export { ConsoleDriver, CONSOLE_DRIVER_FEATURES, MAX_PORTS_LIMIT, type ConsoleDriverOptions } from './driver.js';
export { ConsolePort, DEFAULT_MULTIPORT_RX_BUFFER, DEFAULT_RX_BUFFER, DEFAULT_TX_PIECE, MAX_RX_BUFFER, type ConsolePortOptions, type ConsoleSize } from './port.js';
export { ConsoleError } from './errors.js';
export { openConsole, describeOpenError, type Console, type OpenConsoleOptions, type ReconnectOptions } from './open.js';
