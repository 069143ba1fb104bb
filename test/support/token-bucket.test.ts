import { describe, expect, it } from 'vitest';
import { countThrottled, firstThrottled } from './token-bucket.js';

const evenly = (count: number, spacingMs: number) => Array.from({ length: count }, (_, i) => i * spacingMs);

describe('firstThrottled', () => {
  it('when calls arrive exactly at the rate, then none is throttled', () => {
    expect(firstThrottled(evenly(50, 500), 2)).toBe(-1);
  });

  it('when arrival jitters by tens of milliseconds around the rate, then none is throttled', () => {
    const jittered = evenly(50, 500).map((t, i) => t + (i % 2 === 0 ? 60 : -60));
    expect(firstThrottled(jittered, 2)).toBe(-1);
  });

  it('when calls come 10% faster than the rate, then the bucket runs dry', () => {
    expect(firstThrottled(evenly(50, 450), 2)).toBeGreaterThan(0);
  });

  it('when a burst arrives at once, then the call after the capacity is throttled', () => {
    expect(firstThrottled(evenly(10, 0), 2)).toBe(2);
  });
});

describe('countThrottled', () => {
  it('when a burst of ten meets a bucket of two, then eight are throttled', () => {
    expect(countThrottled(evenly(10, 0), 2)).toBe(8);
  });
});
