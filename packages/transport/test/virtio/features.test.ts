/**
 * features.ts: the one place both sides' feature policy lives (§4.4, §4.5) — the transport bits,
 * what a back-end offers and refuses at FEATURES_OK, and what a front-end proposes. The
 * transaction sequences are covered end to end in frontend-init.test.ts and conformance/26.
 */
import { expect } from 'chai';
import { VirtioFeatureMask as F } from 'virtio-spec-types';
import {
  DEVICE_OFFERABLE_FEATURES,
  TRANSPORT_FEATURES,
  negotiate,
  offeredFeatures,
  proposalRefusal,
} from '../../src/virtio/features.js';

const REQUIRED = F.VERSION_1 | F.ACCESS_PLATFORM;

describe('virtio features (§4.4, §4.5)', () => {
  it('spells the transport bits once: VERSION_1, ACCESS_PLATFORM, ORDER_PLATFORM', () => {
    expect(TRANSPORT_FEATURES).to.equal(F.VERSION_1 | F.ACCESS_PLATFORM | F.ORDER_PLATFORM);
    expect(TRANSPORT_FEATURES & F.RING_PACKED).to.equal(0n);
  });

  it('a device may offer bits 0–23 and the two optional ring bits only', () => {
    expect(DEVICE_OFFERABLE_FEATURES).to.equal(((1n << 24n) - 1n) | F.RING_INDIRECT_DESC | F.RING_EVENT_IDX);
    expect(DEVICE_OFFERABLE_FEATURES & (TRANSPORT_FEATURES | F.RING_PACKED)).to.equal(0n);
  });

  it('BE offers the device bits plus the transport bits', () => {
    expect(offeredFeatures(0b101n | F.RING_EVENT_IDX)).to.equal(0b101n | F.RING_EVENT_IDX | TRANSPORT_FEATURES);
  });

  it('BE refuses unoffered bits, then a proposal without VERSION_1 or ACCESS_PLATFORM', () => {
    const offered = offeredFeatures(0b11n);
    expect(proposalRefusal(0b1n | REQUIRED, offered)).to.equal(null);
    expect(proposalRefusal(offered, offered)).to.equal(null);
    expect(proposalRefusal(0b100n | REQUIRED, offered)).to.equal('bits 0x4 not offered');
    expect(proposalRefusal(F.VERSION_1, offered)).to.equal('VERSION_1/ACCESS_PLATFORM missing');
    expect(proposalRefusal(F.ACCESS_PLATFORM | 0b1n, offered)).to.equal('VERSION_1/ACCESS_PLATFORM missing');
  });

  it('FE proposes offered ∩ (driver ∪ transport bits), never RING_PACKED', () => {
    const offered = 0b111n | TRANSPORT_FEATURES | F.RING_PACKED | F.RING_EVENT_IDX;
    expect(negotiate(offered, 0b101n)).to.equal(0b101n | TRANSPORT_FEATURES);
    expect(negotiate(offered, 0b1n | F.RING_EVENT_IDX | F.RING_PACKED)).to.equal(0b1n | F.RING_EVENT_IDX | TRANSPORT_FEATURES);
    expect(negotiate(F.VERSION_1, ~0n & ((1n << 64n) - 1n))).to.equal(F.VERSION_1);
  });
});
