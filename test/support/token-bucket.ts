/**
 * Replays call arrival times through a token bucket, the way AWS meters its APIs, and returns the
 * index of the first call the bucket could not pay for (-1 when all were paid). Client-side pacing
 * guarantees when calls leave; arrival adds scheduling jitter, which a bucket of one second's
 * worth of tokens absorbs while any sustained excess over the rate still runs it dry.
 */
export function firstThrottled(times: readonly number[], perSecond: number, capacity = perSecond): number {
  let tokens = capacity;
  let last = times[0] ?? 0;
  for (const [i, at] of [...times].sort((a, b) => a - b).entries()) {
    tokens = Math.min(capacity, tokens + ((at - last) * perSecond) / 1000);
    last = at;
    if (tokens < 1) return i;
    tokens -= 1;
  }
  return -1;
}
