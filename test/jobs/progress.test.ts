import { describe, expect, it } from 'vitest';
import { createProgress } from '../../src/jobs/progress.js';
import { capturedLogger } from '../support/quiet-log.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('progress edits', () => {
  it('when the platform answers slowly, then the next edit still starts a full interval after the answer', async () => {
    const calls: { text: string; startedAt: number; answeredAt: number }[] = [];
    const progress = createProgress(
      async (text) => {
        const startedAt = Date.now();
        await sleep(150);
        calls.push({ text, startedAt, answeredAt: Date.now() });
      },
      { minIntervalMs: 200, log: capturedLogger().log },
    );
    const started = Date.now();
    for (let step = 1; step <= 20; step++) {
      progress.update(`step ${step}`);
      await sleep(40);
    }
    await progress.finish('done');

    expect(calls.length).toBeGreaterThan(2);
    expect(calls.length).toBeLessThan(20);
    // The message was just posted, so the first edit waits a full interval too.
    expect(calls[0]?.startedAt).toBeGreaterThanOrEqual(started + 199);
    expect(calls.at(-1)?.text).toBe('done');
    for (let i = 1; i < calls.length; i++)
      // 199: Node timers may fire within the millisecond before their due time.
      expect((calls[i]?.startedAt ?? 0) - (calls[i - 1]?.answeredAt ?? 0)).toBeGreaterThanOrEqual(199);
  });

  it('when an edit fails, then the failure is logged and later updates still show', async () => {
    const shown: string[] = [];
    const { log, lines } = capturedLogger();
    let fail = true;
    const progress = createProgress(
      async (text) => {
        if (fail) {
          fail = false;
          throw new Error('message to edit not found');
        }
        shown.push(text);
      },
      { minIntervalMs: 10, log },
    );
    progress.update('first');
    await sleep(30);
    await progress.finish('last');
    expect(shown).toEqual(['last']);
    expect(lines.some((l) => l.includes('progress edit failed'))).toBe(true);
  });
});
