/**
 * Cross-process: a real VirtioFrontend and VirtioBackend, each in its own process, over the
 * `vshm-server` CLI (a third process). Every transaction kind round-trips (status, feature
 * selects and windows, queue window and enable, config write), data moves both ways, config
 * events arrive, and a back-end killed with SIGKILL and restarted is recovered from (§4.10,
 * §8 items 34, 35).
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerProcess, TransportChild } from '../fixtures/transport-harness.js';

describe('transport e2e: FE and BE in separate processes over vshm-server', function () {
  this.timeout(120000);
  let dir: string;
  let socketPath: string;
  let server: ServerProcess;
  let children: TransportChild[];

  function child(role: 'be' | 'fe', mode = ''): TransportChild {
    const c = new TransportChild(role, socketPath, mode);
    children.push(c);
    return c;
  }

  async function startServer(args: string[]): Promise<void> {
    server = new ServerProcess(['-S', socketPath, ...args]);
    await server.ready();
  }

  beforeEach(async function () {
    dir = mkdtempSync(join(tmpdir(), 'vshm-e2e-'));
    socketPath = join(dir, 'ivshmem.sock');
    children = [];
    if (!/isolated/.test(this.currentTest?.title ?? '')) await startServer(['-l', '1M', '-V', '3', '-P', '0x8003']);
  });

  afterEach(async () => {
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.exit));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('initialises and round-trips every transaction kind, data and config events', async () => {
    const be = child('be');
    expect((await be.ready()).id).to.equal(0); // the back-end connects first (§1.4)
    const fe = child('fe');
    expect((await fe.ready()).id).to.equal(1);
    // Status, feature selects/windows, queue select/size/vectors/addresses/enable, DRIVER_OK: all
    // completed, or there would be no probe and no BE session.
    const probe = await fe.event('probe', { generation: 1 });
    const session = await be.event('session');
    expect(probe.features).to.equal(session.features);
    expect(BigInt(probe.features as string) & (3n << 32n)).to.equal(3n << 32n);

    // Config read (direct, generation rule) and config write (transaction at 0x4C + 8).
    expect(await fe.request({ op: 'read-config', offset: 0, width: 2 })).to.equal(80);
    await fe.request({ op: 'write-config', offset: 8, width: 4, value: 0x41 });
    expect((await be.event('config-written')).value).to.equal(0x41);

    // Config change on the BE → config event → FE re-reads.
    await be.request({ op: 'update-config', cols: 132 });
    expect((await fe.event('config-changed', { cols: 132 })).cols).to.equal(132);

    // Data: batches on the echo queue. A request takes two descriptors, so a queue of 8 holds
    // four: post four, then wait for their completions, never for the scheduler.
    for (let base = 0; base < 12; base += 4) {
      for (let i = base; i < base + 4; i++) expect(await fe.request({ op: 'send', queue: 0, text: `m${i}`, inLen: 32, token: i })).to.equal(true);
      for (let i = base; i < base + 4; i++) expect((await fe.event('used', { token: i })).data).to.equal(`m${i}`);
    }

    // Orderly FE shutdown: reset by transaction, then State RESET; the BE sees the reset.
    await fe.request({ op: 'close' });
    const end = await be.event('deactivate');
    expect(['driver-reset', 'driver-gone']).to.include(end.reason);
    expect(be.messages.find((m) => m.type === 'deactivate')?.reason).to.equal('driver-reset');
  });

  it('a back-end killed with SIGKILL: in-flight requests fail, the FE recovers with a restarted back-end', async () => {
    const be1 = child('be');
    await be1.ready();
    const fe = child('fe');
    await fe.ready();
    await fe.event('probe', { generation: 1 });
    // Requests on the hold queue stay in flight.
    for (const t of ['a', 'b']) await fe.request({ op: 'send', queue: 1, text: t, inLen: 0, token: t });
    await fe.request({ op: 'send', queue: 0, text: 'before', inLen: 16, token: 'before' });
    await fe.event('used', { token: 'before' });
    while ((await be1.request({ op: 'held' })) !== 2) await new Promise((r) => setImmediate(r));

    be1.kill('SIGKILL');
    await be1.exit;
    expect((await fe.event('remove')).code).to.equal('VSHM_ERR_BACKEND_LOST');
    expect((await fe.event('lost')).code).to.equal('VSHM_ERR_BACKEND_LOST');
    const failed = fe.all('failed').map((m) => [m.token, m.code]);
    expect(failed.sort()).to.deep.equal([
      ['a', 'VSHM_ERR_BACKEND_LOST'],
      ['b', 'VSHM_ERR_BACKEND_LOST'],
    ]);

    const be2 = child('be');
    expect((await be2.ready()).id).to.equal(0); // id 0 is free again
    await fe.event('probe', { generation: 2 });
    await be2.event('session');
    await fe.request({ op: 'send', queue: 0, text: 'after', inLen: 16, token: 'after' });
    expect((await fe.event('used', { token: 'after' })).data).to.equal('after');
  });

  it('isolated layout (-o 64K) with real protections: rings and buffers per §5.2, data moves, no fault', async () => {
    await startServer(['-l', '256K', '-o', '64K', '-V', '3', '-P', '0x8003']);
    const be = child('be', 'isolated'); // the BE enforces §5.2 placement (violations → NEEDS_RESET)
    await be.ready();
    const fe = child('fe');
    await fe.ready();
    await fe.event('probe', { generation: 1 });
    for (let base = 0; base < 20; base += 4) {
      // Four two-descriptor requests fill the size-8 queue; then await their completions.
      for (let i = base; i < base + 4; i++) expect(await fe.request({ op: 'send', queue: 0, text: `iso${i}`, inLen: 64, token: i })).to.equal(true);
      for (let i = base; i < base + 4; i++) expect((await fe.event('used', { token: i })).data).to.equal(`iso${i}`);
    }
    await fe.request({ op: 'write-config', offset: 8, width: 4, value: 0x42 });
    expect((await be.event('config-written')).value).to.equal(0x42);
    // A write into the other side's read-only section would have killed a process with SIGSEGV.
    expect(fe.proc.exitCode).to.equal(null);
    expect(be.proc.exitCode).to.equal(null);
    expect(fe.all('fe-error')).to.deep.equal([]);
    expect(fe.all('remove')).to.deep.equal([]);
  });

  it('isolated layout: a write into the other side\'s output section faults in the writer (§2, §5.2)', async () => {
    // -l 256K -n 2 -o 64K: RW = 124 KiB; peer 0's (BE) section at window 0x1F000, peer 1's at 0x2F000.
    await startServer(['-l', '256K', '-o', '64K', '-V', '3', '-P', '0x8003']);
    const be = child('be', 'isolated');
    await be.ready();
    const fe = child('fe');
    await fe.ready();
    await fe.event('probe', { generation: 1 });
    // Each side may write its own section …
    expect(await be.request({ op: 'poke', offset: 0x1f000 + 0x8000 })).to.equal('written');
    expect(await fe.request({ op: 'poke', offset: 0x2f000 + 0x8000 })).to.equal('written');
    // … but a back-end write into the front-end's section kills the back-end, not the rings.
    void be.request({ op: 'poke', offset: 0x2f000 + 0x10 }).catch(() => undefined);
    const exit = await be.exit;
    expect(exit.signal).to.be.oneOf(['SIGSEGV', 'SIGBUS']);
    // The front-end is unharmed: it sees the back-end lost and stays alive.
    expect((await fe.event('lost')).code).to.equal('VSHM_ERR_BACKEND_LOST');
    void fe.request({ op: 'poke', offset: 0x1f000 + 0x10 }).catch(() => undefined);
    expect((await fe.exit).signal).to.be.oneOf(['SIGSEGV', 'SIGBUS']);
  });
});
