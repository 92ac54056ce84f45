/**
 * Receive buffer size (issue 12 item 3): the front-end posts page-sized receive buffers by default,
 * like Linux, and the size is an option (ConsoleDriver / port, CLI --rx-buffer-size).
 */
import { expect } from 'chai';
import { ConsoleControlEvent, ConsoleFeature, encodeConsoleControl, featureBit } from 'virtio-spec-types';
import { parseCli, CliUsageError } from '../src/cli-args.js';
import { ConsoleDriver, ConsoleError, DEFAULT_MULTIPORT_RX_BUFFER, DEFAULT_RX_BUFFER, MAX_RX_BUFFER, type ConsolePort } from '../src/index.js';
import { FakeSession, microtasks } from './fixtures/fake-session.js';

const SIZE = featureBit(ConsoleFeature.SIZE);
const MULTIPORT = featureBit(ConsoleFeature.MULTIPORT);

describe('console front-end receive buffer size', () => {
  it('posts 4096-byte receive buffers by default', async () => {
    expect(DEFAULT_RX_BUFFER).to.equal(4096);
    const d = new ConsoleDriver();
    const s = new FakeSession(SIZE, 2);
    d.probe(s);
    await microtasks();
    const [rxq] = s.queues;
    expect(rxq.inFlight).to.equal(8);
    expect(rxq.posted.map((p) => p.inLen)).to.deep.equal(new Array(8).fill(4096));
    expect(rxq.posted.every((p) => p.out === null)).to.equal(true);
  });

  it('posts the configured size, and a full buffer of that size arrives whole', async () => {
    const d = new ConsoleDriver({ rxBufferSize: 512 });
    const s = new FakeSession(SIZE, 2);
    d.probe(s);
    await microtasks();
    const [rxq] = s.queues;
    expect(rxq.posted.map((p) => p.inLen)).to.deep.equal(new Array(8).fill(512));
    const port = d.port(0) as ConsolePort;
    const chunks: Buffer[] = [];
    port.on('data', (c: Buffer) => chunks.push(c));
    rxq.complete(new Uint8Array(512).fill(7));
    await microtasks();
    expect(Buffer.concat(chunks)).to.deep.equal(Buffer.alloc(512, 7));
    expect(rxq.posted.at(-1)?.inLen).to.equal(512); // re-posted at the same size
  });

  it('with MULTIPORT, ports default to 1 KiB buffers (one region for up to 31 ports); the option still wins', async () => {
    expect(DEFAULT_MULTIPORT_RX_BUFFER).to.equal(1024);
    for (const [opts, want] of [[{}, 1024], [{ rxBufferSize: 4096 }, 4096]] as const) {
      const d = new ConsoleDriver(opts);
      const s = new FakeSession(MULTIPORT, 4);
      s.config.setUint32(4, 1, true); // max_nr_ports
      d.probe(s);
      await microtasks();
      s.queues[2].complete(encodeConsoleControl(0, ConsoleControlEvent.DEVICE_ADD, 0)); // control receiveq
      await microtasks();
      const rx0 = s.queues[0];
      expect(rx0.inFlight).to.equal(8);
      expect(rx0.posted.map((p) => p.inLen)).to.deep.equal(new Array(8).fill(want));
    }
  });

  for (const bad of [0, -1, 1.5, MAX_RX_BUFFER + 1, Number.NaN]) {
    it(`rejects rxBufferSize ${bad} with a ConsoleError (VSHM_ERR_ARGUMENT)`, () => {
      let err: unknown = null;
      try {
        new ConsoleDriver({ rxBufferSize: bad });
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(ConsoleError);
      expect((err as ConsoleError).code).to.equal('VSHM_ERR_ARGUMENT');
    });
  }

  it('CLI: --rx-buffer-size N sets the option; absent leaves the default', () => {
    expect(parseCli([]).rxBufferSize).to.equal(undefined);
    expect(parseCli(['--rx-buffer-size', '1024']).rxBufferSize).to.equal(1024);
    for (const bad of ['0', '65537', '4k', '']) {
      expect(() => parseCli(['--rx-buffer-size', bad]), bad).to.throw(CliUsageError, /--rx-buffer-size/);
    }
  });
});
