/**
 * Several config fields under one `config_generation` check (§4.8): `DriverSession.readConfigMany`
 * and `ConfigReader.readMany`. The back-end's update is made to land between the driver's two
 * field reads — the real VirtioBackend's `updateConfig`, called from inside the reading function
 * — so the interleaving is forced, not hoped for.
 */
import { expect } from 'chai';
import { ArgumentError, TransportError } from '../../src/errors.js';
import { HDR_CONFIG_GENERATION } from '../../src/virtio/header.js';
import type { ConfigReader, ConfigWidth, DriverSession } from '../../src/virtio/device-api.js';
import { recordingDriver } from '../fixtures/transport-devices.js';
import { useEchoRigs, type EchoRig } from '../fixtures/transport-rigs.js';

type Read = (offset: number, width: ConfigWidth) => number;

describe('config reads of several fields under one generation (§4.8)', () => {
  const echoRig = useEchoRigs();

  async function rig(): Promise<EchoRig & { session: DriverSession }> {
    const r = echoRig();
    r.backend.start();
    const session = await r.frontend.start();
    return { ...r, session };
  }

  /** The back-end resizes the console-shaped config (cols at 0, rows at 2) in one update. */
  function resize(r: EchoRig, cols: number, rows: number): void {
    r.dev.sessions[0].updateConfig((c) => {
      c.write(0, 2, cols);
      c.write(2, 2, rows);
    });
  }

  it('separate readConfig calls can return a torn pair: the reason readConfigMany exists', async () => {
    const r = await rig();
    const cols = r.session.readConfig(0, 2);
    resize(r, 132, 50); // between the two reads
    const rows = r.session.readConfig(2, 2);
    expect([cols, rows]).to.deep.equal([80, 50]); // a size the device never had
  });

  it('an update between the two reads runs the function again: the pair comes from one update', async () => {
    const r = await rig();
    let runs = 0;
    const pair = r.session.readConfigMany((read) => {
      runs++;
      const cols = read(0, 2);
      if (runs === 1) resize(r, 132, 50); // the back-end updates after the first field only
      return [cols, read(2, 2)];
    });
    expect(pair).to.deep.equal([132, 50]);
    expect(runs).to.equal(2);
    // Without an update in between: one run.
    runs = 0;
    expect(r.session.readConfigMany((read) => (runs++, [read(0, 2), read(2, 2)]))).to.deep.equal([132, 50]);
    expect(runs).to.equal(1);
  });

  it('two updates in between (a field back where it was, ABA) still give one update\'s pair', async () => {
    const r = await rig();
    let runs = 0;
    const pair = r.session.readConfigMany((read) => {
      runs++;
      const a = read(2, 2);
      if (runs === 1) resize(r, 100, 40);
      const b = read(0, 2);
      if (runs === 1) resize(r, 120, 25); // rows back to the value already read
      return [b, a, read(2, 2)];
    });
    expect(pair).to.deep.equal([120, 25, 25]);
    expect(runs).to.equal(2);
  });

  it('a generation that never settles gives up with VSHM_ERR_CONFIG_BUSY after a bounded number of runs', async () => {
    const r = await rig();
    const gen = new DataView(r.be.window);
    let runs = 0;
    let err: unknown;
    try {
      r.session.readConfigMany((read) => {
        runs++;
        const v = read(0, 2);
        // A hostile back-end that updates on every pass (a complete update: +2, even again).
        gen.setUint32(HDR_CONFIG_GENERATION, gen.getUint32(HDR_CONFIG_GENERATION, true) + 2, true);
        return v;
      });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(TransportError).with.property('code', 'VSHM_ERR_CONFIG_BUSY');
    expect(runs).to.be.within(2, 1 << 20);
  });

  it('checks its arguments; read is valid only during the call; what fn throws propagates; a dead session throws', async () => {
    const r = await rig();
    const s = r.session;
    expect(() => s.readConfigMany(null as never)).to.throw(ArgumentError);
    expect(() => s.readConfigMany((read) => read(12, 1))).to.throw(ArgumentError); // beyond the 12-byte config
    expect(() => s.readConfigMany((read) => read(0, 3 as ConfigWidth))).to.throw(ArgumentError);
    let kept: Read | undefined;
    expect(s.readConfigMany((read) => ((kept = read), read(0, 2)))).to.equal(80);
    expect(() => kept!(0, 2)).to.throw(ArgumentError, /only during/);
    const boom = new Error('boom');
    let runs = 0;
    expect(() =>
      s.readConfigMany(() => {
        runs++;
        throw boom;
      }),
    ).to.throw(boom);
    expect(runs).to.equal(1);
    // Nested: the inner call reads inside the outer generation check.
    expect(s.readConfigMany((read) => [read(0, 2), s.readConfigMany((inner) => inner(2, 2))])).to.deep.equal([80, 25]);
    // readConfig inside works as well (its own check, within the outer one).
    expect(s.readConfigMany((read) => [read(0, 2), s.readConfig(2, 2)])).to.deep.equal([80, 25]);
    await r.frontend.close();
    expect(() => s.readConfigMany((read) => read(0, 2))).to.throw(TransportError).with.property('code', 'VSHM_ERR_SESSION_DEAD');
  });

  it('the ConfigReader of queueCount offers readMany too, valid only during queueCount', async () => {
    let seen: number[] = [];
    let reader: ConfigReader | undefined;
    const base = recordingDriver();
    const drv = {
      ...base,
      queueCount(features: bigint, config: ConfigReader): number {
        seen = config.readMany((read) => [read(0, 2), read(2, 2)]);
        reader = config;
        return base.queueCount(features, config);
      },
    };
    const r = echoRig({ drv });
    r.backend.start();
    await r.frontend.start();
    expect(seen).to.deep.equal([80, 25]);
    expect(() => reader!.readMany((read) => read(0, 2))).to.throw(TransportError).with.property('code', 'VSHM_ERR_SESSION_DEAD');
  });
});
