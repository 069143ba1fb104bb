import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ChatRequest, Dispatch } from '../../src/bot/dispatch.js';
import { createTelegramAdapter, type TelegramAdapter } from '../../src/bot/telegram.js';
import { freePort } from '../peers/free-port.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { capturedLogger } from '../support/quiet-log.js';

/**
 * grammY's webhook handler gives up on an update after a timeout. Before, that rejection went
 * unhandled and Node ended the process; now Telegram is answered and the update runs on. The
 * adapter's timeout is shortened so an update blocked on a gate outlasts it; no wall clock is asserted.
 */

const token = `7000000002:${'W'.repeat(35)}`;
const secret = 'webhook-timeout-secret-0123456789';
const timeoutMs = 100;

/** A promise the test opens when it has seen what it waits for. */
function gate() {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

let fake: FakeTelegram;
let adapter: TelegramAdapter;
let hookUrl = '';
const captured = capturedLogger();
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
/** What each text does once dispatched; every update is recorded with its id. */
const behaviours = new Map<string, (request: ChatRequest) => Promise<void>>();
const dispatched: { text: string; updateId: number; finished: boolean }[] = [];

const dispatch: Dispatch = async (request) => {
  const entry = { text: request.text, updateId: Number(request.updateId), finished: false };
  dispatched.push(entry);
  try {
    await behaviours.get(request.text)?.(request);
  } finally {
    entry.finished = true;
  }
  return 'ran';
};

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  fake = await startFakeTelegram();
  fake.addBot(token, { username: 'webhook_timeout_bot' });
  const port = await freePort();
  hookUrl = `http://127.0.0.1:${port}/telegram/hook`;
  adapter = createTelegramAdapter({
    token,
    apiRoot: fake.apiRoot,
    mode: 'webhook',
    webhook: { url: hookUrl, secret, host: '127.0.0.1', port },
    webhookTimeoutMs: timeoutMs,
    roleOf: async () => 'user',
    dispatch,
    log: captured.log,
  });
  await adapter.start();
});

afterAll(async () => {
  await adapter?.stop();
  await fake?.close();
  process.off('unhandledRejection', onUnhandled);
});

const logged = () => captured.lines.map((line) => JSON.parse(line) as Record<string, unknown>);

/** Unhandled rejections are reported once the microtask queue drains: a turn of the event loop later. */
const afterRejectionsReported = () => new Promise((resolve) => setImmediate(resolve));

/** Polls state the fake does not announce (its own waitFor wakes on its own changes only). */
function until<T>(probe: () => T | undefined | false): Promise<T> {
  return vi.waitFor(
    () => {
      const value = probe();
      if (value === undefined || value === false) throw new Error('not yet');
      return value;
    },
    { timeout: 15_000, interval: 10 },
  );
}

const dispatchedAs = (text: string) => until(() => dispatched.find((d) => d.text === text));

describe('Telegram webhook with updates slower than the webhook timeout', () => {
  it('when an update outlasts the timeout, then Telegram gets 200 once, and the update finishes and replies', async () => {
    const slow = gate();
    behaviours.set('slow one', async (request) => {
      await slow.opened;
      await request.reply.send('slow one done');
    });
    fake.sendUserMessage(token, { userId: 501, text: 'slow one' });
    const update = await dispatchedAs('slow one');
    // Answered while the update is still held at the gate.
    const answered = await fake.waitFor(
      () => fake.webhookDeliveries(token).find((d) => d.updateId === update.updateId),
      15_000,
    );
    expect(answered).toMatchObject({ attempt: 1, status: 200 });
    expect(update.finished).toBe(false);
    expect(logged()).toContainEqual(
      expect.objectContaining({ msg: 'telegram webhook answered while its update runs on', timeoutMs }),
    );

    slow.open();
    await fake.waitForMessage(token, 501, 'slow one done', 15_000);
    await until(() => update.finished);
    // A later update of the same kind still goes through: the server is up and answering.
    behaviours.set('after', async (request) => {
      await request.reply.send('still here');
    });
    fake.sendUserMessage(token, { userId: 501, text: 'after' });
    await fake.waitForMessage(token, 501, 'still here', 15_000);
    await fake.waitFor(() => fake.webhookDeliveries(token).length >= 2, 15_000);
    expect(fake.webhookDeliveries(token).filter((d) => d.updateId === update.updateId)).toHaveLength(1);
    await afterRejectionsReported();
    expect(unhandled).toEqual([]);
  });

  it('when an update fails after Telegram was answered, then the failure is logged with its update and nothing is unhandled', async () => {
    const late = gate();
    behaviours.set('fail late', async () => {
      await late.opened;
      throw new Error('late failure');
    });
    fake.sendUserMessage(token, { userId: 502, text: 'fail late' });
    const update = await dispatchedAs('fail late');
    await fake.waitFor(
      () => fake.webhookDeliveries(token).find((d) => d.updateId === update.updateId && d.status === 200),
      15_000,
    );
    late.open();

    const failure = await until(() =>
      logged().find((l) => l.msg === 'telegram update failed' && l.update === update.updateId),
    );
    expect(failure).toMatchObject({ level: 50, err: expect.objectContaining({ message: 'late failure' }) });
    await afterRejectionsReported();
    expect(unhandled).toEqual([]);
    expect(fake.webhookDeliveries(token).filter((d) => d.updateId === update.updateId)).toEqual([
      expect.objectContaining({ attempt: 1, status: 200 }),
    ]);
  });

  it('when an update fails at once, then Telegram gets 200 and does not redeliver it, and the failure is logged', async () => {
    behaviours.set('fail early', async () => {
      throw new Error('early failure');
    });
    fake.sendUserMessage(token, { userId: 503, text: 'fail early' });
    const update = await dispatchedAs('fail early');
    await until(() =>
      logged().find((l) => l.msg === 'telegram update failed' && l.update === update.updateId),
    );
    // A barrier instead of a sleep: the fake posts one update at a time, so once a later update of
    // another chat is answered, any redelivery of this one would have been posted before it.
    behaviours.set('barrier', async (request) => {
      await request.reply.send('barrier passed');
    });
    fake.sendUserMessage(token, { userId: 504, text: 'barrier' });
    await fake.waitForMessage(token, 504, 'barrier passed', 15_000);
    await afterRejectionsReported();
    expect(unhandled).toEqual([]);
    expect(fake.webhookDeliveries(token).filter((d) => d.updateId === update.updateId)).toEqual([
      expect.objectContaining({ attempt: 1, status: 200 }),
    ]);
  });

  it('when a request body is not JSON, then it is answered 400 and logged, and the server stays up', async () => {
    const res = await fetch(hookUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': secret },
      body: '{not json',
    });
    expect(res.status).toBe(400);
    expect(logged().some((l) => l.msg === 'telegram webhook request failed')).toBe(true);
    behaviours.set('after bad body', async (request) => {
      await request.reply.send('fine');
    });
    fake.sendUserMessage(token, { userId: 505, text: 'after bad body' });
    await fake.waitForMessage(token, 505, 'fine', 15_000);
    await afterRejectionsReported();
    expect(unhandled).toEqual([]);
  });
});
