/**
 * Typed errors of the console front-end: a stable `code` and the spec section.
 */
import { VshmError } from '@vshm/transport';

/**
 * Codes:
 * - VSHM_ERR_PORT_REMOVED (§7.2): the device removed the port (DEVICE_REMOVE).
 * - VSHM_ERR_NOT_READY (§4.10): no live device session (before the first probe or while recovering).
 * - VSHM_ERR_FEATURE (§7.2): the feature an operation needs was not negotiated.
 * - VSHM_ERR_NO_PORT (§7.2): no such port.
 */
export class ConsoleError extends VshmError {}
