/**
 * What every way of attaching a console port (terminal, command, socket) hands the CLI, and the
 * bookkeeping they share: a `done` settled from inside the attachment, and a `close()` that
 * releases once however often it is called (the CLI closes on signals and on `done` alike).
 */

export interface Attachment {
  /** Resolves with the exit status the CLI should use once the attachment ends by itself. */
  readonly done: Promise<number>;
  /** Detach and release everything (idempotent). Resolves when released. */
  close(): Promise<void>;
}

/** An Attachment whose `close()` runs `release` the first time only; `finish` settles `done`. */
export function createAttachment(release: () => void | Promise<void>): { attachment: Attachment; finish: (status: number) => void } {
  let finish: (status: number) => void = () => {};
  const done = new Promise<number>((resolve) => {
    finish = resolve;
  });
  let closed = false;
  const attachment: Attachment = {
    done,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await release();
    },
  };
  return { attachment, finish };
}
