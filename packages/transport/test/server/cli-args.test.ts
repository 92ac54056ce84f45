import { expect } from 'chai';
import { ArgumentError } from '../../src/errors.js';
import { parseServerArgs, type ServerArgs } from '../../src/server/cli-args.js';
import {
  optionWarnings,
  parseNumber,
  parseSize,
  resolveServerOptions,
  roundUpPow2,
  type ServerOptions,
} from '../../src/server/options.js';
import { parseProcNetUnix, socketLiveness } from '../../src/server/socket.js';

function opts(argv: string[]): ServerOptions {
  const r: ServerArgs = parseServerArgs(argv);
  if (r.help) throw new Error('unexpected help');
  return r.options;
}

function expectArgError(argv: string[]): void {
  let caught: unknown;
  try {
    parseServerArgs(argv);
  } catch (e) {
    caught = e;
  }
  expect(caught, argv.join(' ')).to.be.instanceOf(ArgumentError);
  expect((caught as ArgumentError).code).to.equal('VSHM_ERR_ARGUMENT');
  expect((caught as Error).message).to.not.include('\n');
}

describe('vshm-server options (§1.9)', () => {
  describe('value syntax', () => {
    it('SIZE: decimal with K/M/G in any case, powers of 1024', () => {
      expect(parseSize('0')).to.equal(0);
      expect(parseSize('4096')).to.equal(4096);
      expect(parseSize('60K')).to.equal(60 * 1024);
      expect(parseSize('64k')).to.equal(65536);
      expect(parseSize('4M')).to.equal(4 * 1024 ** 2);
      expect(parseSize('1m')).to.equal(1024 ** 2);
      expect(parseSize('1G')).to.equal(1024 ** 3);
      expect(parseSize('2g')).to.equal(2 * 1024 ** 3);
    });

    it('SIZE: rejects other syntax and unsafe values', () => {
      for (const s of ['', 'K', '1.5M', '-1', '0x10', '1KB', '1T', ' 1', '99999999999999999999G']) {
        expect(() => parseSize(s), s).to.throw(ArgumentError);
      }
    });

    it('N: C base-0 (decimal, 0x hex, leading-0 octal)', () => {
      expect(parseNumber('0')).to.equal(0);
      expect(parseNumber('17')).to.equal(17);
      expect(parseNumber('0x8003')).to.equal(0x8003);
      expect(parseNumber('0XFFFF')).to.equal(0xffff);
      expect(parseNumber('010')).to.equal(8);
      expect(parseNumber('00')).to.equal(0);
    });

    it('N: rejects other syntax', () => {
      for (const s of ['', '08', '0x', '1e3', '-1', '+1', '12a', ' 1', '0b1']) {
        expect(() => parseNumber(s), s).to.throw(ArgumentError);
      }
    });

    it('rounds up to a power of two', () => {
      expect([1, 2, 3, 4096, 4097, 61440, 65536].map(roundUpPow2)).to.deep.equal([1, 2, 4, 4096, 8192, 65536, 65536]);
      expect(roundUpPow2(2 ** 40 - 1)).to.equal(2 ** 40);
    });
  });

  describe('command line', () => {
    it('has the ivshmem2-server defaults', () => {
      expect(opts([])).to.deep.equal({
        socketPath: '/tmp/ivshmem_socket',
        memory: { kind: 'memfd' },
        memorySize: 4 * 1024 * 1024,
        outputSectionSize: 0,
        maxPeers: 2,
        vectors: 1,
        protocol: 0,
        pidFile: undefined,
        verbose: false,
        peerUids: [],
      });
    });

    it('parses every flag, separate and attached values, clusters', () => {
      const o = opts(['-vF', '-p', '/tmp/p.pid', '-S/tmp/s.sock', '-l', '60K', '-o0', '-n', '2', '-V', '0x3', '-P', '0x8003']);
      expect(o).to.deep.equal({
        socketPath: '/tmp/s.sock',
        memory: { kind: 'memfd' },
        memorySize: 65536,
        outputSectionSize: 0,
        maxPeers: 2,
        vectors: 3,
        protocol: 0x8003,
        pidFile: '/tmp/p.pid',
        verbose: true,
        peerUids: [],
      });
      expect(opts(['-vl64K']).memorySize).to.equal(65536);
    });

    it('-M / -m: the last one wins; -M names get one leading slash', () => {
      expect(opts(['-M', 'foo', '-m', '/dev/hugepages']).memory).to.deep.equal({ kind: 'tmpfile', dir: '/dev/hugepages' });
      expect(opts(['-m', '/tmp', '-M', 'foo']).memory).to.deep.equal({ kind: 'shm', name: '/foo' });
      expect(opts(['-M', '/bar']).memory).to.deep.equal({ kind: 'shm', name: '/bar' });
      expectArgError(['-M', 'a/b']);
    });

    it('-l 1G and a large -o fit; 2G parses', () => {
      expect(opts(['-l', '1G']).memorySize).to.equal(1024 ** 3);
      expect(opts(['-l', '2G', '-o', '1G', '-n', '1']).memorySize).to.equal(2 * 1024 ** 3);
      expect(opts(['-l', '64K', '-o', '28K']).outputSectionSize).to.equal(28 * 1024);
    });

    it('--peer-uids LIST: uids or any, also as --peer-uids=LIST; empty is none; -U is no option', () => {
      expect(opts(['--peer-uids', '1000,1001']).peerUids).to.deep.equal([1000, 1001]);
      expect(opts(['--peer-uids=any']).peerUids).to.equal('any');
      expect(opts(['--peer-uids', '']).peerUids).to.deep.equal([]);
      for (const argv of [['--peer-uids', 'nobody'], ['--peer-uids', '1,-2'], ['--peer-uids', '4294967296'], ['--peer-uids'], ['-U', '5']]) expectArgError(argv);
      expect(() => parseServerArgs(['--peer-uids', 'x'])).to.throw(ArgumentError, "--peer-uids must be 'any' or comma-separated uids, got \"x\"");
    });

    it('without --peer-uids, VSHM_PEER_UIDS gives the list; --peer-uids overrides it', () => {
      process.env.VSHM_PEER_UIDS = '7, 8';
      try {
        expect(opts([]).peerUids).to.deep.equal([7, 8]);
        expect(opts(['--peer-uids', '']).peerUids).to.deep.equal([]);
        process.env.VSHM_PEER_UIDS = 'seven';
        expect(() => parseServerArgs([])).to.throw(ArgumentError, /VSHM_PEER_UIDS/);
      } finally {
        delete process.env.VSHM_PEER_UIDS;
      }
    });

    it('-h wins at its position', () => {
      expect(parseServerArgs(['-h'])).to.deep.equal({ help: true });
      expect(parseServerArgs(['-v', '-h', '-V', '0'])).to.deep.equal({ help: true });
      expectArgError(['-x', '-h']);
    });

    const bad: string[][] = [
      ['-V', '0'],
      ['-V', '65'],
      ['-n', '0'],
      ['-n', '1025'],
      ['-P', '0x10000'],
      ['-P', '0x8003', '-n', '3'],
      ['-o', '1000'],
      ['-l', '64K', '-o', '32K'],
      ['-l', '0'],
      ['-l', '2000G'],
      ['-x'],
      ['-S'],
      ['-l', 'abc'],
      ['-n', '2x'],
      ['extra'],
      ['-v', '--', 'extra'],
      ['-'],
      ['-S', ''],
    ];
    for (const argv of bad) {
      it(`rejects ${JSON.stringify(argv.join(' '))} with one ArgumentError line`, () => expectArgError(argv));
    }

    it('accepts the boundaries of each range', () => {
      expect(opts(['-V', '64', '-n', '1024', '-P', '0x7fff']).vectors).to.equal(64);
      expect(opts(['-V', '1', '-n', '1', '-P', '0xffff', '-n', '2']).protocol).to.equal(0xffff);
      expect(opts(['-l', '64K', '-o', '28K', '-n', '2']).outputSectionSize).to.equal(28672);
    });

    it('warns for a virtio protocol with RW below 8 KiB, not otherwise', () => {
      expect(optionWarnings(opts(['-l', '8K', '-P', '0x8003']))).to.have.length(1);
      expect(optionWarnings(opts(['-l', '64K', '-o', '28K', '-P', '0x8003']))).to.have.length(1);
      expect(optionWarnings(opts(['-l', '16K', '-P', '0x8003']))).to.have.length(0);
      expect(optionWarnings(opts(['-l', '8K', '-P', '0x1234']))).to.have.length(0);
    });
  });

  describe('programmatic options', () => {
    it('applies the same checks and rejects unknown keys', () => {
      expect(() => resolveServerOptions({ vectors: 0 })).to.throw(ArgumentError);
      expect(() => resolveServerOptions({ maxPeers: 1.5 })).to.throw(ArgumentError);
      expect(() => resolveServerOptions({ protocol: 0x8000, maxPeers: 3 })).to.throw(ArgumentError);
      expect(() => resolveServerOptions({ vector: 2 } as never)).to.throw(ArgumentError);
      expect(() => resolveServerOptions({ memory: { kind: 'file' } as never })).to.throw(ArgumentError);
      expect(resolveServerOptions({ memorySize: 61440 }).memorySize).to.equal(65536);
    });
  });

  describe('/proc/net/unix liveness check', () => {
    const table = [
      'Num       RefCount Protocol Flags    Type St Inode Path',
      '0000000000000000: 00000002 00000000 00010000 0001 01 12345 /tmp/live.sock',
      '0000000000000000: 00000003 00000000 00000000 0001 03  1134',
      '0000000000000000: 00000002 00000000 00010000 0001 01 12346 @abstract',
      '0000000000000000: 00000002 00000000 00010000 0001 01 12347 /tmp/with space.sock',
      '0000000000000000: 00000002 00000000 00010000 0001 01 12348 rel/other.sock',
      '',
    ].join('\n');

    it('parses bound entries (path is the rest of the line)', () => {
      expect(parseProcNetUnix(table)).to.deep.equal([
        { flags: 0x10000, state: 1, path: '/tmp/live.sock' },
        { flags: 0x10000, state: 1, path: '/tmp/with space.sock' },
        { flags: 0x10000, state: 1, path: 'rel/other.sock' },
      ]);
    });

    it('classifies live, stale and undecidable paths', () => {
      const e = parseProcNetUnix(table);
      expect(socketLiveness(e, '/tmp/live.sock')).to.equal('live');
      expect(socketLiveness(e, '/tmp/with space.sock')).to.equal('live');
      expect(socketLiveness(e, '/tmp/dead.sock')).to.equal('stale');
      expect(socketLiveness(e, '/somewhere/other.sock')).to.equal('unknown');
    });

    it('an absolute entry spelled differently counts by its directory (same, other, cannot tell)', () => {
      const e = parseProcNetUnix(table);
      const calls: string[][] = [];
      const dir = (verdict: boolean | undefined) => (a: string, b: string) => (calls.push([a, b]), verdict);
      expect(socketLiveness(e, '/var/live.sock', dir(true))).to.equal('live');
      expect(calls).to.deep.equal([['/tmp', '/var']]);
      expect(socketLiveness(e, '/var/live.sock', dir(false))).to.equal('stale');
      expect(socketLiveness(e, '/var/live.sock', dir(undefined))).to.equal('unknown');
      expect(socketLiveness(e, '/tmp/./live.sock', dir(false))).to.equal('live');
      calls.length = 0;
      expect(socketLiveness(e, '/tmp/dead.sock', dir(true))).to.equal('stale');
      expect(calls).to.deep.equal([]); // only entries with our file name are compared
    });
  });
});

// The one CLI voice: long aliases, one-line usage errors, the "too small" memory message.
function fails(argv: string[]): string {
  try {
    parseServerArgs(argv);
  } catch (err) {
    expect(err).to.be.instanceOf(ArgumentError);
    expect((err as Error).message).to.not.include('\n');
    return (err as Error).message;
  }
  throw new Error(`parseServerArgs(${JSON.stringify(argv)}) did not fail`);
}

describe('vshm-server arguments (one CLI voice)', () => {
  it('--help and -h give help; --help after other options too', () => {
    expect(parseServerArgs(['--help'])).to.deep.equal({ help: true });
    expect(parseServerArgs(['-h'])).to.deep.equal({ help: true });
    expect(parseServerArgs(['-l', '64K', '--help'])).to.deep.equal({ help: true });
  });

  it('--server PATH, --server=PATH and -S PATH set the socket; --verbose is -v', () => {
    for (const argv of [['--server', '/tmp/a.sock'], ['--server=/tmp/a.sock'], ['-S', '/tmp/a.sock'], ['-S/tmp/a.sock']]) {
      const r = parseServerArgs(argv);
      expect(r.help).to.equal(false);
      if (!r.help) expect(r.options.socketPath).to.equal('/tmp/a.sock');
    }
    const r = parseServerArgs(['--verbose']);
    if (!r.help) expect(r.options.verbose).to.equal(true);
  });

  const table: [string[], string][] = [
    [['--bogus'], "unknown option '--bogus'"],
    [['-x'], "unknown option '-x'"],
    [['--server'], "option '--server' needs a value"],
    [['--help=1'], "option '--help' takes no value"],
    [['-l'], "option '-l' needs a value"],
    [['-S', ''], "option '-S' needs a non-empty value"],
    [['--server='], "option '--server' needs a non-empty value"],
    [['--server', ''], "option '--server' needs a non-empty value"],
    [['stray'], "unexpected argument 'stray'"],
    // The long form's '=' on a short option: refused, not the path '=/x' getopt would take.
    [['-S=/x'], "write '-S VALUE' or '--server=VALUE', not '-S=/x'"],
    [['-l=64K'], "write '-l VALUE', not '-l=64K'"],
    [['-v=1'], "option '-v' takes no value (in '-v=1')"],
    [['-Fv=1'], "option '-v' takes no value (in '-Fv=1')"],
  ];
  for (const [argv, message] of table) {
    it(`${argv.join(' ') || "''"} → ${message}`, () => {
      expect(fails(argv)).to.equal(message);
    });
  }

  it('-l 3 says the size is too small and names the minimum', () => {
    expect(fails(['-l', '3'])).to.equal('memory size (-l) 3 (rounded up to 4) is too small: the minimum is 4096 bytes (4096-byte state table)');
    expect(fails(['-l', '8K', '-o', '4K', '-n', '2'])).to.match(/^memory size \(-l\) 8192 is too small: the minimum is 16384 bytes \(4096-byte state table \+ 2 output sections of 4096\)$/);
    expect(() => parseServerArgs(['-l', '4K'])).to.not.throw();
  });
});
