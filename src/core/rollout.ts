import type { RolloutRequest } from './rollout-request.js';

/**
 * Rollout arithmetic. SSM caps one SendCommand at 50 instance ids and applies MaxConcurrency and
 * MaxErrors per command, so the fleet-wide limits are ours: batches of at most 50, sent as slots
 * free up so that no more than `concurrency` instances are in flight across all batches.
 */
const maxIdsPerCommand = 50;

export type Amount = { kind: 'count'; value: number } | { kind: 'percent'; value: number };

export function parseAmount(text: string): Amount | undefined {
  const m = /^(\d{1,5})(%?)$/.exec(text);
  if (!m?.[1]) return undefined;
  const value = Number(m[1]);
  if (m[2] === '%') return value >= 1 && value <= 100 ? { kind: 'percent', value } : undefined;
  return { kind: 'count', value };
}

/** An amount against a total; percentages round up so 10% of 5 is 1, never 0. */
function resolveAmount(amount: Amount, total: number): number {
  return amount.kind === 'count' ? amount.value : Math.ceil((amount.value / 100) * total);
}

export function formatAmount(amount: Amount): string {
  return amount.kind === 'count' ? String(amount.value) : `${amount.value}%`;
}

/**
 * How a rollout runs over the instances it matched. The plan message and the job both read this one
 * object, so what an admin approves is what runs.
 */
export interface RolloutPlan {
  /** How many instances matched. */
  matched: number;
  /** `--concurrency` as asked; one instance when it is absent or unreadable. */
  concurrencyAmount: Amount;
  /** The most instances in flight at once, fleet-wide: at least 1, even for a percentage of nothing. */
  concurrency: number;
  /** Failures tolerated before the rollout stops (none unless asked; see describeErrorLimit). */
  maxErrors: number;
  /** Instance ids per SendCommand: at most 50, and at most `concurrency`. */
  batchSize: number;
  /** The matched ids in send order, `batchSize` at most each, canary instances first in their own batches. */
  batches: string[][];
  /** How many of the first batches hold the canary instances; the rest waits until they are done. */
  canaryBatches: number;
  /** How many of the first ids are canary instances. */
  canary: number;
  /**
   * The fewest freed slots worth a SendCommand of part of a batch (a whole batch that fits always
   * goes). Refilling each freed slot alone would cost a send per instance; a sixteenth of the
   * concurrency keeps sends to about sixteen per concurrency's worth of instances (measured in
   * bench/rollout.ts: well inside the SSM budget) while slots sit free only briefly. It also bounds
   * how many batch records a rollout writes: at most one per `minRefill` instances beyond the plan's.
   * A polled rollout refills twice as much at a time (src/jobs/rollout-tick.ts).
   */
  minRefill: number;
}

/**
 * The plan for `matchedIds` (in the order given). Percentages are of the matched instances and
 * round up; a canary larger than the match is the whole match.
 */
export function planRollout(
  request: Pick<RolloutRequest, 'concurrency' | 'maxErrors' | 'canary'>,
  matchedIds: readonly string[],
): RolloutPlan {
  const matched = matchedIds.length;
  const concurrencyAmount = parseAmount(request.concurrency) ?? { kind: 'count', value: 1 };
  const concurrency = Math.max(1, resolveAmount(concurrencyAmount, matched));
  const maxErrors = resolveAmount(parseAmount(request.maxErrors) ?? { kind: 'count', value: 0 }, matched);
  const batchSize = Math.min(maxIdsPerCommand, concurrency);
  const canary = Math.min(Math.max(0, request.canary), matched);
  const batches = [
    ...chunks(matchedIds.slice(0, canary), batchSize),
    ...chunks(matchedIds.slice(canary), batchSize),
  ];
  return {
    matched,
    concurrencyAmount,
    concurrency,
    maxErrors,
    batchSize,
    batches,
    canaryBatches: Math.ceil(canary / batchSize),
    canary,
    minRefill: Math.min(batchSize, Math.ceil(concurrency / 16)),
  };
}

function chunks(ids: readonly string[], size: number): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < ids.length; i += size) out.push(ids.slice(i, i + size));
  return out;
}

/** SSM's MaxErrors N stops after the (N+1)th error; ours follows the same rule, said plainly. */
export function describeErrorLimit(maxErrors: number): string {
  return maxErrors === 0
    ? 'stops at the first failure'
    : `stops after the ${ordinal(maxErrors + 1)} failure (up to ${maxErrors} failure${maxErrors > 1 ? 's' : ''} are tolerated)`;
}

function ordinal(n: number): string {
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${n % 10 > 3 ? 'th' : suffix}`;
}
