/**
 * Host-side command attachment of the back-end CLI (attach.ts): close() must end even a command
 * that ignores SIGTERM — the CLI restores the terminal only after every attachment closed.
 */
import { expect } from 'chai';
import { attachCommand, type Attached } from '../src/attach.js';
import { ConsolePort } from '../src/port.js';

describe('backend attachCommand', () => {
  const open: Attached[] = [];
  afterEach(async () => {
    for (const a of open.splice(0)) await a.close();
  });

  it('close() ends a command that ignores SIGTERM', async () => {
    const port = new ConsolePort(1, 'cmd', 65536);
    const a = attachCommand(port, "trap '' TERM; echo ready; read line");
    open.push(a);
    // The trap is set once the command said so (its output is the port's input).
    const ready = Date.now() + 20000;
    while (port.buffer.length < 6) {
      if (Date.now() > ready) throw new Error('the command did not start');
      await new Promise((r) => setImmediate(r));
    }
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<string>((r) => (timer = setTimeout(() => r('hung'), 20000)));
    const result = await Promise.race([a.close().then(() => 'closed'), bound]);
    clearTimeout(timer);
    expect(result).to.equal('closed');
    expect(port.hostOpen).to.equal(false);
  });
});
