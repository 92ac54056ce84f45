/**
 * §8 item 11: `-V 0`, `-V 65`, `-n 0`, `-n 1025`, `-P 0x10000`, `-P 0x8003 -n 3`, `-o 1000`,
 * `-l 64K -o 32K` each exit 2 with one stderr line, creating nothing; `-h` exits 0; K/M/G and `0x`
 * values parse (§1.9).
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import binding from '@vshm/addon';
import { tmpPath } from '../helpers/raw-client.js';
import { useCliRig } from '../helpers/server-cli-rig.js';

describe('§8 item 11: argument errors exit 2, -h exits 0, K/M/G and 0x parse', function () {
  describe('vshm-server CLI in a child process (§1.9)', function () {
    const rig = useCliRig();
    const { sock, server, ready, connect } = rig;

    describe('item 11: argument errors exit 2 with one stderr line and create nothing', () => {
      const cases = [
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
      for (const args of cases) {
        it(`${args.join(' ')}`, async () => {
          const path = sock();
          const pid = tmpPath('cli', '.pid');
          rig.paths.push(pid);
          const c = server(['-S', path, '-p', pid, ...args]);
          const { code } = await c.exit;
          expect(code).to.equal(2);
          expect(c.stderrLines(), c.stderrLines().join('\n')).to.have.length(1);
          expect(c.stderrLines()[0]).to.match(/^vshm-server: .* \(try --help\)$/);
          expect(existsSync(path), 'no socket file').to.equal(false);
          expect(existsSync(pid), 'no pid file').to.equal(false);
        });
      }
    });

    it('-h prints usage and exits 0', async () => {
      const c = server(['-h']);
      expect((await c.exit).code).to.equal(0);
      expect(c.stdout()).to.match(/^Usage: vshm-server/);
      expect(c.stdout()).to.include('-P N');
    });

    it('K/M/G and 0x values parse (-l 1M -V 0x3 -P 0x8003 -n 02 -o 4k, -l 1g)', async () => {
      const path = sock();
      const c = await ready(['-S', path, '-l', '1M', '-V', '0x3', '-P', '0x8003', '-n', '02', '-o', '4k']);
      expect(c.stderrLines().at(-1)).to.equal(
        `vshm-server: listening on ${path} (1048576 bytes, 2 peers, 3 vectors, protocol 0x8003)`,
      );
      const a = connect(path);
      const [init] = await a.take(4);
      expect(init.msg).to.deep.include({ id: 0, maxPeers: 2, vectors: 3, protocol: 0xc003, outputSectionSize: 4096 });
      expect(binding.fstat(init.fds[0]).size).to.equal(1048576);
      const g = await ready(['-S', sock(), '-l', '1g']);
      expect(g.stderrLines().at(-1)).to.include('(1073741824 bytes,');
    });
  });
});
