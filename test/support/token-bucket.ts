/**
 * Replays call arrival times through a token bucket, the way AWS meters its APIs. Client-side
 * pacing guarantees when calls leave; arrival adds scheduling jitter, which a bucket of one
 * second's worth of tokens absorbs while any sustained excess over the rate still runs it dry.
 */
function replay(times: readonly number[], perSecond: number, capacity: number): number[] {
  const throttled: number[] = [];
  let tokens = capacity;
  const sorted = [...times].sort((a, b) => a - b);
  let last = sorted[0] ?? 0;
  for (const [i, at] of sorted.entries()) {
    tokens = Math.min(capacity, tokens + ((at - last) * perSecond) / 1000);
    last = at;
    if (tokens < 1) throttled.push(i);
    else tokens -= 1;
  }
  return throttled;
}

/** The index (in time order) of the first call the bucket could not pay for, or -1. */
export function firstThrottled(times: readonly number[], perSecond: number, capacity = perSecond): number {
  return replay(times, perSecond, capacity)[0] ?? -1;
}

/** How many calls the bucket could not pay for (a throttled call costs no token). */
export function countThrottled(times: readonly number[], perSecond: number, capacity = perSecond): number {
  return replay(times, perSecond, capacity).length;
}
