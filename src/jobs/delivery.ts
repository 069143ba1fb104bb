import { ChatUnavailable } from '../core/chat.js';
import type { Logger } from '../log.js';

/**
 * How jobs outlast a chat platform that is down or rate limiting: the same call again after the
 * platform's Retry-After, or after a backoff that grows to `maxMs`, until `giveUpAfterMs` has passed
 * since the first failure. Any other error is final at once: retrying a deleted message helps nobody.
 */
export interface DeliveryPolicy {
  firstMs: number;
  maxMs: number;
  giveUpAfterMs: number;
}

export const defaultDelivery: DeliveryPolicy = { firstMs: 1000, maxMs: 30_000, giveUpAfterMs: 60 * 60_000 };

/** The wait before attempt `failures + 1`; a Retry-After is a floor no request may come before. */
export function retryDelayMs(error: ChatUnavailable, failures: number, policy: DeliveryPolicy): number {
  const backoff = Math.min(policy.maxMs, policy.firstMs * 2 ** Math.max(0, failures - 1));
  return error.retryAfterMs === undefined ? backoff : Math.max(error.retryAfterMs, policy.firstMs);
}

/** Plain timers (not node:timers/promises), so tests of pacing can drive them with fake timers. */
export const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Sends one message (a post, a thread reply), trying again while the platform is unavailable. */
export async function deliver<T>(
  call: () => Promise<T>,
  options: { log: Logger; what: string; policy?: DeliveryPolicy; now?: () => number },
): Promise<T> {
  const policy = options.policy ?? defaultDelivery;
  const now = options.now ?? Date.now;
  let firstFailureAt: number | undefined;
  for (let failures = 1; ; failures++) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof ChatUnavailable)) throw error;
      firstFailureAt ??= now();
      if (now() - firstFailureAt >= policy.giveUpAfterMs) throw error;
      const delayMs = retryDelayMs(error, failures, policy);
      options.log.warn(
        { err: error.message, delayMs, failures },
        `${options.what}: chat unavailable, retrying`,
      );
      await pause(delayMs);
    }
  }
}
