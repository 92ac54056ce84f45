/**
 * Run a command with a console port as its stdin, stdout and stderr, over pipes — the way a
 * getty runs a login shell on hvc0 (no pty: the back-end's terminal does the line discipline).
 *
 * - port → command stdin; the command gets EOF when the device closes the port (PORT_OPEN 0 or
 *   DEVICE_REMOVE, MULTIPORT) — the back-end going away is not a close: the front-end waits for
 *   it to return (§4.10) and the command keeps running.
 * - command stdout and stderr → port, with backpressure.
 * - When the command exits (all its pipes closed), everything it wrote is flushed to the device
 *   (the port's writable side finishes once the device has used every transmit buffer), then
 *   `done` resolves with its status: the exit code, or 128 + signal number.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { ConsolePort } from './port.js';
import { createAttachment, type Attachment } from './attachment.js';

/** Why a command could not be started (spawn error, e.g. ENOENT): exit 127 like a shell. */
export const EXIT_CANNOT_RUN = 127;

export function attachCommand(port: ConsolePort, command: string, args: readonly string[], onSpawnError: (err: Error) => void): Attachment {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const { attachment, finish } = createAttachment(async () => {
    port.unpipe(child.stdin);
    port.off('host-close', eof);
    port.off('removed', eof);
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      // A command that ignores SIGTERM must not keep the front-end from leaving.
      const force = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(force);
    }
  });
  let spawnFailed = false;
  child.on('error', (err) => {
    // 'error' without 'spawn' means it never ran; later errors (kill failures) are ignored.
    if (child.pid === undefined && !spawnFailed) {
      spawnFailed = true;
      onSpawnError(err);
      finish(EXIT_CANNOT_RUN);
    }
  });
  // EPIPE when the command exits without reading everything: not our failure.
  child.stdin.on('error', () => {});
  port.pipe(child.stdin);
  const eof = (): void => {
    port.unpipe(child.stdin);
    child.stdin.end();
  };
  port.on('host-close', eof);
  port.on('removed', eof);
  child.stdout.pipe(port, { end: false });
  child.stderr.pipe(port, { end: false });
  child.on('close', (code, signal) => {
    if (spawnFailed) return;
    const status = code ?? 128 + (signal !== null ? (constants.signals[signal] ?? 0) : 0);
    port.unpipe(child.stdin);
    port.off('host-close', eof);
    port.off('removed', eof);
    // Flush what the command wrote: 'finish' fires once the device used every buffer.
    port.end(() => finish(status));
  });
  return attachment;
}
