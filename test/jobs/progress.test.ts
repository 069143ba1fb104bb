import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatUnavailable } from '../../src/core/chat.js';
import { deliver } from '../../src/jobs/delivery.js';
import { createProgress } from '../../src/jobs/progress.js';
import { capturedLogger } from '../support/quiet-log.js';

// Pacing is the code's own schedule: fake timers drive it, so a busy machine cannot bend the numbers.
beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A chat whose edits take `answerMs` and fail while `down` says so; records every attempt. */
function fakeChat(answerMs = 0) {
  const attempts: { text: string; at: number; answeredAt: number; ok: boolean }[] = [];
  let down: (() => Error) | undefined;
  return {
    attempts,
    delivered: () => attempts.filter((a) => a.ok).map((a) => a.text),
    fail(error: (() => Error) | undefined) {
      down = error;
    },
    async edit(text: string) {
      const at = Date.now();
      if (answerMs > 0) await wait(answerMs);
      const error = down?.();
      attempts.push({ text, at, answeredAt: Date.now(), ok: !error });
      if (error) throw error;
    },
  };
}

describe('progress edits', () => {
  it('when the platform answers slowly, then the next edit still starts a full interval after the answer', async () => {
    const chat = fakeChat(150);
    const progress = createProgress(chat.edit, { minIntervalMs: 200, log: capturedLogger().log });
    const started = Date.now();
    for (let step = 1; step <= 20; step++) {
      progress.update(`step ${step}`);
      await vi.advanceTimersByTimeAsync(40);
    }
    const finished = progress.finish('done');
    await vi.runAllTimersAsync();
    await finished;

    // Step k arrives at 40·(k-1) ms; edits start at 200 and 550 ms (interval after each 150 ms answer),
    // and the next slot, 900 ms, already belongs to the final word: step 20 is superseded, not replayed.
    expect(chat.delivered()).toEqual(['step 5', 'step 14', 'done']);
    // The message was just posted, so the first edit waits a full interval too.
    expect(chat.attempts[0]?.at).toBe(started + 200);
    for (let i = 1; i < chat.attempts.length; i++)
      expect((chat.attempts[i]?.at ?? 0) - (chat.attempts[i - 1]?.answeredAt ?? 0)).toBe(200);
  });

  it('when an edit fails for good, then the failure is logged and later updates still show', async () => {
    const chat = fakeChat();
    const { log, lines } = capturedLogger();
    chat.fail(() => new Error('message to edit not found'));
    const progress = createProgress(chat.edit, { minIntervalMs: 10, log });
    progress.update('first');
    await vi.advanceTimersByTimeAsync(30);
    chat.fail(undefined);
    const finished = progress.finish('last');
    await vi.runAllTimersAsync();
    await finished;
    // Not retried: the platform said never, not later.
    expect(chat.attempts.map((a) => [a.text, a.ok])).toEqual([
      ['first', false],
      ['last', true],
    ]);
    expect(lines.some((l) => l.includes('progress edit failed'))).toBe(true);
  });

  it('when the chat is down, then edits are retried with backoff and, once it is back, only the latest state is sent', async () => {
    const chat = fakeChat();
    const { log, lines } = capturedLogger();
    const progress = createProgress(chat.edit, {
      minIntervalMs: 3000,
      log,
      delivery: { firstMs: 1000, maxMs: 8000, giveUpAfterMs: 3_600_000 },
    });
    progress.update('10%');
    await vi.advanceTimersByTimeAsync(3000);
    expect(chat.delivered()).toEqual(['10%']);

    chat.fail(() => new ChatUnavailable('Slack answered 503'));
    const outageStarted = Date.now();
    for (let pct = 20; pct <= 90; pct += 10) {
      progress.update(`${pct}%`);
      await vi.advanceTimersByTimeAsync(8000);
    }
    const failed = chat.attempts.filter((a) => !a.ok);
    // Each retry waits for the interval and for a backoff that doubles up to its cap: 1, 2, 4, 8, 8 … s.
    expect(failed.slice(1).map((a, i) => a.at - (failed[i]?.at ?? 0))).toEqual([
      3000, 3000, 4000, 8000, 8000, 8000, 8000, 8000, 8000,
    ]);
    expect(failed.map((a) => a.text)).toEqual([
      '20%',
      '20%',
      '30%',
      '30%',
      '40%',
      '50%',
      '60%',
      '70%',
      '80%',
      '90%',
    ]);

    chat.fail(undefined);
    const finished = progress.finish('done: succeeded on all');
    await vi.runAllTimersAsync();
    await finished;
    const after = chat.attempts.filter((a) => a.ok && a.at > outageStarted).map((a) => a.text);
    // Nothing from the outage is replayed: the first edit after it is the state current at that moment.
    expect(after).toEqual(['done: succeeded on all']);
    expect(chat.delivered().filter((t) => t.startsWith('done'))).toHaveLength(1);
    expect(lines.some((l) => l.includes('trying again'))).toBe(true);
  });

  it('when the chat answers 429 with Retry-After, then no edit is tried before that time', async () => {
    const chat = fakeChat();
    const progress = createProgress(chat.edit, { minIntervalMs: 1000, log: capturedLogger().log });
    let storm = 3;
    chat.fail(() =>
      storm-- > 0 ? new ChatUnavailable('Telegram answered 429', 30_000) : (undefined as never),
    );
    progress.update('running');
    for (let s = 0; s < 200; s++) {
      if (s % 5 === 0) progress.update(`running ${s}`);
      await vi.advanceTimersByTimeAsync(1000);
    }
    const finished = progress.finish('ready');
    await vi.runAllTimersAsync();
    await finished;

    const [a, b, c, d] = chat.attempts;
    expect(chat.attempts.slice(0, 3).every((x) => !x.ok)).toBe(true);
    for (const [prev, next] of [
      [a, b],
      [b, c],
      [c, d],
    ])
      expect((next?.at ?? 0) - (prev?.answeredAt ?? 0)).toBeGreaterThanOrEqual(30_000);
    expect(chat.delivered().at(-1)).toBe('ready');
  });

  it('when the chat stays down past the give-up time, then finish returns and says it gave up', async () => {
    const chat = fakeChat();
    const { log, lines } = capturedLogger();
    chat.fail(() => new ChatUnavailable('Slack could not be reached'));
    const progress = createProgress(chat.edit, {
      minIntervalMs: 100,
      log,
      delivery: { firstMs: 1000, maxMs: 5000, giveUpAfterMs: 60_000 },
    });
    const finished = progress.finish('done');
    await vi.runAllTimersAsync();
    await finished;
    expect(chat.delivered()).toEqual([]);
    expect(chat.attempts.length).toBeGreaterThan(5);
    expect((chat.attempts.at(-1)?.at ?? 0) - (chat.attempts[0]?.at ?? 0)).toBeGreaterThanOrEqual(60_000);
    expect(lines.filter((l) => l.includes('progress edit given up'))).toHaveLength(1);
  });

  it('when the shared budget is spent, then intermediate states wait for a later interval and the final waits its turn', async () => {
    const chat = fakeChat();
    let left = 1;
    const taken: number[] = [];
    const budget = {
      tryTake: async () => left-- > 0,
      take: async () => {
        taken.push(Date.now());
      },
    };
    const progress = createProgress(chat.edit, { minIntervalMs: 1000, log: capturedLogger().log, budget });
    progress.update('a');
    await vi.advanceTimersByTimeAsync(1000);
    progress.update('b');
    await vi.advanceTimersByTimeAsync(5000);
    const finished = progress.finish('final');
    await vi.runAllTimersAsync();
    await finished;
    expect(chat.delivered()).toEqual(['a', 'final']);
    expect(taken).toHaveLength(1);
  });

  it('when updates arrive after the final word, then they change nothing', async () => {
    const chat = fakeChat();
    const progress = createProgress(chat.edit, { minIntervalMs: 100, log: capturedLogger().log });
    const finished = progress.finish('done');
    progress.update('late');
    await vi.runAllTimersAsync();
    await finished;
    await vi.runAllTimersAsync();
    expect(chat.delivered()).toEqual(['done']);
  });

  it('when a step is over within the settle time, then it is never shown and the last word goes at once', async () => {
    const chat = fakeChat();
    const progress = createProgress(chat.edit, {
      minIntervalMs: 300,
      settleMs: 200,
      log: capturedLogger().log,
    });
    const started = Date.now();
    // Outlasts its settle: shown 200 ms after it was set (the interval since the post has passed).
    await vi.advanceTimersByTimeAsync(1000);
    progress.update('health checks');
    await vi.advanceTimersByTimeAsync(1000);
    // Over 150 ms later: its edit would have held the last word back a whole interval.
    progress.update('bootstrapping');
    await vi.advanceTimersByTimeAsync(150);
    const finished = progress.finish('ready');
    await vi.runAllTimersAsync();
    await finished;

    expect(chat.delivered()).toEqual(['health checks', 'ready']);
    expect(chat.attempts.map((a) => a.at - started)).toEqual([1200, 2150]);
  });

  it('when steps keep changing, then the settle time still shows one within it', async () => {
    const chat = fakeChat();
    const progress = createProgress(chat.edit, {
      minIntervalMs: 100,
      settleMs: 200,
      log: capturedLogger().log,
    });
    const started = Date.now();
    await vi.advanceTimersByTimeAsync(500);
    // A new state every 50 ms: the settle counts from the first one not shown, so it is no starvation.
    for (let step = 1; step <= 10; step++) {
      progress.update(`step ${step}`);
      await vi.advanceTimersByTimeAsync(50);
    }
    const finished = progress.finish('done');
    await vi.runAllTimersAsync();
    await finished;

    // Step k is set at 500 + 50·(k−1) ms; a settle ends as the next step's timer is due, before it.
    expect(chat.delivered()).toEqual(['step 4', 'step 8', 'done']);
    expect(chat.attempts.map((a) => a.at - started)).toEqual([700, 900, 1000]);
  });
});

describe('delivering one message', () => {
  it('when the chat is unavailable for a while, then the message is sent once it is back', async () => {
    let failing = 4;
    const calls: number[] = [];
    const sent = deliver(
      async () => {
        calls.push(Date.now());
        if (failing-- > 0) throw new ChatUnavailable('Slack answered 503');
        return 'ts-1';
      },
      { log: capturedLogger().log, what: 'thread reply' },
    );
    await vi.runAllTimersAsync();
    expect(await sent).toBe('ts-1');
    expect(calls.slice(1).map((at, i) => at - (calls[i] ?? 0))).toEqual([1000, 2000, 4000, 8000]);
  });

  it('when the platform refuses for good, then the error comes back at once', async () => {
    let calls = 0;
    const sent = deliver(
      async () => {
        calls++;
        throw new Error('channel_not_found');
      },
      { log: capturedLogger().log, what: 'alert' },
    );
    await expect(sent).rejects.toThrow('channel_not_found');
    expect(calls).toBe(1);
  });
});
