/**
 * The device configuration space as the back-end owns it (spec §4.8): little-endian fields at
 * header offset 0x4C. The BE keeps a private shadow copy, which is the authority: the header copy
 * is what the FE reads, and a driver write to a read-only field is undone from the shadow (§4.3).
 *
 * Updates follow the generation rule: `config_generation` += 1 (odd), release, modify, release,
 * += 1 (even); the caller then raises the config event (§4.9).
 */
import { ArgumentError, TransportError } from '../errors.js';
import type { ConfigField, ConfigSpace, ConfigWidth } from './device-api.js';
import { HDR_CONFIG_GENERATION, type BackendHeader } from './header.js';

function checkWidth(width: number): asserts width is ConfigWidth {
  if (width !== 1 && width !== 2 && width !== 4) throw new ArgumentError(`config width must be 1, 2 or 4, got ${String(width)}`);
}

export class BackendConfigSpace implements ConfigSpace {
  readonly size: number;
  /** The BE's authoritative copy. */
  private readonly shadow: DataView;
  private readonly shadowBytes: Uint8Array;
  private readonly header: BackendHeader;
  /** Field by config offset, for transactions (§4.3: width from the device's layout). */
  private readonly fields: Map<number, ConfigField>;
  private writable = false;
  private generation = 0;

  constructor(header: BackendHeader, size: number, fields: readonly ConfigField[]) {
    this.header = header;
    this.size = size;
    this.shadowBytes = new Uint8Array(size);
    this.shadow = new DataView(this.shadowBytes.buffer);
    this.fields = new Map();
    for (const f of fields) {
      checkWidth(f.width);
      if (!Number.isInteger(f.offset) || f.offset < 0 || f.offset + f.width > size) {
        throw new ArgumentError(`config field ${f.name} at ${f.offset} (width ${f.width}) lies outside the ${size}-byte config space`);
      }
      this.fields.set(f.offset, f);
    }
  }

  /** The current `config_generation` (even outside updates). */
  get currentGeneration(): number {
    return this.generation;
  }

  read(offset: number, width: ConfigWidth): number {
    this.checkRange(offset, width);
    switch (width) {
      case 1:
        return this.shadow.getUint8(offset);
      case 2:
        return this.shadow.getUint16(offset, true);
      default:
        return this.shadow.getUint32(offset, true);
    }
  }

  write(offset: number, width: ConfigWidth, value: number): void {
    if (!this.writable) {
      throw new TransportError('VSHM_ERR_CONFIG_WRITE', '4.8', 'config may only be written inside initConfig or updateConfig');
    }
    this.checkRange(offset, width);
    if (!Number.isInteger(value) || value < 0 || value >= 2 ** (8 * width)) {
      throw new ArgumentError(`config value ${String(value)} does not fit ${width} bytes`);
    }
    this.setBoth(offset, width, value);
  }

  /** §4.10 step 3: zeroed config, generation 0, then the device's defaults (no generation dance: the FE is not READY). */
  initialise(init: (config: ConfigSpace) => void): void {
    this.shadowBytes.fill(0);
    this.generation = 0;
    this.writable = true;
    try {
      init(this);
    } finally {
      this.writable = false;
    }
  }

  /** §4.8 generation rule around `mutate`. Generation stays even afterwards even if `mutate` throws. */
  update(mutate: (config: ConfigSpace) => void): void {
    if (this.writable) {
      // Nested in another update (or in initConfig): it joins that bracket. Its own would turn the
      // generation even while the outer one is still writing, and close the space under it.
      mutate(this);
      return;
    }
    this.generation = (this.generation + 1) >>> 0;
    this.header.store32(HDR_CONFIG_GENERATION, this.generation); // odd; seq-cst store = release
    this.writable = true;
    try {
      mutate(this);
    } finally {
      this.writable = false;
      this.generation = (this.generation + 1) >>> 0;
      this.header.store32(HDR_CONFIG_GENERATION, this.generation); // even; releases the modification
    }
  }

  /** The field starting at config offset `offset`, if any. */
  fieldAt(offset: number): ConfigField | undefined {
    return this.fields.get(offset);
  }

  /**
   * A driver write transaction at config offset `offset` (§4.3). A driver-writable field is read
   * ONCE from the header at the field's width and copied into the shadow; everything else the FE
   * may have stored (any width, any offset) is undone from the shadow. Returns the accepted field
   * and value, or null when the write was undone.
   */
  driverWrite(offset: number): { field: ConfigField; value: number } | null {
    const field = this.fields.get(offset);
    let accepted: { field: ConfigField; value: number } | null = null;
    if (field !== undefined && field.driverWritable === true) {
      const v = this.header.configView;
      const value = field.width === 1 ? v.getUint8(offset) : field.width === 2 ? v.getUint16(offset, true) : v.getUint32(offset, true);
      this.setShadow(offset, field.width, value);
      accepted = { field, value };
    }
    this.restore();
    return accepted;
  }

  /** Copy the whole shadow over the header's config (undoes stray driver stores). */
  restore(): void {
    const v = this.header.configView;
    for (let i = 0; i < this.size; i++) v.setUint8(i, this.shadowBytes[i]);
    for (let i = this.size; i < v.byteLength; i++) v.setUint8(i, 0); // padding up to `size`
  }

  private setBoth(offset: number, width: ConfigWidth, value: number): void {
    this.setShadow(offset, width, value);
    const v = this.header.configView;
    if (width === 1) v.setUint8(offset, value);
    else if (width === 2) v.setUint16(offset, value, true);
    else v.setUint32(offset, value, true);
  }

  private setShadow(offset: number, width: ConfigWidth, value: number): void {
    if (width === 1) this.shadow.setUint8(offset, value);
    else if (width === 2) this.shadow.setUint16(offset, value, true);
    else this.shadow.setUint32(offset, value, true);
  }

  private checkRange(offset: number, width: number): void {
    checkWidth(width);
    if (!Number.isInteger(offset) || offset < 0 || offset + width > this.size) {
      throw new ArgumentError(`config access at ${String(offset)} width ${width} outside the ${this.size}-byte config space`);
    }
  }
}
