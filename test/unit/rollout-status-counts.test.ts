import { describe, expect, it } from 'vitest';
import { type InvocationStatus, invocationStatuses } from '../../src/core/ports/run-command.js';
import { countsOf, StatusMap } from '../../src/jobs/rollout-message.js';

describe('rollout status counts', () => {
  it('when statuses are set, overwritten and deleted, then each status holds as many instances as a walk would count', () => {
    const statuses = new StatusMap();
    const plain = new Map<string, InvocationStatus>();
    // A fixed sequence (a linear congruential generator), so every run checks the same steps.
    let seed = 12345;
    const draw = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    for (let step = 0; step < 5000; step++) {
      const id = `i-${Math.floor(draw() * 300)}`;
      if (draw() < 0.2) {
        expect(statuses.delete(id)).toBe(plain.delete(id));
      } else {
        const status = invocationStatuses[Math.floor(draw() * invocationStatuses.length)] ?? 'pending';
        statuses.set(id, status);
        plain.set(id, status);
      }
    }
    expect(statuses.size).toBe(plain.size);
    for (const status of invocationStatuses)
      expect(statuses.holding(status)).toBe([...plain.values()].filter((s) => s === status).length);
    expect(countsOf(statuses, 400, 7)).toEqual(countsOf(plain, 400, 7));
  });

  it('when cleared, then no status holds any instance', () => {
    const statuses = new StatusMap();
    statuses.set('i-1', 'failed').set('i-2', 'success');
    statuses.clear();
    for (const status of invocationStatuses) expect(statuses.holding(status)).toBe(0);
    expect(countsOf(statuses, 2, 0)).toMatchObject({ pending: 2, failed: 0, succeeded: 0 });
  });

  it('when counted from a plain map, then delayed counts as pending and undeliverable as failed', () => {
    const plain = new Map<string, InvocationStatus>([
      ['i-1', 'delayed'],
      ['i-2', 'undeliverable'],
      ['i-3', 'running'],
      ['i-4', 'timed-out'],
    ]);
    expect(countsOf(plain, 6, 1)).toEqual({
      pending: 2,
      inProgress: 1,
      succeeded: 0,
      failed: 1,
      timedOut: 1,
      cancelled: 0,
      unreachable: 1,
    });
  });
});
