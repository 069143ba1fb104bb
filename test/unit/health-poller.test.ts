import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Fleet, InstanceHealth } from '../../src/core/ports/fleet.js';
import { createHealthPoller, type HealthPoller } from '../../src/jobs/health-poller.js';
import { capturedLogger } from '../support/quiet-log.js';

/** The shared status poll on a fake clock: what each tick costs, when ticks come, and what they remember. */

const a = 'i-0aaaaaaaaaaaaaaaa';
const b = 'i-0bbbbbbbbbbbbbbbb';
const ready: InstanceHealth = { state: 'running', system: 'ok', instance: 'ok' };
const booting: InstanceHealth = { state: 'running', system: 'initializing', instance: 'initializing' };
const isRunning = (h: InstanceHealth | undefined) => h?.state === 'running';
const checksOk = (h: InstanceHealth | undefined) => h?.system === 'ok' && h.instance === 'ok';

/**
 * A fleet whose DescribeInstanceStatus answers `healths` after `answerMs` (fake time), or fails
 * with `failing`; records each call's start and the ids it named.
 */
function fakeFleet() {
  const calls: { at: number; ids: string[]; answeredAt?: number }[] = [];
  const state = {
    healths: new Map<string, InstanceHealth>(),
    answerMs: 0,
    failing: undefined as Error | undefined,
  };
  const fleet = {
    async health(ids: readonly string[]) {
      const call: (typeof calls)[number] = { at: Date.now(), ids: [...ids] };
      calls.push(call);
      if (state.answerMs > 0) await new Promise((resolve) => setTimeout(resolve, state.answerMs));
      call.answeredAt = Date.now();
      if (state.failing) throw state.failing;
      return new Map(ids.flatMap((id) => (state.healths.has(id) ? [[id, state.healths.get(id)]] : [])));
    },
  } as Pick<Fleet, 'health'> as Fleet;
  return { fleet, calls, state };
}

/** Settles the promise's outcome without waiting for it, so a test can tell "not yet" from "done". */
function watch<T>(promise: Promise<T>) {
  const seen: { value?: T; error?: unknown; done: boolean } = { done: false };
  promise.then(
    (value) => Object.assign(seen, { value, done: true }),
    (error: unknown) => Object.assign(seen, { error, done: true }),
  );
  return seen;
}

let poller: HealthPoller | undefined;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  poller?.stop();
  poller = undefined;
  vi.useRealTimers();
});

describe('what the latest tick saw', () => {
  it('when the tick that saw an instance running also saw its checks ok, then a wait for the checks registered right after resolves without another status call', async () => {
    const { fleet, calls, state } = fakeFleet();
    state.healths.set(a, ready);
    poller = createHealthPoller(fleet, 10_000, capturedLogger().log);
    const start = Date.now();
    // As a provision does: the next stage's wait is registered as soon as the previous one resolves.
    const both = poller.waitUntil(a, isRunning, 60_000).then(() => poller?.waitUntil(a, checksOk, 60_000));
    const outcome = watch(both);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(outcome).toEqual({ value: ready, done: true });
    expect(calls.map((c) => c.at - start)).toEqual([10_000]);
    // Nobody waits any more, so no tick is planned either.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(calls).toHaveLength(1);
  });

  it('when the latest tick saw the instance short of what is waited for, then the wait takes the next tick, which is still one interval after the last', async () => {
    const { fleet, calls, state } = fakeFleet();
    state.healths.set(a, booting);
    poller = createHealthPoller(fleet, 10_000, capturedLogger().log);
    const start = Date.now();
    const checks = watch(
      poller.waitUntil(a, isRunning, 60_000).then(() => poller?.waitUntil(a, checksOk, 60_000)),
    );
    await vi.advanceTimersByTimeAsync(10_000);
    expect(checks.done).toBe(false);
    state.healths.set(a, ready);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(checks).toEqual({ value: ready, done: true });
    expect(calls.map((c) => c.at - start)).toEqual([10_000, 20_000]);
  });

  it('when the latest tick answered more than an interval ago, then what it saw is not trusted and the instance is asked about again', async () => {
    const { fleet, calls, state } = fakeFleet();
    state.healths.set(a, ready);
    poller = createHealthPoller(fleet, 10_000, capturedLogger().log);
    const start = Date.now();
    const first = watch(poller.waitUntil(a, isRunning, 60_000));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(first.done).toBe(true);
    // Idle for longer than an interval: the instance may have changed since (stopped, say).
    await vi.advanceTimersByTimeAsync(15_000);
    const again = watch(poller.waitUntil(a, isRunning, 60_000));
    await vi.advanceTimersByTimeAsync(0);
    expect(again.done).toBe(false);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(again).toEqual({ value: ready, done: true });
    // A poller idle that long gives the new waiter an interval, as a new poller does.
    expect(calls.map((c) => c.at - start)).toEqual([10_000, 35_000]);
  });

  it('when the latest tick did not ask about an instance, then a wait for it takes a tick of its own', async () => {
    const { fleet, calls, state } = fakeFleet();
    state.healths.set(a, ready);
    state.healths.set(b, ready);
    poller = createHealthPoller(fleet, 10_000, capturedLogger().log);
    const other = watch(
      poller.waitUntil(a, isRunning, 60_000).then(() => poller?.waitUntil(b, isRunning, 60_000)),
    );
    await vi.advanceTimersByTimeAsync(10_000);
    expect(other.done).toBe(false);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(other).toEqual({ value: ready, done: true });
    expect(calls.map((c) => c.ids)).toEqual([[a], [b]]);
  });

  it('when the latest tick failed, then what an earlier tick saw is not used', async () => {
    const { fleet, calls, state } = fakeFleet();
    state.healths.set(a, ready);
    // The first answer is slow, so it is still less than an interval old when the next tick fails.
    state.answerMs = 5000;
    poller = createHealthPoller(fleet, 10_000, capturedLogger().log);
    const start = Date.now();
    const first = watch(poller.waitUntil(a, isRunning, 60_000));
    // Keeps the poller ticking: EC2 does not know b yet.
    const unknown = watch(poller.waitUntil(b, isRunning, 60_000));
    await vi.advanceTimersByTimeAsync(15_000);
    expect(first.done).toBe(true);
    state.answerMs = 0;
    state.failing = new Error('socket hang up');
    await vi.advanceTimersByTimeAsync(5000);
    expect(calls.map((c) => c.at - start)).toEqual([10_000, 20_000]);
    const after = watch(poller.waitUntil(a, checksOk, 60_000));
    await vi.advanceTimersByTimeAsync(0);
    expect(after.done).toBe(false);
    state.failing = undefined;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(after).toEqual({ value: ready, done: true });
    expect(calls.map((c) => c.at - start)).toEqual([10_000, 20_000, 30_000]);
    expect(unknown.done).toBe(false);
  });
});

describe('the cadence of ticks', () => {
  it('when each status call takes a while, then ticks still start one interval apart instead of drifting by the answer time', async () => {
    const { fleet, calls, state } = fakeFleet();
    state.answerMs = 3000;
    poller = createHealthPoller(fleet, 10_000, capturedLogger().log);
    const start = Date.now();
    // EC2 does not know the instance yet: the wait goes on tick after tick.
    void poller.waitUntil(a, isRunning, 600_000).catch(() => undefined);
    await vi.advanceTimersByTimeAsync(45_000);
    expect(calls.map((c) => c.at - start)).toEqual([10_000, 20_000, 30_000, 40_000]);
  });

  it('when a status call takes longer than the interval, then the next tick starts as it is answered, never two at once', async () => {
    const { fleet, calls, state } = fakeFleet();
    state.answerMs = 15_000;
    poller = createHealthPoller(fleet, 10_000, capturedLogger().log);
    const start = Date.now();
    void poller.waitUntil(a, isRunning, 600_000).catch(() => undefined);
    await vi.advanceTimersByTimeAsync(50_000);
    expect(calls.map((c) => c.at - start)).toEqual([10_000, expect.any(Number), expect.any(Number)]);
    for (const [i, call] of calls.slice(1).entries()) {
      const previous = calls[i];
      // Right after the previous answer: node runs a zero-delay timer 1 ms on.
      expect(call.at - (previous?.answeredAt ?? Number.NaN)).toBeGreaterThanOrEqual(0);
      expect(call.at - (previous?.answeredAt ?? Number.NaN)).toBeLessThanOrEqual(1);
      expect(call.at - (previous?.at ?? Number.NaN)).toBeGreaterThanOrEqual(10_000);
    }
  });

  it('when waiters come while a status call is out, then they join the next tick on the cadence, one call for all of them', async () => {
    const { fleet, calls, state } = fakeFleet();
    state.answerMs = 3000;
    poller = createHealthPoller(fleet, 10_000, capturedLogger().log);
    const start = Date.now();
    void poller.waitUntil(a, isRunning, 600_000).catch(() => undefined);
    await vi.advanceTimersByTimeAsync(11_000);
    const more = Array.from({ length: 30 }, (_, i) => `i-0${String(i).padStart(16, '0')}`);
    for (const id of more) void poller.waitUntil(id, isRunning, 600_000).catch(() => undefined);
    await vi.advanceTimersByTimeAsync(14_000);
    expect(calls.map((c) => [c.at - start, c.ids.length])).toEqual([
      [10_000, 1],
      [20_000, 31],
    ]);
  });

  it('when a waiter comes to an idle poller within an interval of its last tick, then it is asked about on the cadence', async () => {
    const { fleet, calls, state } = fakeFleet();
    state.healths.set(a, booting);
    poller = createHealthPoller(fleet, 10_000, capturedLogger().log);
    const start = Date.now();
    const first = watch(poller.waitUntil(a, isRunning, 60_000));
    await vi.advanceTimersByTimeAsync(13_000);
    expect(first.done).toBe(true);
    const next = watch(poller.waitUntil(a, checksOk, 60_000));
    state.healths.set(a, ready);
    await vi.advanceTimersByTimeAsync(7000);
    expect(next).toEqual({ value: ready, done: true });
    expect(calls.map((c) => c.at - start)).toEqual([10_000, 20_000]);
  });
});
