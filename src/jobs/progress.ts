import { ChatUnavailable } from '../core/chat.js';
import type { Logger } from '../log.js';
import { type DeliveryPolicy, defaultDelivery, pause, retryDelayMs } from './delivery.js';

/**
 * Edits one chat message as work moves on, at most once per interval (Telegram and Slack both
 * punish faster edits with long 429s). Updates in between are coalesced: each edit carries the latest
 * text at the moment it is sent, so after an outage or a 429 the message jumps to the current state
 * instead of replaying stale ones. While the platform is unavailable the edit is tried again (after
 * its Retry-After, or with backoff); a failed edit is never fatal: the work matters more.
 */
export interface Progress {
  update(text: string): void;
  /** The last word: sent after the interval, retried until delivered (or given up), and awaited. */
  finish(text: string): Promise<void>;
}

/**
 * A shared allowance of edits (Slack's chat.update is limited per workspace, not per message).
 * Unlike a Pacer, which only spaces calls out, a budget counts them per window and can run out.
 */
export interface Budget {
  /** Takes one edit if the allowance has one left now. */
  tryTake(): Promise<boolean>;
  /** Waits for one edit; only final messages wait. */
  take(): Promise<void>;
}

export function createProgress(
  edit: (text: string) => Promise<void>,
  options: {
    minIntervalMs: number;
    /**
     * How long a state waits for a successor before it is shown: a step over within this is not
     * worth an edit of its own, which would hold the next one (often the last word) an interval back.
     * The last word never waits for it.
     */
    settleMs?: number;
    log: Logger;
    now?: () => number;
    budget?: Budget;
    delivery?: DeliveryPolicy;
  },
): Progress {
  const { log, budget } = options;
  const now = options.now ?? Date.now;
  const policy = options.delivery ?? defaultDelivery;
  // A progress starts right after its message was posted or edited (a pressed button clears itself).
  let lastAnsweredAt = now();
  // Earliest next attempt after a failure: the platform's Retry-After or our backoff.
  let notBefore = Number.NEGATIVE_INFINITY;
  let wanted: string | undefined;
  let shown: string | undefined;
  // A text the platform refused for good (the message was deleted, say); a newer text tries again.
  let abandoned: string | undefined;
  let finalText: string | undefined;
  let failures = 0;
  let firstFailureAt: number | undefined;
  let sending: Promise<void> | undefined;
  // When the state now waiting first differed from the one shown (the settle counts from there).
  let pendingSince = Number.NEGATIVE_INFINITY;
  // Cuts a settle short: the last word arrived.
  let wake: (() => void) | undefined;

  const pending = () => wanted !== undefined && wanted !== shown && wanted !== abandoned;

  const attempt = async (text: string): Promise<void> => {
    try {
      await edit(text);
      shown = text;
      failures = 0;
      firstFailureAt = undefined;
    } catch (error) {
      if (!(error instanceof ChatUnavailable)) {
        abandoned = text;
        log.warn({ err: String(error) }, 'progress edit failed');
        return;
      }
      failures++;
      firstFailureAt ??= now();
      if (now() - firstFailureAt >= policy.giveUpAfterMs) {
        abandoned = text;
        log.error({ err: error.message, failures }, 'progress edit given up: the chat stayed unavailable');
        return;
      }
      const delayMs = retryDelayMs(error, failures, policy);
      notBefore = now() + delayMs;
      log.warn({ err: error.message, delayMs, failures }, 'progress edit failed; trying again');
    } finally {
      // The interval counts from the answer, so a slow answer cannot bring two edits closer together.
      lastAnsweredAt = now();
    }
  };

  const deliverLatest = async () => {
    while (pending()) {
      await pause(Math.max(0, Math.max(lastAnsweredAt + options.minIntervalMs, notBefore) - now()));
      const settledAt = pendingSince + (options.settleMs ?? 0);
      if (wanted !== finalText && settledAt > now()) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, settledAt - now());
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
      const text = wanted;
      if (text === undefined || !pending()) break;
      if (budget) {
        if (text === finalText) await budget.take();
        else if (!(await budget.tryTake())) {
          // The workspace's allowance is spent: the latest state gets another try an interval later.
          lastAnsweredAt = now();
          continue;
        }
      }
      await attempt(text);
    }
  };

  const kick = (): Promise<void> => {
    sending ??= deliverLatest().finally(() => {
      sending = undefined;
      // An update that arrived as the loop ended still needs its edit.
      if (pending()) void kick();
    });
    return sending;
  };

  return {
    update(text) {
      if (finalText !== undefined) return;
      if (!pending()) pendingSince = now();
      wanted = text;
      void kick();
    },
    async finish(text) {
      finalText = text;
      wanted = text;
      wake?.();
      while (pending()) await kick();
    },
  };
}

/**
 * Wraps the edit behind an attempt's progress message so a failing attempt can stop it: once
 * `stop()` resolves, no edit of that attempt is in flight or still to come, so the failure text
 * edited after it is the message's last word (a throttled progress edit would otherwise land later).
 */
export function stoppableEdit(edit: (text: string) => Promise<void>): {
  edit(text: string): Promise<void>;
  stop(): Promise<void>;
} {
  let stopped = false;
  let inFlight: Promise<unknown> = Promise.resolve();
  return {
    edit(text) {
      if (stopped) return Promise.resolve();
      const sent = edit(text);
      inFlight = sent.catch(() => undefined);
      return sent;
    },
    async stop() {
      stopped = true;
      await inFlight;
    },
  };
}
