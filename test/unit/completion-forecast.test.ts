import { describe, expect, it } from 'vitest';
import { createCompletionForecast } from '../../src/core/completion-forecast.js';

const limits = { minGapMs: 1000, maxGapMs: 10_000 };

describe('completion forecast', () => {
  it('when nothing has finished yet, then reads back off geometrically from the send, within the limits', () => {
    const forecast = createCompletionForecast(limits);
    const state = { sentAt: 0, open: 50, worthReading: 25 };
    expect(forecast.nextReadAt({ ...state, lastReadAt: 0 })).toBe(1000);
    expect(forecast.nextReadAt({ ...state, lastReadAt: 1000 })).toBe(2000);
    expect(forecast.nextReadAt({ ...state, lastReadAt: 2000 })).toBe(4000);
    expect(forecast.nextReadAt({ ...state, lastReadAt: 8000 })).toBe(16_000);
    expect(forecast.nextReadAt({ ...state, lastReadAt: 30_000 })).toBe(40_000);
  });

  it('when durations are known, then a command is read once enough of it should have finished to be worth a send', () => {
    const forecast = createCompletionForecast({ minGapMs: 1000, maxGapMs: 1_000_000 });
    // 100 instances took 1..100 s (each seen in a one-second interval).
    for (let s = 1; s <= 100; s++) forecast.observe((s - 0.5) * 1000, (s + 0.5) * 1000);
    expect(forecast.samples).toBe(100);
    // 40 open, 10 worth a read: a quarter of them, at the 25th percentile.
    expect(forecast.nextReadAt({ sentAt: 0, lastReadAt: 0, open: 40, worthReading: 10 })).toBe(25_000);
    // Read at 50 s with 20 still open: 10 of those 20 finish by the 75th percentile.
    expect(forecast.nextReadAt({ sentAt: 0, lastReadAt: 50_000, open: 20, worthReading: 10 })).toBe(75_000);
    // Sent 7 s ago: the same forecast, 7 s later.
    expect(forecast.nextReadAt({ sentAt: 7000, lastReadAt: 7000, open: 40, worthReading: 10 })).toBe(32_000);
  });

  it('when few instances remain, then half of them is worth a read, so the last one is not waited out to the slowest', () => {
    const forecast = createCompletionForecast({ minGapMs: 0, maxGapMs: 1_000_000 });
    for (let s = 1; s <= 100; s++) forecast.observe(s * 1000, s * 1000);
    expect(forecast.nextReadAt({ sentAt: 0, lastReadAt: 0, open: 1, worthReading: 25 })).toBe(50_000);
  });

  it('when the open instances are slower than any seen, then reads back off instead of stopping', () => {
    const forecast = createCompletionForecast(limits);
    forecast.observe(1000, 2000);
    expect(forecast.nextReadAt({ sentAt: 0, lastReadAt: 5000, open: 3, worthReading: 2 })).toBe(10_000);
  });

  it('when a forecast is earlier than the smallest gap or later than the poll interval, then it is held to them', () => {
    const forecast = createCompletionForecast(limits);
    for (let i = 0; i < 10; i++) forecast.observe(0, 100);
    expect(forecast.nextReadAt({ sentAt: 0, lastReadAt: 0, open: 10, worthReading: 5 })).toBe(1000);
    const slow = createCompletionForecast(limits);
    for (let i = 0; i < 10; i++) slow.observe(60_000, 60_000);
    expect(slow.nextReadAt({ sentAt: 0, lastReadAt: 0, open: 10, worthReading: 5 })).toBe(10_000);
  });
});
