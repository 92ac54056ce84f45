import { expect } from 'chai';
import {
  VirtioDeviceId, VirtioFeature, VirtioFeatureMask, DeviceStatus, featureBit, hasFeature, featureWord,
  featuresFromWords, VSHM_ALLOWED_TRANSPORT_FEATURES, descTableSize, availRingSize, usedRingSize,
  usedEventOffset, availEventOffset, isValidQueueSize, vringNeedEvent, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_F_INDIRECT, VIRTQ_MAX_SIZE, ConsoleFeature, ConsoleControlEvent, CONSOLE_CONFIG_SIZE,
  CONSOLE_CONFIG_EMERG_WR, CONSOLE_CONTROL_VALUE, consoleReceiveQueue, consoleTransmitQueue, consoleQueueCount,
  encodeConsoleControl, encodeConsolePortName, sameConsoleControl, sameConsoleControlPort,
} from '../src/index.js';

describe('virtio-spec-types', () => {
  it('pins device ids, feature bits and status bits', () => {
    expect([VirtioDeviceId.CONSOLE, VirtioDeviceId.RNG]).to.deep.equal([3, 4]);
    expect([VirtioFeature.RING_INDIRECT_DESC, VirtioFeature.RING_EVENT_IDX, VirtioFeature.VERSION_1,
      VirtioFeature.ACCESS_PLATFORM, VirtioFeature.RING_PACKED, VirtioFeature.ORDER_PLATFORM]).to.deep.equal([28, 29, 32, 33, 34, 36]);
    for (const [name, bit] of Object.entries(VirtioFeature)) {
      const mask = (VirtioFeatureMask as Record<string, bigint>)[name];
      if (mask !== undefined) expect(mask, name).to.equal(featureBit(bit));
    }
    expect(DeviceStatus).to.include({ ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, DEVICE_NEEDS_RESET: 0x40, FAILED: 0x80 });
    expect(VSHM_ALLOWED_TRANSPORT_FEATURES & VirtioFeatureMask.RING_PACKED).to.equal(0n);
  });

  it('splits and joins feature words (Jailhouse console defaults 0x1 / 0x13)', () => {
    const f = featuresFromWords(0x1, 0x13);
    expect(hasFeature(f, VirtioFeature.VERSION_1)).to.equal(true);
    expect(hasFeature(f, VirtioFeature.ACCESS_PLATFORM)).to.equal(true);
    expect(hasFeature(f, VirtioFeature.ORDER_PLATFORM)).to.equal(true);
    expect(hasFeature(f, VirtioFeature.RING_PACKED)).to.equal(false);
    expect([featureWord(f, 0), featureWord(f, 1), featureWord(f, 2)]).to.deep.equal([1, 0x13, 0]);
    expect(featureWord(featuresFromWords(0xffffffff, 0), 0)).to.equal(0xffffffff);
    expect(() => featureBit(64)).to.throw(RangeError);
  });

  it('computes ring sizes as in spec §6.1', () => {
    expect(VIRTQ_DESC_F_NEXT | (VIRTQ_DESC_F_WRITE << 4) | (VIRTQ_DESC_F_INDIRECT << 8)).to.equal(0x421);
    expect([descTableSize(8), availRingSize(8), usedRingSize(8)]).to.deep.equal([128, 22, 70]);
    expect([usedEventOffset(8), availEventOffset(8)]).to.deep.equal([20, 68]);
    expect([1, 2, 256, VIRTQ_MAX_SIZE].every(isValidQueueSize)).to.equal(true);
    expect([0, 3, 65536, 1.5, -2].some(isValidQueueSize)).to.equal(false);
  });

  it('vringNeedEvent follows the wrapping window rule', () => {
    expect(vringNeedEvent(0, 1, 0)).to.equal(true);
    expect(vringNeedEvent(1, 1, 0)).to.equal(false);
    expect(vringNeedEvent(5, 10, 0)).to.equal(true);
    expect(vringNeedEvent(10, 10, 0)).to.equal(false);
    expect(vringNeedEvent(0xffff, 2, 0xfffe)).to.equal(true);
    expect(vringNeedEvent(0xfffd, 2, 0xfffe)).to.equal(false);
    expect(vringNeedEvent(3, 3, 3)).to.equal(false);
  });

  it('pins console constants (spec §7.2)', () => {
    expect(ConsoleFeature).to.deep.equal({ SIZE: 0, MULTIPORT: 1, EMERG_WRITE: 2 });
    expect([CONSOLE_CONFIG_EMERG_WR, CONSOLE_CONFIG_SIZE, CONSOLE_CONTROL_VALUE]).to.deep.equal([8, 12, 6]);
    expect(ConsoleControlEvent.DEVICE_READY).to.equal(0);
    expect(ConsoleControlEvent.PORT_NAME).to.equal(7);
    expect([consoleReceiveQueue(0), consoleTransmitQueue(0), consoleReceiveQueue(1), consoleTransmitQueue(1)]).to.deep.equal([0, 1, 4, 5]);
    expect(consoleQueueCount(true, 2)).to.equal(6);
    expect(consoleQueueCount(false, 0)).to.equal(2);
  });
});

describe('console control messages compared', () => {
  it('sameConsoleControlPort compares the id field only; sameConsoleControl every byte', () => {
    const open1 = encodeConsoleControl(1, ConsoleControlEvent.PORT_OPEN, 1);
    const close1 = encodeConsoleControl(1, ConsoleControlEvent.PORT_OPEN, 0);
    const open2 = encodeConsoleControl(2, ConsoleControlEvent.PORT_OPEN, 1);
    const far = encodeConsoleControl(0x01000001, ConsoleControlEvent.PORT_OPEN, 1); // differs in the id's top byte
    expect(sameConsoleControlPort(open1, close1)).to.equal(true);
    expect(sameConsoleControlPort(open1, open2)).to.equal(false);
    expect(sameConsoleControlPort(open1, far)).to.equal(false);
    expect(sameConsoleControlPort(open1, open1.subarray(0, 3))).to.equal(false);
    expect(sameConsoleControl(open1, encodeConsoleControl(1, ConsoleControlEvent.PORT_OPEN, 1))).to.equal(true);
    expect(sameConsoleControl(open1, close1)).to.equal(false);
    expect(sameConsoleControl(encodeConsolePortName(1, 'a'), encodeConsolePortName(1, 'ab'))).to.equal(false);
  });
});
