/**
 * §8 item 11: `-V 0`, `-V 65`, `-n 0`, `-n 1025`, `-P 0x10000`, `-P 0x8003 -n 3`, `-o 1000`,
 * `-l 64K -o 32K` each exit 2 with one stderr line, creating nothing; `-h` exits 0; K/M/G and `0x`
 * values parse (§1.9).
 *
 * The argv table runs in this process against the parser and the CLI's `main()` (the exit status
 * it returns and the lines it writes), which is where the decisions are made; ONE case runs the
 * real binary in a child process to prove the exit code and the stderr line reach the shell.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import binding from '@vshm/addon';
import { ArgumentError } from '../../src/errors.js';
import { IvshmemServer } from '../../src/server/server.js';
import { parseServerArgs } from '../../src/server/cli-args.js';
import { listeningLine, main } from '../../src/server/cli.js';
import { RawClient, removeIfExists, tmpPath } from '../fixtures/raw-client.js';
import { useCliRig } from '../fixtures/server-cli-rig.js';

const BAD_ARGS = [
  ['-V', '0'],
  ['-V', '65'],
  ['-n', '0'],
  ['-n', '1025'],
  ['-P', '0x10000'],
  ['-P', '0x8003', '-n', '3'],
  ['-o', '1000'],
  ['-l', '64K', '-o', '32K'],
  ['-l', '0'],
  ['-x'],
  ['-l'],
  ['-l', '12Q'],
  ['stray'],
];

/** A CliIo that records what main() writes. */
function recorder(): { io: { stdout: { write(s: string): boolean }; stderr: { write(s: string): boolean } }; out: () => string; errLines: () => string[] } {
  let out = '';
  let err = '';
  return {
    io: {
      stdout: { write: (s: string) => ((out += s), true) },
      stderr: { write: (s: string) => ((err += s), true) },
    },
    out: () => out,
    errLines: () => err.split('\n').filter((l) => l.length > 0),
  };
}

describe('§8 item 11: argument errors exit 2, -h exits 0, K/M/G and 0x parse', function () {
  describe('in process: the parser and main() over the whole argv table (§1.9)', () => {
    for (const args of BAD_ARGS) {
      it(`${args.join(' ')}: ArgumentError, exit status 2, one stderr line, nothing created`, async () => {
        const path = tmpPath('cli');
        const pid = tmpPath('cli', '.pid');
        const argv = ['-S', path, '-p', pid, ...args];
        expect(() => parseServerArgs(argv))
          .to.throw(ArgumentError)
          .with.property('code', 'VSHM_ERR_ARGUMENT');
        const r = recorder();
        expect(await main(argv, r.io)).to.equal(2);
        expect(r.errLines(), r.errLines().join('\n')).to.have.length(1);
        expect(r.errLines()[0]).to.match(/^vshm-server: \S.* \(try --help\)$/);
        expect(r.out()).to.equal('');
        expect(existsSync(path), 'no socket file').to.equal(false);
        expect(existsSync(pid), 'no pid file').to.equal(false);
      });
    }

    it('-h prints usage and exits 0 (also clustered, and ahead of a bad value)', async () => {
      for (const argv of [['-h'], ['-vh'], ['-h', '-V', '0']]) {
        expect(parseServerArgs(argv), argv.join(' ')).to.deep.equal({ help: true });
        const r = recorder();
        expect(await main(argv, r.io)).to.equal(0);
        expect(r.out()).to.match(/^Usage: vshm-server/);
        expect(r.out()).to.include('-P N');
        expect(r.errLines()).to.deep.equal([]);
      }
    });

    it('K/M/G and 0x values parse (-l 1M -V 0x3 -P 0x8003 -n 02 -o 4k, -l 1g), and a server runs on them', async () => {
      const path = tmpPath('cli');
      const parsed = parseServerArgs(['-S', path, '-l', '1M', '-V', '0x3', '-P', '0x8003', '-n', '02', '-o', '4k']);
      if (parsed.help) throw new Error('unexpected help');
      const o = parsed.options;
      expect(o).to.deep.include({ socketPath: path, memorySize: 1048576, vectors: 3, protocol: 0x8003, maxPeers: 2, outputSectionSize: 4096 });
      expect(listeningLine(o, 1048576)).to.equal(`vshm-server: listening on ${path} (1048576 bytes, 2 peers, 3 vectors, protocol 0x8003)`);
      const g = parseServerArgs(['-l', '1g']);
      expect(!g.help && g.options.memorySize).to.equal(1073741824);
      // The parsed options drive a real server (in this process): INIT says what the flags said.
      const server = new IvshmemServer({ ...o });
      await server.start();
      try {
        const a = RawClient.connect(binding, path);
        try {
          const [init] = await a.take(4);
          expect(init.msg).to.deep.include({ id: 0, maxPeers: 2, vectors: 3, protocol: 0xc003, outputSectionSize: 4096 });
          expect(binding.fstat(init.fds[0]).size).to.equal(1048576);
        } finally {
          a.close();
        }
      } finally {
        await server.stop();
        removeIfExists(path);
      }
    });
  });

  describe('vshm-server CLI in a child process (§1.9): one case end to end', function () {
    const rig = useCliRig();

    it('-V 0: the process exits 2 with one stderr line and creates nothing', async () => {
      const path = rig.sock();
      const pid = tmpPath('cli', '.pid');
      rig.paths.push(pid);
      const c = rig.server(['-S', path, '-p', pid, '-V', '0']);
      const { code } = await c.exit;
      expect(code).to.equal(2);
      expect(c.stderrLines(), c.stderrLines().join('\n')).to.have.length(1);
      expect(c.stderrLines()[0]).to.match(/^vshm-server: .*-V/);
      expect(existsSync(path), 'no socket file').to.equal(false);
      expect(existsSync(pid), 'no pid file').to.equal(false);
    });
  });
});
