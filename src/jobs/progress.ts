import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';

/**
 * Edits one chat message as work moves on, at most once per interval (Telegram and Slack both
 * punish faster edits with long 429s). Updates in between are coalesced: the latest text wins,
 * nothing queues behind a sleep. A failed edit is logged, never fatal: the work matters more.
 */
export interface Progress {
  update(text: string): void;
  /** The last word: sent after the interval, and awaited. */
  finish(text: string): Promise<void>;
}

/** A shared allowance of edits (Slack's chat.update is limited per workspace, not per message). */
export interface Budget {
  /** Takes one edit if the allowance has one left now. */
  tryTake(): Promise<boolean>;
  /** Waits for one edit; only final messages wait. */
  take(): Promise<void>;
}

export function createProgress(
  edit: (text: string) => Promise<void>,
  options: { minIntervalMs: number; log: Logger; now?: () => number; budget?: Budget },
): Progress {
  const now = options.now ?? Date.now;
  let lastEditAt = Number.NEGATIVE_INFINITY;
  // A progress starts right after its message was posted or edited (a pressed button clears itself).
  let lastAnsweredAt = now();
  let latest: string | undefined;
  let shown: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();

  const flush = (final = false) => {
    timer = undefined;
    const text = latest;
    latest = undefined;
    if (text === undefined || text === shown) return;
    lastEditAt = now();
    inFlight = inFlight
      .then(async () => {
        // The interval counts from when the previous edit was answered, so a slow answer cannot
        // make two edits arrive closer together than the platform allows.
        await sleep(Math.max(0, lastAnsweredAt + options.minIntervalMs - now()));
        if (options.budget) {
          if (final) await options.budget.take();
          // An intermediate state the budget cannot afford is dropped; a later one will show.
          else if (!(await options.budget.tryTake())) return;
        }
        shown = text;
        try {
          await edit(text);
        } finally {
          lastAnsweredAt = now();
        }
      })
      .catch((err: unknown) => options.log.warn({ err: String(err) }, 'progress edit failed'));
  };
  const wait = () => Math.max(0, Math.max(lastEditAt, lastAnsweredAt) + options.minIntervalMs - now());

  return {
    update(text) {
      latest = text;
      if (!timer) timer = setTimeout(flush, wait());
    },
    async finish(text) {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await inFlight;
      await sleep(wait());
      latest = text;
      flush(true);
      await inFlight;
    },
  };
}
