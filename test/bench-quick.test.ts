/**
 * `npm run bench -- --quick` (bench/run.mjs) works and leaves nothing in the temp directory
 * (issue 10: every virtio case used to leave its server directory behind, because the case's
 * report() exited before the `finally` that stops the server). Nothing here looks at a figure:
 * the bench asserts nothing about speed, and neither does its test.
 *
 * The bench runs with TMPDIR pointing at a fresh directory of this test, so the check is exact
 * even while other processes on the machine create and remove their own /tmp entries.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function run(args: string[], tmp: string, env: NodeJS.ProcessEnv = process.env): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', env: { ...env, TMPDIR: tmp }, timeout: 60000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('bench (quick mode)', function () {
  this.timeout(90000);
  let tmp: string;
  let out: string;
  beforeEach(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vshm-bench-test-'));
    out = mkdtempSync(path.join(os.tmpdir(), 'vshm-bench-test-out-'));
  });
  afterEach(() => {
    rmSync(tmp, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  });

  it('runs a virtio case and a floor, writes the JSON with the fields and ratios, and leaves TMPDIR empty', () => {
    const json = path.join(out, 'results.json');
    const r = run(['bench/run.mjs', '--quick', '--only', 'spin_floor_rtt,ring_floor_rtt,rtt64', '--json', json], tmp);
    expect(r.status, r.stderr).to.equal(0);
    const res = JSON.parse(readFileSync(json, 'utf8'));
    for (const name of ['spin_floor_rtt', 'ring_floor_rtt', 'rtt64']) {
      expect(res.cases[name].median_us, name).to.be.a('number').above(0);
      expect(res.cases[name].p99_us, name).to.be.a('number').at.least(res.cases[name].median_us);
    }
    expect(res.ratios['rtt64 / spin_floor_rtt (median)']).to.include({ target: '≤ 2' });
    expect(res.ratios['rtt64 / spin_floor_rtt (median)'].value).to.be.a('number');
    expect(r.stdout).to.match(/rtt64 \/ spin_floor_rtt \(median\)\s+\S+\s+≤ 2\s+(met|MISSED)/);
    expect(res.ratios['rtt64 / ring_floor_rtt (median; the JavaScript share)'].value).to.be.a('number');
    expect(r.stdout).not.to.match(/eventfd_floor_rtt/); // a case not run: no value, no line
    expect(readdirSync(tmp)).to.deep.equal([]);
  });

  it('runs the virtio-blk cases (transport, direct file, NBD) with their ratios, and leaves TMPDIR empty', () => {
    const json = path.join(out, 'results.json');
    const r = run(['bench/run.mjs', '--quick', '--only', 'file_seq_read,blk_seq_read,blk_randread_4k_qd32,nbd_seq_read', '--json', json], tmp);
    expect(r.status, r.stderr).to.equal(0);
    const res = JSON.parse(readFileSync(json, 'utf8'));
    expect(res.cases.file_seq_read.gbps).to.be.a('number').above(0);
    expect(res.cases.blk_seq_read.gbps).to.be.a('number').above(0);
    expect(res.cases.blk_randread_4k_qd32.iops).to.be.a('number').above(0);
    // The sequential cases time a second pass (the first one warms both sides) and say what each
    // side spent on the timed part.
    expect(res.cases.blk_seq_read.warmup).to.equal(res.cases.blk_seq_read.bytes);
    expect(res.cases.file_seq_read.warmup).to.equal(res.cases.file_seq_read.bytes);
    expect(res.cases.blk_seq_read.cpu.fe_s_per_gb).to.be.a('number').above(0);
    expect(res.cases.blk_seq_read.cpu.be_s_per_gb).to.be.a('number').above(0);
    expect(res.cases.file_seq_read.cpu.s_per_gb).to.be.a('number').at.least(0);
    // nbdcopy may be missing: then the case says so instead of a figure.
    expect(res.cases.nbd_seq_read.gbps ?? res.cases.nbd_seq_read.skipped).to.not.equal(undefined);
    expect(res.ratios['blk_seq_read / file_seq_read']).to.include({ target: '≥ 0.5' });
    expect(res.ratios['blk_seq_read / file_seq_read'].value).to.be.a('number');
    expect(readdirSync(tmp)).to.deep.equal([]);
  });

  it('a virtio case run on its own removes its server directory before it exits', () => {
    const r = run(['bench/cases/virtio.mjs', 'rtt', '200'], tmp);
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop() as string).rounds).to.equal(200);
    expect(readdirSync(tmp)).to.deep.equal([]);
  });

  it('startup: with NODE_EXTRA_CA_CERTS set also times both spawns without it; without it, only as given', () => {
    // The startup case itself spawns the real front-end CLI against its own server and back-end.
    const withVar = { ...process.env, NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt' };
    const withoutVar = { ...process.env };
    delete withoutVar.NODE_EXTRA_CA_CERTS;
    const set = run(['bench/cases/startup.mjs', '2', '0'], tmp, withVar);
    expect(set.status, set.stderr).to.equal(0);
    const a = JSON.parse(set.stdout.trim().split('\n').pop() as string);
    expect(a.startup.runs).to.equal(2);
    expect(a.startup.without_extra_ca_certs.runs).to.equal(2);
    expect(a.startup.without_extra_ca_certs.median_ms).to.be.a('number').above(0);
    expect(a.node_startup.without_extra_ca_certs.runs).to.equal(2);
    const unset = run(['bench/cases/startup.mjs', '2', '0'], tmp, withoutVar);
    expect(unset.status, unset.stderr).to.equal(0);
    const b = JSON.parse(unset.stdout.trim().split('\n').pop() as string);
    expect(b.startup.runs).to.equal(2);
    expect(b.startup).not.to.have.property('without_extra_ca_certs');
    expect(b.node_startup).not.to.have.property('without_extra_ca_certs');
    expect(readdirSync(tmp)).to.deep.equal([]);
  });

  it('rejects an unknown case with exit 2 and one line', () => {
    const r = run(['bench/run.mjs', '--quick', '--only', 'no_such_case'], tmp);
    expect(r.status).to.equal(2);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(readdirSync(tmp)).to.deep.equal([]);
  });
});
