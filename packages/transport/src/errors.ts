/**
 * Typed errors (style §4): every error vshm raises on purpose carries a stable `code`
 * (VSHM_ERR_*) and, where one applies, the spec section it enforces. Tests check the class and
 * `code`, never the message text.
 */

export class VshmError extends Error {
  readonly code: string;
  /** Spec section (e.g. '1.8', '6.3') the check enforces, or '' when none applies. */
  readonly section: string;
  constructor(code: string, section: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.section = section;
  }
}

/** A server message, or the sequence of them, broke §1.8 (client) or §1.2 (wire format). */
export class ProtocolError extends VshmError {}

/** A memory layout that does not fit (§2). */
export class LayoutError extends VshmError {}

/** Hostile or inconsistent ring contents (§6). */
export class RingError extends VshmError {}

/** Virtio transport failures: header, transactions, negotiation, peer loss (§4). */
export class TransportError extends VshmError {}

/** Bad arguments to a public constructor or CLI (style §8). */
export class ArgumentError extends VshmError {
  constructor(message: string) {
    super('VSHM_ERR_ARGUMENT', '', message);
  }
}
