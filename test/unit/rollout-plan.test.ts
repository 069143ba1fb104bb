import { describe, expect, it } from 'vitest';
import { planRollout } from '../../src/core/rollout.js';

const ids = (count: number) =>
  Array.from({ length: count }, (_, i) => `i-${i.toString(16).padStart(17, '0')}`);
const request = (over: Partial<{ concurrency: string; maxErrors: string; canary: number }> = {}) => ({
  concurrency: '1',
  maxErrors: '0',
  canary: 0,
  ...over,
});

describe('planRollout', () => {
  it('when slots free up, then a partial refill is worth a sixteenth of the concurrency, never more than a batch', () => {
    expect(planRollout(request({ concurrency: '200' }), ids(1000)).minRefill).toBe(13);
    expect(planRollout(request({ concurrency: '20%' }), ids(1000)).minRefill).toBe(13);
    expect(planRollout(request({ concurrency: '1000' }), ids(1000)).minRefill).toBe(50);
    expect(planRollout(request({ concurrency: '40' }), ids(100)).minRefill).toBe(3);
    expect(planRollout(request({ concurrency: '5', canary: 3 }), ids(10))).toMatchObject({
      canary: 3,
      minRefill: 1,
    });
  });

  it('when concurrency is a count, then batches hold that many ids and keep the order they were given', () => {
    const matched = ids(7);
    const plan = planRollout(request({ concurrency: '3', maxErrors: '2' }), matched);
    expect(plan).toEqual({
      matched: 7,
      concurrencyAmount: { kind: 'count', value: 3 },
      concurrency: 3,
      maxErrors: 2,
      batchSize: 3,
      batches: [matched.slice(0, 3), matched.slice(3, 6), matched.slice(6)],
      canaryBatches: 0,
      canary: 0,
      minRefill: 1,
    });
  });

  it('when concurrency exceeds 50, then batches still hold at most 50 ids (one SendCommand each)', () => {
    const matched = ids(200);
    const plan = planRollout(request({ concurrency: '100' }), matched);
    expect(plan.concurrency).toBe(100);
    expect(plan.batchSize).toBe(50);
    expect(plan.batches.map((b) => b.length)).toEqual([50, 50, 50, 50]);
    expect(plan.batches.flat()).toEqual(matched);
  });

  it('when amounts are percentages, then they are of the matched instances and round up', () => {
    expect(planRollout(request({ concurrency: '10%' }), ids(5)).concurrency).toBe(1);
    expect(planRollout(request({ concurrency: '30%' }), ids(7)).concurrency).toBe(3);
    expect(planRollout(request({ concurrency: '100%' }), ids(3)).batches).toHaveLength(1);
    expect(planRollout(request({ maxErrors: '10%' }), ids(11)).maxErrors).toBe(2);
    expect(planRollout(request({ maxErrors: '1%' }), ids(1)).maxErrors).toBe(1);
    const plan = planRollout(request({ concurrency: '25%' }), ids(1000));
    expect(plan.concurrencyAmount).toEqual({ kind: 'percent', value: 25 });
    expect(plan.concurrency).toBe(250);
    expect(plan.batchSize).toBe(50);
    expect(plan.batches).toHaveLength(20);
  });

  it('when there is a canary, then its instances come first in batches of their own', () => {
    const matched = ids(7);
    const plan = planRollout(request({ concurrency: '2', canary: 3 }), matched);
    expect(plan.batches).toEqual([
      matched.slice(0, 2),
      matched.slice(2, 3),
      matched.slice(3, 5),
      matched.slice(5, 7),
    ]);
    expect(plan.canaryBatches).toBe(2);
  });

  it('when the canary is larger than the match, then every batch is a canary batch', () => {
    const matched = ids(4);
    const plan = planRollout(request({ concurrency: '2', canary: 10 }), matched);
    expect(plan.batches).toEqual([matched.slice(0, 2), matched.slice(2)]);
    expect(plan.canaryBatches).toBe(2);
  });

  it('when nothing matched, then there are no batches and the limits are the least they can be', () => {
    const plan = planRollout({ concurrency: '50%', maxErrors: '10%', canary: 5 }, []);
    expect(plan).toEqual({
      matched: 0,
      concurrencyAmount: { kind: 'percent', value: 50 },
      concurrency: 1,
      maxErrors: 0,
      batchSize: 1,
      batches: [],
      canaryBatches: 0,
      canary: 0,
      minRefill: 1,
    });
  });

  it('when an amount cannot be read, then concurrency falls back to one instance and the error limit to none', () => {
    for (const concurrency of ['', 'abc', '0%', '101%', '-5', '1.5', '123456']) {
      const plan = planRollout(request({ concurrency, maxErrors: 'x' }), ids(3));
      expect(plan.concurrencyAmount, concurrency).toEqual({ kind: 'count', value: 1 });
      expect(plan.concurrency, concurrency).toBe(1);
      expect(plan.batches, concurrency).toHaveLength(3);
      expect(plan.maxErrors, concurrency).toBe(0);
    }
    expect(planRollout(request({ maxErrors: '150%' }), ids(3)).maxErrors).toBe(0);
  });

  it('when concurrency is a count of 0, then one instance still runs at a time', () => {
    const plan = planRollout(request({ concurrency: '0' }), ids(2));
    expect(plan.concurrencyAmount).toEqual({ kind: 'count', value: 0 });
    expect(plan.concurrency).toBe(1);
    expect(plan.batches).toHaveLength(2);
  });

  it('when the canary is negative, then there is none', () => {
    const matched = ids(4);
    const plan = planRollout(request({ concurrency: '3', canary: -2 }), matched);
    expect(plan.batches).toEqual([matched.slice(0, 3), matched.slice(3)]);
    expect(plan.canaryBatches).toBe(0);
  });
});
