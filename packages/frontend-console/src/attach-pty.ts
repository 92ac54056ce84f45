/**
 * Run a command on a pseudo-terminal whose other end is a console port — what a getty does on a
 * Linux guest's hvc0, which is a tty: the pty's line discipline gives the command echo, line
 * editing, CR → NL on input, and turns ^C / ^Z / ^\ typed on the back-end's terminal into
 * signals for the command's foreground job. The pty comes from node-pty (a well-kept library;
 * no hand-written pty code).
 *
 * - port → pty master (input); pty master → port (output), with backpressure both ways: the pty
 *   is paused while the port's writable side is full, so the command blocks rather than memory
 *   growing; the port is paused while the pty holds a backlog of input the command has not
 *   read (see ptyInputBacklog), so the back-end holds the rest.
 * - Size: the pty starts at the port's size (config SIZE, or RESIZE with MULTIPORT, §7.3) and
 *   follows every 'resize' of the port with resize() (the kernel sends SIGWINCH to the job).
 *   Before the device told a size, 80×24. A 0 in either dimension (no size known) is ignored.
 * - The device closing the port (PORT_OPEN 0 or DEVICE_REMOVE) is a hangup: SIGHUP, as when a
 *   terminal line drops. The back-end going away is not: the front-end waits for it (§4.10).
 * - When the command exits, everything it wrote is flushed to the device, then `done` resolves
 *   with its status (exit code, or 128 + signal number).
 * - Not binary-safe (the line discipline rewrites bytes): use `--no-pty` (pipes) for data.
 */
import { accessSync, constants as fsConstants, statSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import type { IPty } from 'node-pty';
import { createAttachment, type Attachment } from './attachment.js';
import { EXIT_CANNOT_RUN } from './attach-command.js';
import type { ConsolePort, ConsoleSize } from './port.js';

/**
 * node-pty, required at the first pty spawn rather than imported: it is a native addon whose
 * load costs every start of the CLI ~15 ms, and the CLI imports this module statically (so the
 * bundle can leave out what it does not use) whatever the attachment.
 */
let ptyModule: typeof import('node-pty') | undefined;
function spawnPty(...args: Parameters<typeof import('node-pty').spawn>): IPty {
  ptyModule ??= createRequire(import.meta.url)('node-pty') as typeof import('node-pty');
  return ptyModule.spawn(...args);
}

/** Size of the pty before the device told one (the traditional serial-terminal default). */
export const DEFAULT_PTY_SIZE: ConsoleSize = { cols: 80, rows: 24 };

/**
 * Whether `command` can be executed (as execvp would find it). node-pty reports a failed exec
 * only as text on the pty and exit 1; checking first keeps "cannot run" an error line and 127,
 * as with pipes. Returns an errno code, or null when runnable.
 */
export function findExecutable(command: string, path = process.env.PATH ?? '/usr/bin:/bin'): string | null {
  const candidates = command.includes('/') ? [command] : path.split(delimiter).filter((d) => d.length > 0).map((d) => join(d, command));
  let code = 'ENOENT';
  for (const c of candidates) {
    try {
      if (statSync(c).isDirectory()) {
        code = 'EACCES';
        continue;
      }
      accessSync(c, fsConstants.X_OK);
      return null;
    } catch (err) {
      const e = (err as NodeJS.ErrnoException).code ?? 'ENOENT';
      if (e !== 'ENOENT') code = e;
    }
  }
  return code;
}

/** Input bytes node-pty may hold for a command that does not read before the port is paused. */
export const PTY_INPUT_BACKLOG_LIMIT = 64 * 1024;
/** How often a paused port looks whether the command read its backlog. */
const PTY_INPUT_POLL_MS = 10;

/**
 * Input bytes node-pty queued because the kernel's pty buffer was full, or null if this node-pty
 * does not tell. Its write() returns nothing and never signals a drain: whatever the kernel does
 * not take at once waits in a private queue (node-pty 1.1 on Unix, `_writeStream._writeQueue`)
 * that grows without bound while the command does not read. Read defensively: a node-pty
 * without that queue (or with entries of another shape) gives null, and attachPty then warns
 * once (probeInputBacklog) and lets the input flow unbounded. test/attach-pty-backlog-probe
 * fails against a node-pty that drops the field.
 */
export function ptyInputBacklog(pty: IPty): number | null {
  const queue = (pty as unknown as { _writeStream?: { _writeQueue?: unknown } })._writeStream?._writeQueue;
  if (!Array.isArray(queue)) return null;
  let n = 0;
  for (const task of queue as { buffer?: unknown; offset?: unknown }[]) {
    if (!Buffer.isBuffer(task?.buffer) || typeof task.offset !== 'number') return null;
    n += task.buffer.length - task.offset;
  }
  return n;
}

/**
 * Drop the input node-pty still holds for a command that is gone, and stop its retries. node-pty
 * keeps retrying queued writes on the master fd (on EAGAIN, every event-loop turn) even after the
 * command died and the fd was closed; a file or socket opened later on the same fd number would
 * get those bytes. Returns the bytes dropped (0 when this node-pty hides its queue: see
 * ptyInputBacklog). Same private fields as ptyInputBacklog, read as defensively.
 */
export function dropPtyInput(pty: IPty): number {
  const ws = (pty as unknown as { _writeStream?: { _writeQueue?: unknown; dispose?: unknown } })._writeStream;
  const n = ptyInputBacklog(pty);
  if (ws === undefined || n === null) return 0;
  if (typeof ws.dispose === 'function') (ws.dispose as () => void).call(ws);
  (ws._writeQueue as unknown[]).length = 0;
  return n;
}

/** node-pty 1.1's private write stream (see ptyInputBacklog), as guardPtyWrites uses it. */
interface PtyWriteStream {
  _fd: number;
  _writeQueue: { buffer: Buffer; offset: number }[];
  _writeImmediate: NodeJS.Immediate | undefined;
  _processWriteQueue: () => void;
  dispose: () => void;
}

/** The longest wait between two writes to a pty whose input stays full (guardPtyWrites). */
export const PTY_WRITE_RETRY_MAX_MS = 50;

/**
 * Close the window in which node-pty writes queued input to a master fd it has closed. node-pty
 * closes that fd when its read side ends (EIO once the command — and whatever else had the
 * terminal — let go of it; or its own timeout after the exit), through `destroy()` of its read
 * stream, which closes the fd at once; its 'exit' event, where attachPty drops the queue too,
 * comes a turn or more later, and only once the process was reaped — much later when the command
 * closed its terminal but lives on. Meanwhile node-pty went on writing its queue: retries every
 * turn, each an fs.write() on libuv's thread pool, so even a write issued before the close could
 * run after it. Each went to whatever the fd number named by then (another pty, a socket, a file
 * opened meanwhile) or failed with EBADF and a stack on stderr ("Unhandled pty write error").
 *
 * Two changes to node-pty 1.1's private objects: its write stream writes synchronously
 * (writeSync on the non-blocking master fd: the kernel takes what fits, EAGAIN retries on the next
 * turn at first), so no write is ever in flight on another thread; and its read stream's
 * `destroy` (Node calls it as a method on a read error, node-pty on its timeout) first marks the
 * fd closed and drops the queue. After that nothing is written: later writes are dropped. A write
 * error other than EAGAIN (EIO: the terminal hung up) drops the queue quietly — the command is
 * gone. Returns false, changing nothing, where node-pty's objects do not have this shape (then
 * the drop at 'exit' is all there is, and the window stays).
 *
 * EAGAIN backs off: the first retry comes on the next turn (a command that reads as it runs has
 * made room by then), the ones after it on a timer of 1 ms, doubling up to PTY_WRITE_RETRY_MAX_MS,
 * and any write the kernel takes starts over. node-pty retried on every turn, so a command that
 * never read its terminal kept the front-end at 100 % CPU; now that is at most one write every
 * 50 ms, and a command that starts reading waits at most that long for its input. The queue is
 * only ever written from its head, one retry pending at a time, so nothing is lost or reordered;
 * the stream's `dispose` (node-pty's destroy(), dropPtyInput) clears the timer too. `write` is
 * the write call (tests count attempts through it).
 */
export function guardPtyWrites(pty: IPty, write: (fd: number, buffer: Buffer, offset: number) => number = writeSync): boolean {
  const p = pty as unknown as { _socket?: { destroy?: unknown }; _writeStream?: Partial<PtyWriteStream> };
  const sock = p._socket;
  const ws = p._writeStream;
  if (typeof sock !== 'object' || sock === null || typeof sock.destroy !== 'function') return false;
  if (typeof ws !== 'object' || ws === null || typeof ws._fd !== 'number' || !Array.isArray(ws._writeQueue) || typeof ws._processWriteQueue !== 'function') return false;
  const stream = ws as PtyWriteStream;
  let closed = false;
  /** EAGAINs since the kernel last took a byte. */
  let fullTries = 0;
  /** The pending timed retry (node-pty's `_writeImmediate` holds only an Immediate: its dispose() clears it as one). */
  let retryTimer: NodeJS.Timeout | undefined;
  const retry = (): void => {
    if (fullTries === 0) stream._writeImmediate = setImmediate(() => stream._processWriteQueue());
    else {
      retryTimer = setTimeout(() => {
        retryTimer = undefined;
        stream._processWriteQueue();
      }, Math.min(2 ** (fullTries - 1), PTY_WRITE_RETRY_MAX_MS));
    }
    fullTries++;
  };
  stream._processWriteQueue = (): void => {
    stream._writeImmediate = undefined;
    const queue = stream._writeQueue;
    while (queue.length > 0) {
      if (closed) {
        queue.length = 0;
        return;
      }
      const task = queue[0];
      let written: number;
      try {
        written = write(stream._fd, task.buffer, task.offset);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') retry();
        else queue.length = 0; // EIO and the like: the terminal is gone, and so is the command
        return;
      }
      if (written > 0) fullTries = 0;
      task.offset += written;
      if (task.offset >= task.buffer.length) queue.shift();
    }
  };
  const dispose = typeof stream.dispose === 'function' ? stream.dispose : (): void => {};
  stream.dispose = function (this: unknown): void {
    if (retryTimer !== undefined) clearTimeout(retryTimer);
    retryTimer = undefined;
    dispose.call(this);
  };
  const destroy = sock.destroy as (...args: unknown[]) => unknown;
  sock.destroy = function (this: unknown, ...args: unknown[]): unknown {
    closed = true;
    dropPtyInput(pty);
    return destroy.apply(this, args);
  };
  return true;
}

/**
 * Whether ptyInputBacklog can see `pty`'s input queue; if not, says so once through `onWarning`
 * (the input to the command then has no back-pressure). Returns whether it can.
 */
export function probeInputBacklog(pty: IPty, command: string, onWarning: (message: string) => void): boolean {
  if (ptyInputBacklog(pty) !== null) return true;
  onWarning(
    `node-pty does not expose its input queue: input to '${command}' is not flow-controlled ` +
      `(while the command does not read, what the device sends is held in memory without bound)`,
  );
  return false;
}

function usable(size: ConsoleSize | null): size is ConsoleSize {
  return size !== null && size.cols > 0 && size.rows > 0;
}

/**
 * Run `command args` on a pty bridged to `port`. Like a getty waiting for its line, the command
 * starts once a device serves the port, so that it starts at the device's size (config SIZE is
 * read before the port attaches, §7.3; a MULTIPORT RESIZE may follow and is applied then).
 * `onWarning` gets at most one line: node-pty hides its input queue (see probeInputBacklog); by
 * default a process warning.
 */
export function attachPty(
  port: ConsolePort,
  command: string,
  args: readonly string[],
  onSpawnError: (err: Error) => void,
  onWarning: (message: string) => void = (m) => process.emitWarning(m),
): Attachment {
  let pty: IPty | null = null;
  let exited = false;
  let closed = false;
  let onExited: () => void = () => {};
  const exitedPromise = new Promise<void>((resolve) => (onExited = resolve));
  /** The port is paused by us for the pty's input backlog; the poll that resumes it. */
  let inputPoll: NodeJS.Timeout | null = null;
  /** Cleared (after the one warning) once node-pty's queue turns out not to be readable. */
  let backlogVisible = true;
  const inputBacklog = (p: IPty): number => {
    const n = backlogVisible ? ptyInputBacklog(p) : null;
    if (n !== null) return n;
    if (backlogVisible) backlogVisible = probeInputBacklog(p, command, onWarning);
    return 0;
  };
  const pollInput = (): void => {
    inputPoll = null;
    if (pty === null || exited || closed) return;
    if (inputBacklog(pty) > PTY_INPUT_BACKLOG_LIMIT / 2) inputPoll = setTimeout(pollInput, PTY_INPUT_POLL_MS);
    else port.resume();
  };
  const onInput = (chunk: Buffer): void => {
    if (pty === null) return;
    pty.write(chunk);
    if (inputPoll === null && inputBacklog(pty) > PTY_INPUT_BACKLOG_LIMIT) {
      port.pause();
      inputPoll = setTimeout(pollInput, PTY_INPUT_POLL_MS);
    }
  };
  const onResize = (size: ConsoleSize): void => {
    if (usable(size) && pty !== null && !exited) pty.resize(size.cols, size.rows);
  };
  const hangup = (): void => {
    if (pty !== null && !exited) pty.kill('SIGHUP');
  };
  const unhook = (): void => {
    if (inputPoll !== null) clearTimeout(inputPoll);
    inputPoll = null;
    port.off('attach', start);
    port.off('data', onInput);
    port.off('resize', onResize);
    port.off('host-close', hangup);
    port.off('removed', hangup);
  };
  const { attachment, finish } = createAttachment(async () => {
    closed = true;
    unhook();
    if (pty !== null && !exited) {
      // SIGHUP, not SIGTERM: an interactive shell ignores SIGTERM but leaves on a hangup.
      pty.kill('SIGHUP');
      const force = setTimeout(() => pty?.kill('SIGKILL'), 3000);
      await exitedPromise;
      clearTimeout(force);
    }
  });
  const cannotRun = (err: Error): void => {
    queueMicrotask(() => {
      onSpawnError(err);
      finish(EXIT_CANNOT_RUN);
    });
  };

  function start(): void {
    if (closed || pty !== null) return;
    const size = usable(port.size) ? port.size : DEFAULT_PTY_SIZE;
    let p: IPty;
    try {
      p = spawnPty(command, [...args], {
        name: process.env.TERM ?? 'xterm',
        cols: size.cols,
        rows: size.rows,
        cwd: process.cwd(),
        env: process.env as Record<string, string>,
        encoding: null, // Buffers both ways: no decoding of what the command writes
      });
    } catch (err) {
      cannotRun(err as Error);
      return;
    }
    pty = p;
    // At once, not at the first backlog: a node-pty without the queue is known before any input.
    inputBacklog(p);
    guardPtyWrites(p);
    p.onData((data: string | Buffer) => {
      if (!port.write(typeof data === 'string' ? Buffer.from(data) : data)) {
        p.pause();
        port.once('drain', () => {
          if (!exited) p.resume();
        });
      }
    });
    port.on('data', onInput);
    port.on('resize', onResize);
    port.on('host-close', hangup);
    port.on('removed', hangup);
    // node-pty fires onExit after the last output was delivered through onData.
    p.onExit(({ exitCode, signal }) => {
      // Input the command never read goes nowhere now: not into a later fd. Normally dropped
      // already, before node-pty closed the fd (guardPtyWrites); this covers a node-pty
      // where that guard could not be put in place.
      dropPtyInput(p);
      exited = true;
      onExited();
      unhook();
      const status = signal !== undefined && signal !== 0 ? 128 + signal : exitCode;
      port.end(() => finish(status));
    });
  }

  const missing = findExecutable(command);
  if (missing !== null) cannotRun(Object.assign(new Error(`${command}: ${missing}`), { code: missing }));
  else if (port.attached) start();
  else port.once('attach', start);
  return attachment;
}
