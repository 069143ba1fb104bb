/**
 * Rollout arithmetic. SSM caps one SendCommand at 50 instance ids and applies MaxConcurrency and
 * MaxErrors per command, so the fleet-wide limits are ours: batches of at most 50, run in waves
 * so that no more than `concurrency` instances are in flight across all batches.
 */
export const maxIdsPerCommand = 50;

export type Amount = { kind: 'count'; value: number } | { kind: 'percent'; value: number };

export function parseAmount(text: string): Amount | undefined {
  const m = /^(\d{1,5})(%?)$/.exec(text);
  if (!m?.[1]) return undefined;
  const value = Number(m[1]);
  if (m[2] === '%') return value >= 1 && value <= 100 ? { kind: 'percent', value } : undefined;
  return { kind: 'count', value };
}

/** An amount against a total; percentages round up so 10% of 5 is 1, never 0. */
export function resolveAmount(amount: Amount, total: number): number {
  return amount.kind === 'count' ? amount.value : Math.ceil((amount.value / 100) * total);
}

export function formatAmount(amount: Amount): string {
  return amount.kind === 'count' ? String(amount.value) : `${amount.value}%`;
}

/** Batches of at most 50 (and at most `concurrency`), canary instances first in their own batches. */
export function planBatches(instanceIds: readonly string[], concurrency: number, canary = 0): string[][] {
  const size = Math.max(1, Math.min(maxIdsPerCommand, concurrency));
  const batches: string[][] = [];
  const canaryIds = instanceIds.slice(0, canary);
  const rest = instanceIds.slice(canary);
  for (let i = 0; i < canaryIds.length; i += size) batches.push(canaryIds.slice(i, i + size));
  for (let i = 0; i < rest.length; i += size) batches.push(rest.slice(i, i + size));
  return batches;
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
