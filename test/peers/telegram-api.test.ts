import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Api, Bot, GrammyError, InlineKeyboard, webhookCallback } from 'grammy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeTelegram, startFakeTelegram } from './telegram-api.js';

let telegram: FakeTelegram;
let nextBot = 0;

/** Every test gets its own bot token, so no state leaks between tests sharing the server. */
function newToken(botInfo?: Parameters<FakeTelegram['addBot']>[1]): string {
  nextBot += 1;
  const token = `${5_000_000 + nextBot}:fake-token-${nextBot}`;
  telegram.addBot(token, botInfo);
  return token;
}

const apiFor = (token: string) => new Api(token, { apiRoot: telegram.apiRoot });
const textOf = (message: { text?: string }) => message.text;
/** A long-poll timeout no test waits out: below grammY's own 500 s request timeout, far above any test's. */
const longPollSeconds = 300;

async function failureOf(call: Promise<unknown>): Promise<GrammyError> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GrammyError);
  return error as GrammyError;
}

beforeAll(async () => {
  telegram = await startFakeTelegram();
});

afterAll(async () => {
  await telegram.close();
});

describe('fake Telegram Bot API', () => {
  it('when grammY initialises a bot, then getMe returns the configured bot info', async () => {
    const token = newToken({
      first_name: 'Fleet',
      username: 'fleet_test_bot',
      can_read_all_group_messages: true,
    });
    const bot = new Bot(token, { client: { apiRoot: telegram.apiRoot } });
    await bot.init();
    expect(bot.botInfo).toMatchObject({
      id: Number(token.split(':')[0]),
      is_bot: true,
      first_name: 'Fleet',
      username: 'fleet_test_bot',
      can_join_groups: true,
      can_read_all_group_messages: true,
      supports_inline_queries: false,
    });
  });

  it('when the token is unknown or the method does not exist, then the answers are 401 and 404 in Bot API shape', async () => {
    const unknown = await failureOf(apiFor('1:never-issued').getMe());
    expect(unknown).toMatchObject({ error_code: 401, description: 'Unauthorized' });

    const res = await fetch(`${telegram.apiRoot}/bot${newToken()}/noSuchMethod`, { method: 'POST' });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      ok: false,
      error_code: 404,
      description: 'Not Found: method not found',
    });
  });

  it('when parameters come as a form body or a query string, then they are read like JSON', async () => {
    const token = newToken();
    telegram.sendUserMessage(token, { userId: 501, text: 'hi' });
    const form = await fetch(`${telegram.apiRoot}/bot${token}/sendMessage`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        chat_id: '501',
        text: 'from a form',
        reply_markup: JSON.stringify({ inline_keyboard: [[{ text: 'A', callback_data: 'a' }]] }),
      }),
    });
    expect(form.status).toBe(200);
    expect(await form.json()).toMatchObject({
      ok: true,
      result: {
        text: 'from a form',
        reply_markup: { inline_keyboard: [[{ text: 'A', callback_data: 'a' }]] },
      },
    });
    // Bot API method names are case-insensitive, and GET works too.
    const query = await fetch(
      `${telegram.apiRoot}/bot${token}/SENDMESSAGE?chat_id=501&text=from%20a%20query`,
    );
    expect(await query.json()).toMatchObject({
      ok: true,
      result: { chat: { id: 501 }, text: 'from a query' },
    });
  });

  it('when getUpdates long-polls with timeout=1 and nothing arrives, then it holds the request for the second and answers []', async () => {
    const api = apiFor(newToken());
    const started = performance.now();
    const updates = await api.getUpdates({ timeout: 1 });
    // A lower bound only: a poll that answers early busy-loops its client; one that never answers
    // fails the test by its timeout. How late it comes is up to the machine.
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);
    expect(updates).toEqual([]);
  });

  it('when an update arrives during a long poll, then the poll wakes up and answers with it', async () => {
    const token = newToken();
    // Far beyond the test's own timeout: the poll can only have answered because the update woke it.
    const poll = apiFor(token).getUpdates({ timeout: longPollSeconds });
    await telegram.waitFor(() => telegram.calls(token, 'getUpdates').length === 1);
    const sent = telegram.sendUserMessage(token, { userId: 502, text: 'wake up' });
    const updates = await poll;
    expect(updates).toEqual([expect.objectContaining({ update_id: 1, message: sent })]);
  });

  it('when getUpdates passes an offset, then the updates below it are confirmed and gone', async () => {
    const token = newToken();
    const api = apiFor(token);
    telegram.sendUserMessage(token, { userId: 503, text: 'one' });
    telegram.sendUserMessage(token, { userId: 503, text: 'two' });
    const first = await api.getUpdates({ limit: 1 });
    expect(first.map((u) => u.message?.text)).toEqual(['one']);
    const rest = await api.getUpdates({ offset: (first[0]?.update_id ?? 0) + 1 });
    expect(rest.map((u) => u.message?.text)).toEqual(['two']);
    expect(telegram.pendingUpdates(token).map((u) => u.message?.text)).toEqual(['two']);
  });

  it('when a second getUpdates arrives during a long poll, then the first fails with 409 terminated', async () => {
    const token = newToken();
    const first = failureOf(apiFor(token).getUpdates({ timeout: 10 }));
    await telegram.waitFor(() => telegram.calls(token, 'getUpdates').length === 1);
    await apiFor(token).getUpdates({ timeout: 0 });
    expect(await first).toMatchObject({
      error_code: 409,
      description:
        'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running',
    });
  });

  it('when bot.start() idles, then each getUpdates is held for its timeout and the next follows the answer', async () => {
    const token = newToken();
    const bot = new Bot(token, { client: { apiRoot: telegram.apiRoot } });
    const running = bot.start({ timeout: 1 });
    // Three answered polls, however long the machine takes to get there; then stop, which aborts the
    // fourth and confirms with a timeout=0 call that is not part of the idle loop.
    const polls = await telegram.waitFor(() => {
      const answered = telegram.calls(token, 'getUpdates').filter((c) => c.finishedAt !== undefined);
      return answered.length >= 3 && answered.slice(0, 3);
    }, 30_000);
    await bot.stop();
    await running;
    // Lower bounds only, so load cannot break them: a busy loop answers at once and overlaps nothing.
    expect(polls.map((c) => Number(c.params.timeout))).toEqual([1, 1, 1]);
    for (const poll of polls) expect((poll.finishedAt ?? 0) - poll.at).toBeGreaterThanOrEqual(900);
    for (let i = 1; i < polls.length; i++)
      expect(polls[i]?.at ?? 0).toBeGreaterThanOrEqual(polls[i - 1]?.finishedAt ?? Number.POSITIVE_INFINITY);
  });

  describe('with a bot long-polling through grammY', () => {
    let token: string;
    let bot: Bot;
    let running: Promise<void>;
    const errors: unknown[] = [];

    beforeAll(async () => {
      token = newToken();
      bot = new Bot(token, { client: { apiRoot: telegram.apiRoot } });
      bot.on('message:text', (ctx) =>
        ctx.reply(`echo: ${ctx.message.text}`, { reply_markup: new InlineKeyboard().text('OK', 'ok') }),
      );
      bot.on('edited_message:text', (ctx) => ctx.reply(`saw edit: ${ctx.editedMessage.text}`));
      bot.callbackQuery('ok', async (ctx) => {
        await ctx.answerCallbackQuery({ text: 'noted' });
        await ctx.editMessageText('pressed');
      });
      bot.catch((err) => {
        errors.push(err.error);
      });
      await new Promise<void>((resolve) => {
        running = bot.start({ onStart: () => resolve() });
      });
    });

    afterAll(async () => {
      await bot.stop();
      await running;
    });

    it('when a user writes, then the handler runs and its reply is recorded with the bot as sender and a date in seconds', async () => {
      const before = Math.floor(Date.now() / 1000);
      const sent = telegram.sendUserMessage(token, { userId: 601, text: 'hello', firstName: 'Ann' });
      const reply = await telegram.waitForMessage(token, 601, 'echo: hello');
      expect(reply).toMatchObject({
        message_id: sent.message_id + 1,
        from: { id: Number(token.split(':')[0]), is_bot: true },
        chat: { id: 601, type: 'private', first_name: 'Ann' },
        reply_markup: { inline_keyboard: [[{ text: 'OK', callback_data: 'ok' }]] },
      });
      expect(reply.date).toBeGreaterThanOrEqual(before);
      // Seconds, not milliseconds: a millisecond date would be a thousand times past the current second.
      // Read after the reply, so a slow machine only widens the window.
      expect(reply.date).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
      await telegram.waitFor(() => telegram.pendingUpdates(token).length === 0);
      expect(errors).toEqual([]);
    });

    it('when the user edits a message, then the bot receives edited_message', async () => {
      const sent = telegram.sendUserMessage(token, { userId: 602, text: 'frist' });
      await telegram.waitForMessage(token, 602, 'echo: frist');
      telegram.editUserMessage(token, { chatId: 602, messageId: sent.message_id, text: 'first' });
      await telegram.waitForMessage(token, 602, 'saw edit: first');
      expect(errors).toEqual([]);
    });

    it('when the user presses an inline button, then bot.callbackQuery runs and its answer and edit are recorded', async () => {
      telegram.sendUserMessage(token, { userId: 603, text: 'menu' });
      const menu = await telegram.waitForMessage(token, 603, 'echo: menu');
      const queryId = telegram.pressButton(token, {
        chatId: 603,
        userId: 603,
        messageId: menu.message_id,
        data: 'ok',
      });
      const edited = await telegram.waitForMessage(token, 603, 'pressed');
      expect(edited.message_id).toBe(menu.message_id);
      // An edit without reply_markup drops the keyboard, as on the real server.
      expect(edited).not.toHaveProperty('reply_markup');
      expect(telegram.callbackAnswers(token)).toEqual([
        expect.objectContaining({ callbackQueryId: queryId, text: 'noted', showAlert: false }),
      ]);
      expect(telegram.chat(token, 603).edits).toEqual([
        expect.objectContaining({ messageId: menu.message_id, method: 'editMessageText', text: 'pressed' }),
      ]);
      expect(errors).toEqual([]);
    });
  });

  it('when the bot edits and deletes messages, then the chat records both and refusals match the Bot API', async () => {
    const token = newToken();
    const api = apiFor(token);
    const secret = telegram.sendUserMessage(token, { userId: 701, text: 'sk-live-123' });
    const progress = await api.sendMessage(701, 'working…');
    expect(await api.editMessageText(701, progress.message_id, 'done')).toMatchObject({
      text: 'done',
      edit_date: expect.any(Number),
    });
    expect(await failureOf(api.editMessageText(701, progress.message_id, 'done'))).toMatchObject({
      error_code: 400,
      description:
        'Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message',
    });
    expect(await failureOf(api.editMessageText(701, 9999, 'x'))).toMatchObject({
      error_code: 400,
      description: 'Bad Request: message to edit not found',
    });
    expect(await api.deleteMessage(701, secret.message_id)).toBe(true);
    expect(await api.deleteMessage(701, progress.message_id)).toBe(true);
    expect(await failureOf(api.deleteMessage(701, progress.message_id))).toMatchObject({
      error_code: 400,
      description: 'Bad Request: message to delete not found',
    });
    const chat = telegram.chat(token, 701);
    expect(chat.deleted).toEqual([secret.message_id, progress.message_id]);
    expect(chat.messages).toEqual([]);
    expect(chat.userMessages).toEqual([]);
    expect(chat.sent.map(textOf)).toEqual(['working…']);
    expect(chat.edits).toEqual([expect.objectContaining({ messageId: progress.message_id, text: 'done' })]);
  });

  it('when deleting a message is made to fail, then deleteMessage answers 400 and the message stays', async () => {
    const token = newToken();
    const secret = telegram.sendUserMessage(token, { userId: 702, text: 'sk-live-456' });
    telegram.failDelete(token, 702, secret.message_id);
    expect(await failureOf(apiFor(token).deleteMessage(702, secret.message_id))).toMatchObject({
      error_code: 400,
      description: "Bad Request: message can't be deleted",
    });
    expect(telegram.chat(token, 702).deleted).toEqual([]);
    expect(telegram.chat(token, 702).userMessages.map(textOf)).toEqual(['sk-live-456']);
  });

  it('when the text is longer than 4096 characters or empty, then sendMessage fails with 400', async () => {
    const token = newToken();
    const api = apiFor(token);
    telegram.sendUserMessage(token, { userId: 703, text: 'hi' });
    expect(await api.sendMessage(703, 'x'.repeat(4096))).toMatchObject({ text: 'x'.repeat(4096) });
    expect(await failureOf(api.sendMessage(703, 'x'.repeat(4097)))).toMatchObject({
      error_code: 400,
      description: 'Bad Request: message is too long',
    });
    expect(await failureOf(api.sendMessage(703, ''))).toMatchObject({
      error_code: 400,
      description: 'Bad Request: message text is empty',
    });
    expect(await failureOf(api.sendMessage(999, 'nobody there'))).toMatchObject({
      error_code: 400,
      description: 'Bad Request: chat not found',
    });
  });

  it('when a 429 is armed for one chat, then only that chat gets GrammyError with retry_after, once', async () => {
    const token = newToken();
    const api = apiFor(token);
    telegram.sendUserMessage(token, { userId: 704, text: 'a' });
    telegram.sendUserMessage(token, { userId: 705, text: 'b' });
    telegram.failNext(token, 'sendMessage', { retryAfter: 7, chatId: 704 });
    expect(await api.sendMessage(705, 'other chat')).toMatchObject({ text: 'other chat' });
    expect(await failureOf(api.sendMessage(704, 'hi'))).toMatchObject({
      error_code: 429,
      description: 'Too Many Requests: retry after 7',
      parameters: { retry_after: 7 },
    });
    expect(await api.sendMessage(704, 'hi')).toMatchObject({ text: 'hi' });
    expect(telegram.chat(token, 704).sent.map(textOf)).toEqual(['hi']);

    telegram.failNext(token, 'getMe', { retryAfter: 3 });
    const res = await fetch(`${telegram.apiRoot}/bot${token}/getMe`);
    expect(res.status).toBe(429);
    expect(await res.json()).toEqual({
      ok: false,
      error_code: 429,
      description: 'Too Many Requests: retry after 3',
      parameters: { retry_after: 3 },
    });

    telegram.failNext(token, 'sendChatAction', {
      errorCode: 500,
      description: 'Internal Server Error',
      times: 2,
    });
    for (let i = 0; i < 2; i++) {
      expect(await failureOf(api.sendChatAction(704, 'typing'))).toMatchObject({ error_code: 500 });
    }
    expect(await api.sendChatAction(704, 'typing')).toBe(true);
    expect(telegram.chat(token, 704).actions).toEqual([expect.objectContaining({ action: 'typing' })]);
  });

  it('when the bot sends HTML or MarkdownV2, then text comes back parsed and broken markup is refused', async () => {
    const token = newToken();
    const api = apiFor(token);
    telegram.sendUserMessage(token, { userId: 706, text: 'hi' });
    expect(await api.sendMessage(706, '<b>Ready</b> &lt;i-0abc&gt;', { parse_mode: 'HTML' })).toMatchObject({
      text: 'Ready <i-0abc>',
      entities: [{ type: 'bold', offset: 0, length: 5 }],
    });
    expect(
      await failureOf(api.sendMessage(706, 'instance <i-0abc> is up', { parse_mode: 'HTML' })),
    ).toMatchObject({
      error_code: 400,
      description: `Bad Request: can't parse entities: Unsupported start tag "i-0abc" at byte offset 9`,
    });
    expect(
      await failureOf(api.sendMessage(706, 'v1.2 deployed', { parse_mode: 'MarkdownV2' })),
    ).toMatchObject({
      error_code: 400,
      description: `Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'`,
    });
    expect(await api.sendMessage(706, '*v1\\.2* deployed', { parse_mode: 'MarkdownV2' })).toMatchObject({
      text: 'v1.2 deployed',
      entities: [{ type: 'bold', offset: 0, length: 4 }],
    });
  });

  describe("with a bot behind grammY's webhookCallback", () => {
    let token: string;
    let bot: Bot;
    let hookServer: Server;
    let hookUrl: string;

    beforeAll(async () => {
      token = newToken();
      bot = new Bot(token, { client: { apiRoot: telegram.apiRoot } });
      bot.on('message:text', (ctx) => ctx.reply(`via webhook: ${ctx.message.text}`));
      const handle = webhookCallback(bot, 'http', { secretToken: 'right_secret' });
      hookServer = createServer((req, res) => {
        handle(req, res).catch(() => {
          res.statusCode = 500;
          res.end();
        });
      });
      await new Promise<void>((resolve) => hookServer.listen(0, '127.0.0.1', resolve));
      hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/telegram`;
    });

    afterAll(async () => {
      await new Promise((resolve) => {
        hookServer.close(resolve);
        hookServer.closeAllConnections();
      });
    });

    it('when a webhook with a secret is set, then updates arrive with the secret header and the reply is recorded', async () => {
      await bot.api.setWebhook(hookUrl, { secret_token: 'right_secret' });
      telegram.sendUserMessage(token, { userId: 801, text: 'ping' });
      await telegram.waitForMessage(token, 801, 'via webhook: ping');
      // grammY replies before it answers the POST, so the delivery is recorded a moment after the reply.
      await telegram.waitFor(() => telegram.webhookDeliveries(token).length > 0);
      // grammY rejects a missing or wrong header with 401, so 200 proves the header was right.
      expect(telegram.webhookDeliveries(token)).toEqual([
        expect.objectContaining({ url: hookUrl, status: 200, attempt: 1, secretSent: true }),
      ]);
    });

    it('when getUpdates is called while the webhook is active, then it fails with 409', async () => {
      await bot.api.setWebhook(hookUrl, { secret_token: 'right_secret' });
      expect(await failureOf(bot.api.getUpdates())).toMatchObject({
        error_code: 409,
        description:
          "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
      });
    });

    it('when the webhook secret is wrong, then grammY answers 401 and the fake records every failed attempt', async () => {
      await bot.api.setWebhook(hookUrl, { secret_token: 'wrong_secret' });
      const lost = telegram.sendUserMessage(token, { userId: 802, text: 'lost' });
      const failures = await telegram.waitFor(() => {
        const rejected = telegram.webhookDeliveries(token).filter((d) => d.status === 401);
        return rejected.length === 3 && rejected;
      });
      expect(failures.map((d) => d.attempt)).toEqual([1, 2, 3]);
      expect(await bot.api.getWebhookInfo()).toMatchObject({
        url: hookUrl,
        last_error_message: 'Wrong response from the webhook: 401 Unauthorized',
      });
      expect(telegram.chat(token, 802).messages).toEqual([]);
      expect(telegram.chat(token, 802).userMessages).toEqual([lost]);
    });
  });

  it('when the server closes, then a pending long poll is answered with []', async () => {
    const own = await startFakeTelegram();
    const token = '42:close-test';
    own.addBot(token);
    // Far beyond the test's own timeout: [] can only come from close() answering the parked poll.
    const poll = new Api(token, { apiRoot: own.apiRoot }).getUpdates({ timeout: longPollSeconds });
    await own.waitFor(() => own.calls(token, 'getUpdates').length === 1);
    await own.close();
    expect(await poll).toEqual([]);
  });
});
