import { setTimeout as sleep } from 'node:timers/promises';
import { formatElapsed } from './durations.js';

/**
 * Waiting out AWS when it cannot answer right now (throttling, 5xx, the network), as opposed to an
 * answer the job must act on. Which errors are transient is decided by the AWS adapter; this file
 * only knows how long to wait and when to stop.
 */

export type TransientKind = 'throttled' | 'server error' | 'network error';

/** A transient failure: its kind, and the AWS error code (or network error code) to name to people. */
export interface AwsTrouble {
  kind: TransientKind;
  code: string;
}

export interface Backoff {
  baseMs: number;
  capMs: number;
}

/** How long a rollout waits out one stretch of trouble unless configured (ROLLOUT_AWS_WAIT_SECONDS). */
export const defaultRolloutAwsWaitSeconds = 1800;

/** The SDK's own retries back off up to 20 s; jobs wait in the same steps, but for minutes. */
export const awsBackoff: Backoff = { baseMs: 1000, capMs: 20_000 };

/**
 * The wait before retry number `attempt` (0 for the first retry): exponential, capped, with its
 * upper half jittered, so workers throttled together do not come back together, and at least half
 * the step is always waited (full jitter can retry at once, which a throttled API punishes).
 */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number): number {
  const step = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + (random() * step) / 2);
}

/** The line a progress message shows while a job waits on AWS; it goes once a call gets through. */
export function waitingLine(trouble: AwsTrouble): string {
  return `waiting on AWS (${trouble.kind}), retrying…`;
}

/** What a give-up message names: the AWS error and how long it lasted. */
export function describeTrouble(trouble: AwsTrouble, waitedMs: number): string {
  return `AWS kept failing with ${trouble.code} (${trouble.kind}) for ${formatElapsed(waitedMs)}`;
}

/** A job waited on AWS for as long as its deadline allowed; the caller says so in its chat message. */
export class AwsWaitExpired extends Error {
  constructor(
    readonly trouble: AwsTrouble,
    readonly waitedMs: number,
  ) {
    super(describeTrouble(trouble, waitedMs));
    this.name = 'AwsWaitExpired';
  }
}

export interface AwsWaitOptions {
  /** The trouble a failure is, or undefined for an answer (an error the caller handles itself). */
  classify(error: unknown): AwsTrouble | undefined;
  /**
   * The longest one stretch of trouble may last, counted from its first failure until any call of
   * this job gets through again. Unlimited when omitted; `run`'s own deadline still applies.
   */
  maxWaitMs?: number;
  /** Told when trouble starts or changes (with it) and when a call gets through again (undefined). */
  onChange?(trouble: AwsTrouble | undefined, waitedMs: number): void;
  backoff?: Backoff;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export interface AwsWait {
  /**
   * Runs `call` until it is answered. A transient failure is retried after a backoff until the job's
   * limit or `giveUpAt` (epoch ms), whichever comes first, then AwsWaitExpired; any other error is
   * thrown at once. Each retry runs `call` again from the start, so it must be safe to repeat.
   */
  run<T>(call: () => Promise<T>, giveUpAt?: number): Promise<T>;
  /** The trouble being waited out right now, if any. */
  trouble(): AwsTrouble | undefined;
}

/** One per job: the stretch of trouble is the job's, so calls made one after another share it. */
export function createAwsWait(options: AwsWaitOptions): AwsWait {
  const now = options.now ?? Date.now;
  const wait = options.sleep ?? ((ms: number) => sleep(ms));
  const random = options.random ?? Math.random;
  const backoff = options.backoff ?? awsBackoff;
  const maxWaitMs = options.maxWaitMs ?? Number.POSITIVE_INFINITY;
  let current: AwsTrouble | undefined;
  let since = 0;

  return {
    async run(call, giveUpAt = Number.POSITIVE_INFINITY) {
      for (let attempt = 0; ; attempt++) {
        try {
          const result = await call();
          if (current) {
            const waitedMs = now() - since;
            current = undefined;
            options.onChange?.(undefined, waitedMs);
          }
          return result;
        } catch (error) {
          const trouble = options.classify(error);
          if (!trouble) throw error;
          const at = now();
          if (!current) since = at;
          const changed = current?.kind !== trouble.kind || current.code !== trouble.code;
          current = trouble;
          if (changed) options.onChange?.(trouble, at - since);
          const deadline = Math.min(giveUpAt, since + maxWaitMs);
          if (at >= deadline) throw new AwsWaitExpired(trouble, at - since);
          // The last wait ends at the deadline, so the final attempt happens right on it.
          await wait(Math.min(backoffDelay(attempt, backoff, random), deadline - at));
        }
      }
    },
    trouble: () => current,
  };
}
