import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Api, Bot, GrammyError, InlineKeyboard, webhookCallback } from 'grammy';
import type { Update } from 'grammy/types';
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

/** A webhook endpoint that keeps every body exactly as posted and answers 200. */
async function startHookRecorder() {
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString('utf8'));
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    bodies,
    updates: () => bodies.map((body) => JSON.parse(body) as Update),
    close: () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
  };
}

/** Telegram's token shape: the bot id, a colon, 35 characters of [A-Za-z0-9_-]. */
const tokenShape = /^\d+:[A-Za-z0-9_-]{35}$/;

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

  it('when the bot sends formatted text, then the fake refuses it with a 400 instead of storing markup unparsed', async () => {
    const token = newToken();
    const api = apiFor(token);
    telegram.sendUserMessage(token, { userId: 706, text: 'hi' });
    expect(await failureOf(api.sendMessage(706, '<b>Ready</b>', { parse_mode: 'HTML' }))).toMatchObject({
      error_code: 400,
      description: 'Bad Request: parse_mode is not supported by this test peer',
    });
    expect(
      await failureOf(api.sendMessage(706, 'Ready', { entities: [{ type: 'bold', offset: 0, length: 5 }] })),
    ).toMatchObject({
      error_code: 400,
      description: 'Bad Request: entities is not supported by this test peer',
    });
    expect(telegram.chat(token, 706).sent).toEqual([]);
    const plain = await api.sendMessage(706, '  Ready  ');
    expect(plain).toMatchObject({ text: 'Ready' });
    expect(plain).not.toHaveProperty('entities');
    expect(
      await failureOf(api.editMessageText(706, plain.message_id, '*Ready*', { parse_mode: 'MarkdownV2' })),
    ).toMatchObject({
      error_code: 400,
      description: 'Bad Request: parse_mode is not supported by this test peer',
    });
    expect(telegram.chat(token, 706).sent.map(textOf)).toEqual(['Ready']);
    expect(telegram.chat(token, 706).edits).toEqual([]);
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

  describe('managed bots (Bot API 9.6)', () => {
    const ann = { id: 0, is_bot: false, first_name: 'Ann' };
    const owner = (id: number) => ({ ...ann, id });

    /** A manager bot whose private chat with the user shows one request_managed_bot button. */
    async function managerWithButton(
      userId: number,
      request: { request_id: number; suggested_name?: string; suggested_username?: string },
    ) {
      const token = newToken({ can_manage_bots: true });
      telegram.sendUserMessage(token, { userId, text: '/newbot', firstName: 'Ann' });
      await apiFor(token).sendMessage(userId, 'Tap to create your bot', {
        reply_markup: {
          keyboard: [[{ text: 'Create bot', request_managed_bot: request }]],
          resize_keyboard: true,
          one_time_keyboard: true,
        },
      });
      return token;
    }

    it('when a bot is registered, then getMe reports can_manage_bots, false unless the test turns it on', async () => {
      expect((await apiFor(newToken()).getMe()).can_manage_bots).toBe(false);
      expect((await apiFor(newToken({ can_manage_bots: true })).getMe()).can_manage_bots).toBe(true);
      const token = newToken();
      expect(telegram.addBot(token, { can_manage_bots: true }).can_manage_bots).toBe(true);
      expect((await apiFor(token).getMe()).can_manage_bots).toBe(true);
    });

    it('when the bot sends a reply keyboard and then removes it, then neither comes back on the Message and the chat records both', async () => {
      const token = newToken();
      const api = apiFor(token);
      telegram.sendUserMessage(token, { userId: 901, text: 'hi' });
      const keyboard = {
        keyboard: [[{ text: 'Status' }, 'Help']],
        resize_keyboard: true,
        one_time_keyboard: true,
        is_persistent: false,
        input_field_placeholder: 'Pick one',
      };
      const shown = await api.sendMessage(901, 'menu', { reply_markup: keyboard });
      expect(shown).not.toHaveProperty('reply_markup');
      expect(telegram.chat(token, 901).replyKeyboard).toEqual(keyboard);
      // A message that came with a reply keyboard can't be edited, and an edit can't carry one.
      expect(await failureOf(api.editMessageText(901, shown.message_id, 'menu!'))).toMatchObject({
        error_code: 400,
        description: "Bad Request: message can't be edited",
      });
      const plain = await api.sendMessage(901, 'plain');
      expect(
        await failureOf(api.editMessageText(901, plain.message_id, 'x', { reply_markup: keyboard as never })),
      ).toMatchObject({ error_code: 400, description: 'Bad Request: inline keyboard expected' });
      const removed = await api.sendMessage(901, 'bye', { reply_markup: { remove_keyboard: true } });
      expect(removed).not.toHaveProperty('reply_markup');
      const chat = telegram.chat(token, 901);
      expect(chat.replyKeyboard).toBeUndefined();
      expect(chat.replyKeyboards.map((k) => [k.messageId, k.markup])).toEqual([
        [shown.message_id, keyboard],
        [removed.message_id, { remove_keyboard: true }],
      ]);
    });

    it('when a request_managed_bot button is malformed, comes from a bot that may not manage bots or goes to a group, then sendMessage fails with 400', async () => {
      const manager = newToken({ can_manage_bots: true });
      const plainBot = newToken();
      const api = apiFor(manager);
      telegram.sendUserMessage(manager, { userId: 902, text: 'hi' });
      telegram.sendUserMessage(plainBot, { userId: 902, text: 'hi' });
      telegram.sendUserMessage(manager, {
        userId: 902,
        chatId: -1_000_902,
        chatType: 'supergroup',
        text: 'hi all',
      });
      const markup = (request: Record<string, unknown>) =>
        ({ keyboard: [[{ text: 'Create', request_managed_bot: request }]] }) as never;
      const badNumber = `Bad Request: can't parse keyboard button: Field "request_id" must be a valid Number`;
      const cases: [Record<string, unknown>, string][] = [
        [{}, `Bad Request: can't parse keyboard button: Can't find field "request_id"`],
        [{ request_id: 1.5 }, badNumber],
        [{ request_id: 2 ** 31 }, badNumber],
        [{ request_id: 1, suggested_name: 'n'.repeat(65) }, 'Bad Request: suggested bot name is too long'],
        [{ request_id: 1, suggested_username: 'ops_helper' }, 'Bad Request: USERNAME_INVALID'],
        [{ request_id: 1, suggested_username: 'abot' }, 'Bad Request: USERNAME_INVALID'],
        [{ request_id: 1, suggested_username: 'ops-helper_bot' }, 'Bad Request: USERNAME_INVALID'],
        [{ request_id: 1, suggested_username: `${'x'.repeat(30)}bot` }, 'Bad Request: USERNAME_INVALID'],
      ];
      for (const [request, description] of cases) {
        expect(
          await failureOf(api.sendMessage(902, 'create', { reply_markup: markup(request) })),
        ).toMatchObject({
          error_code: 400,
          description,
        });
      }
      const request = {
        request_id: -(2 ** 31),
        suggested_name: 'n'.repeat(64),
        suggested_username: 'Ops_Helper_BOT',
      };
      expect(
        await failureOf(apiFor(plainBot).sendMessage(902, 'create', { reply_markup: markup(request) })),
      ).toMatchObject({
        error_code: 400,
        description: 'Bad Request: the bot is not allowed to manage other bots',
      });
      expect(
        await failureOf(api.sendMessage(-1_000_902, 'create', { reply_markup: markup(request) })),
      ).toMatchObject({
        error_code: 400,
        description: 'Bad Request: managed bots can be requested in private chats only',
      });
      expect(telegram.chat(manager, 902).sent).toEqual([]);
      await api.sendMessage(902, 'create', { reply_markup: markup(request) });
      expect(telegram.chat(manager, 902).replyKeyboard).toEqual({
        keyboard: [[{ text: 'Create', request_managed_bot: request }]],
      });
    });

    it('when the user creates a managed bot, then getUpdates brings managed_bot and then managed_bot_created, and the new token works', async () => {
      const manager = await managerWithButton(903, {
        request_id: 7,
        suggested_name: 'Ops Helper',
        suggested_username: 'ops_helper_903_bot',
      });
      const api = apiFor(manager);
      const [newbot] = await api.getUpdates();
      const offset = (newbot?.update_id ?? 0) + 1;
      // Far beyond the test's timeout: only the creation can answer this poll.
      const poll = api.getUpdates({ offset, timeout: longPollSeconds });
      await telegram.waitFor(() => telegram.calls(manager, 'getUpdates').length === 2);
      const created = telegram.createManagedBot(manager, { userId: 903 });
      expect(created.token).toMatch(tokenShape);
      expect(created).toEqual({
        botId: Number(created.token.split(':')[0]),
        token: created.token,
        username: 'ops_helper_903_bot',
      });
      const bot = {
        id: created.botId,
        is_bot: true,
        first_name: 'Ops Helper',
        username: 'ops_helper_903_bot',
      };
      expect(await poll).toEqual([
        { update_id: offset, managed_bot: { user: owner(903), bot } },
        {
          update_id: offset + 1,
          message: {
            // After the user's /newbot (1) and the bot's keyboard (2).
            message_id: 3,
            from: owner(903),
            chat: { id: 903, type: 'private', first_name: 'Ann' },
            date: expect.any(Number),
            managed_bot_created: { bot },
          },
        },
      ]);
      expect(await apiFor(created.token).getMe()).toMatchObject({ ...bot, can_manage_bots: false });
      expect(telegram.managedBots(manager)).toEqual([
        {
          botId: created.botId,
          ownerId: 903,
          username: 'ops_helper_903_bot',
          token: created.token,
          revokedTokens: [],
          access: { isAccessRestricted: false, addedUserIds: [] },
        },
      ]);
    });

    it('when the manager is behind a webhook, then both managed-bot updates are posted to it in order', async () => {
      const manager = newToken({ can_manage_bots: true });
      telegram.sendUserMessage(manager, { userId: 904, text: '/newbot', firstName: 'Ann' });
      await apiFor(manager).sendMessage(904, 'Pick one', {
        reply_markup: {
          keyboard: [
            [
              { text: 'A', request_managed_bot: { request_id: 1, suggested_username: 'first_904_bot' } },
              {
                text: 'B',
                request_managed_bot: {
                  request_id: 2,
                  suggested_name: 'Second',
                  suggested_username: 'second_904_bot',
                },
              },
            ],
          ],
        },
      });
      const hook = await startHookRecorder();
      try {
        await apiFor(manager).setWebhook(hook.url);
        await telegram.waitFor(() => hook.bodies.length === 1);
        // The user taps the second button and renames the bot in the dialog.
        const created = telegram.createManagedBot(manager, { userId: 904, requestId: 2, name: 'Renamed' });
        await telegram.waitFor(() => hook.bodies.length === 3);
        const [first, managed, service] = hook.updates();
        const bot = { id: created.botId, is_bot: true, first_name: 'Renamed', username: 'second_904_bot' };
        expect(managed).toEqual({
          update_id: (first?.update_id ?? 0) + 1,
          managed_bot: { user: owner(904), bot },
        });
        expect(service).toMatchObject({
          update_id: (first?.update_id ?? 0) + 2,
          message: { from: owner(904), chat: { id: 904 }, managed_bot_created: { bot } },
        });
      } finally {
        await apiFor(manager).deleteWebhook();
        await hook.close();
      }
    });

    it('when no button can be tapped, the request_id does not match or the username is taken, then createManagedBot throws and creates nothing', async () => {
      const manager = newToken({ can_manage_bots: true });
      const api = apiFor(manager);
      expect(() => telegram.createManagedBot(manager, { userId: 905 })).toThrow(
        'fake telegram: the bot has no private chat with user 905',
      );
      telegram.sendUserMessage(manager, { userId: 905, text: '/newbot' });
      await api.sendMessage(905, 'no buttons yet');
      expect(() => telegram.createManagedBot(manager, { userId: 905 })).toThrow(
        'fake telegram: no bot message in the private chat with user 905 has a request_managed_bot button',
      );
      await api.sendMessage(905, 'Tap', {
        reply_markup: { keyboard: [[{ text: 'Create', request_managed_bot: { request_id: 5 } }]] },
      });
      expect(() => telegram.createManagedBot(manager, { userId: 905, requestId: 6 })).toThrow(
        /has no request_managed_bot button with request_id 6; it has 5$/,
      );
      expect(() => telegram.createManagedBot(manager, { userId: 905, username: 'not_a_b0t' })).toThrow(
        /"not_a_b0t" is not a bot username/,
      );
      const first = telegram.createManagedBot(manager, { userId: 905, username: 'taken_905_bot' });
      expect(() => telegram.createManagedBot(manager, { userId: 905, username: 'Taken_905_Bot' })).toThrow(
        'fake telegram: the username @Taken_905_Bot is already taken',
      );
      const removal = await api.sendMessage(905, 'Done', { reply_markup: { remove_keyboard: true } });
      expect(() => telegram.createManagedBot(manager, { userId: 905, requestId: 5 })).toThrow(
        `message ${removal.message_id} in the private chat with user 905 replaced the keyboard`,
      );
      expect(telegram.managedBots(manager).map((m) => m.botId)).toEqual([first.botId]);
      // Without a suggestion, the bot is named after its username.
      expect(await apiFor(first.token).getMe()).toMatchObject({
        first_name: 'taken_905_bot',
        username: 'taken_905_bot',
      });
    });

    it('when the manager replaces a managed bot token, then the old token answers 401, the new one works and a managed_bot update follows', async () => {
      const manager = await managerWithButton(906, { request_id: 1, suggested_username: 'rotate_906_bot' });
      const created = telegram.createManagedBot(manager, { userId: 906 });
      const api = apiFor(manager);
      expect(await api.getManagedBotToken(created.botId)).toBe(created.token);
      const fresh = await api.replaceManagedBotToken(created.botId);
      expect(fresh).toMatch(tokenShape);
      expect(fresh).not.toBe(created.token);
      expect(fresh.split(':')[0]).toBe(String(created.botId));
      expect(await api.getManagedBotToken(created.botId)).toBe(fresh);
      expect(await failureOf(apiFor(created.token).getMe())).toMatchObject({
        error_code: 401,
        description: 'Unauthorized',
      });
      expect((await apiFor(fresh).getMe()).id).toBe(created.botId);
      const bot = {
        id: created.botId,
        is_bot: true,
        first_name: 'rotate_906_bot',
        username: 'rotate_906_bot',
      };
      const updates = await api.getUpdates();
      // Creation, then the token change: both ManagedBotUpdated, with the creator as `user`.
      expect(updates.flatMap((u) => (u.managed_bot ? [u.managed_bot] : []))).toEqual([
        { user: owner(906), bot },
        { user: owner(906), bot },
      ]);
      expect(updates.at(-1)?.managed_bot).toBeDefined();
      expect(telegram.managedBots(manager)).toEqual([
        expect.objectContaining({ botId: created.botId, token: fresh, revokedTokens: [created.token] }),
      ]);

      const notFound = { error_code: 400, description: 'Bad Request: bot not found' };
      const stranger = apiFor(newToken({ can_manage_bots: true }));
      expect(await failureOf(stranger.getManagedBotToken(created.botId))).toMatchObject(notFound);
      expect(await failureOf(stranger.replaceManagedBotToken(created.botId))).toMatchObject(notFound);
      // A managed bot does not manage itself.
      expect(await failureOf(apiFor(fresh).getManagedBotToken(created.botId))).toMatchObject(notFound);
      expect(await failureOf(api.getManagedBotToken(999))).toMatchObject(notFound);
      expect(await failureOf(api.replaceManagedBotToken(0))).toMatchObject({
        error_code: 400,
        description: 'Bad Request: invalid user_id specified',
      });
      expect(await api.getManagedBotToken(created.botId)).toBe(fresh);
    });

    it('when the manager restricts access to a managed bot, then the added users come back as Users and more than 10 fail', async () => {
      const manager = await managerWithButton(907, { request_id: 1, suggested_username: 'access_907_bot' });
      telegram.sendUserMessage(manager, { userId: 908, text: 'hi', firstName: 'Bea', username: 'bea' });
      const { botId } = telegram.createManagedBot(manager, { userId: 907 });
      const api = apiFor(manager);
      expect(await api.getManagedBotAccessSettings(botId)).toEqual({ is_access_restricted: false });
      expect(await api.setManagedBotAccessSettings(botId, true, { added_user_ids: [908, 909, 908] })).toBe(
        true,
      );
      expect(await api.getManagedBotAccessSettings(botId)).toEqual({
        is_access_restricted: true,
        added_users: [
          { id: 908, is_bot: false, first_name: 'Bea', username: 'bea' },
          { id: 909, is_bot: false, first_name: 'User 909' },
        ],
      });
      const eleven = Array.from({ length: 11 }, (_, i) => 1000 + i);
      expect(
        await failureOf(api.setManagedBotAccessSettings(botId, true, { added_user_ids: eleven })),
      ).toMatchObject({ error_code: 400, description: 'Bad Request: too many users specified' });
      expect(telegram.managedBots(manager)[0]?.access).toEqual({
        isAccessRestricted: true,
        addedUserIds: [908, 909],
      });
      // Without the restriction the list is ignored, even one too long.
      expect(await api.setManagedBotAccessSettings(botId, false, { added_user_ids: eleven })).toBe(true);
      expect(await api.getManagedBotAccessSettings(botId)).toEqual({ is_access_restricted: false });
      expect(telegram.managedBots(manager)[0]?.access).toEqual({
        isAccessRestricted: false,
        addedUserIds: [],
      });

      const stranger = apiFor(newToken({ can_manage_bots: true }));
      const notFound = { error_code: 400, description: 'Bad Request: bot not found' };
      expect(await failureOf(stranger.getManagedBotAccessSettings(botId))).toMatchObject(notFound);
      expect(await failureOf(stranger.setManagedBotAccessSettings(botId, true))).toMatchObject(notFound);
    });
  });

  describe('command menus', () => {
    it('when commands are set per scope and language, then getMyCommands returns exactly that list and deleteMyCommands removes only it', async () => {
      const token = newToken();
      const api = apiFor(token);
      telegram.sendUserMessage(token, { userId: 910, text: 'hi' });
      const everyone = [{ command: 'status', description: 'Fleet status' }];
      const german = [{ command: 'status', description: 'Flottenstatus' }];
      const chat910 = [{ command: 'launch', description: 'Launch an instance' }, ...everyone];
      // Trimmed and without the slash, as Telegram stores them.
      expect(await api.setMyCommands([{ command: ' /status ', description: ' Fleet status ' }])).toBe(true);
      expect(await api.setMyCommands(german, { language_code: 'de' })).toBe(true);
      expect(await api.setMyCommands(chat910, { scope: { type: 'chat', chat_id: 910 } })).toBe(true);
      expect(await api.getMyCommands()).toEqual(everyone);
      expect(await api.getMyCommands({ scope: { type: 'default' } })).toEqual(everyone);
      expect(await api.getMyCommands({ language_code: 'de' })).toEqual(german);
      expect(await api.getMyCommands({ scope: { type: 'chat', chat_id: 910 } })).toEqual(chat910);
      expect(await api.getMyCommands({ scope: { type: 'all_private_chats' } })).toEqual([]);
      expect(telegram.commandsFor(token)).toEqual(everyone);
      expect(telegram.commandsFor(token, { type: 'chat', chat_id: 910 })).toEqual(chat910);
      expect(telegram.commandsFor(token, undefined, 'de')).toEqual(german);

      expect(await api.deleteMyCommands({ language_code: 'de' })).toBe(true);
      expect(await api.getMyCommands({ language_code: 'de' })).toEqual([]);
      expect(await api.getMyCommands()).toEqual(everyone);
      // An empty list resets its scope, as it did before deleteMyCommands existed.
      expect(await api.setMyCommands([], { scope: { type: 'chat', chat_id: 910 } })).toBe(true);
      expect(telegram.commandsFor(token, { type: 'chat', chat_id: 910 })).toEqual([]);
      const hundred = Array.from({ length: 100 }, (_, i) => ({ command: `c${i}`, description: 'x' }));
      expect(await api.setMyCommands(hundred, { scope: { type: 'all_group_chats' } })).toBe(true);
      expect(telegram.commandsFor(token, { type: 'all_group_chats' })).toHaveLength(100);
    });

    it("when commands, scope or language are invalid, then set/get/deleteMyCommands fail with Telegram's 400s and nothing is stored", async () => {
      const token = newToken();
      const api = apiFor(token);
      telegram.sendUserMessage(token, { userId: 911, text: 'hi' });
      const go = { command: 'go', description: 'Go' };
      const hundredOne = Array.from({ length: 101 }, (_, i) => ({ command: `c${i}`, description: 'x' }));
      const cases: [() => Promise<unknown>, string][] = [
        [() => api.setMyCommands([{ command: 'Start', description: 'Go' }]), 'BOT_COMMAND_INVALID'],
        [() => api.setMyCommands([{ command: 'do-it', description: 'Go' }]), 'BOT_COMMAND_INVALID'],
        [
          () => api.setMyCommands([{ command: 'c'.repeat(33), description: 'Go' }]),
          'command length must not exceed 32',
        ],
        [() => api.setMyCommands([{ command: '/', description: 'Go' }]), 'command must be non-empty'],
        [
          () => api.setMyCommands([{ command: 'go', description: ' ' }]),
          'command description must be non-empty',
        ],
        [
          () => api.setMyCommands([{ command: 'go', description: 'd'.repeat(257) }]),
          'command description length must not exceed 256',
        ],
        [
          () => api.setMyCommands([{ command: 'go' } as never]),
          `can't parse BotCommand: Can't find field "description"`,
        ],
        [() => api.setMyCommands(hundredOne), 'BOT_COMMANDS_TOO_MUCH'],
        [
          () => api.setMyCommands([go], { language_code: 'english' as never }),
          'invalid language code specified',
        ],
        [
          () => api.setMyCommands([go], { scope: { type: 'everyone' } as never }),
          "can't parse BotCommandScope: Unsupported type specified",
        ],
        [
          () => api.getMyCommands({ scope: { type: 'chat' } as never }),
          `can't parse BotCommandScope: Can't find field "chat_id"`,
        ],
        [
          () => api.getMyCommands({ scope: { type: 'chat_member', chat_id: 911, user_id: 0 } }),
          "can't parse BotCommandScope: Invalid user_id specified",
        ],
        [() => api.deleteMyCommands({ scope: { type: 'chat', chat_id: 999_999 } }), 'chat not found'],
        [
          () => api.deleteMyCommands({ scope: { type: 'chat_administrators', chat_id: 911 } }),
          "can't use specified scope in private chats",
        ],
      ];
      for (const [call, description] of cases) {
        expect(await failureOf(call())).toMatchObject({
          error_code: 400,
          description: `Bad Request: ${description}`,
        });
      }
      expect(telegram.commandsFor(token)).toEqual([]);
      expect(telegram.calls(token, 'setMyCommands').every((c) => c.response?.ok === false)).toBe(true);
    });

    it("when a chat opens the menu, then it shows the narrowest scope set, in the user's language first", async () => {
      const token = newToken();
      const api = apiFor(token);
      telegram.sendUserMessage(token, { userId: 912, text: 'hi', languageCode: 'de-AT' });
      telegram.sendUserMessage(token, { userId: 913, text: 'hi', languageCode: 'en' });
      telegram.sendUserMessage(token, { userId: 912, chatId: -1_000_912, chatType: 'group', text: 'hi all' });
      const fallback = [{ command: 'help', description: 'Help' }];
      const fallbackDe = [{ command: 'help', description: 'Hilfe' }];
      const privates = [{ command: 'start', description: 'Start' }];
      const only913 = [{ command: 'admin', description: 'Admin tools' }];
      expect(telegram.menuFor(token, 912)).toEqual([]);
      await api.setMyCommands(fallback);
      expect(telegram.menuFor(token, 912)).toEqual(fallback);
      await api.setMyCommands(fallbackDe, { language_code: 'de' });
      expect(telegram.menuFor(token, 912)).toEqual(fallbackDe);
      expect(telegram.menuFor(token, 913)).toEqual(fallback);
      await api.setMyCommands(privates, { scope: { type: 'all_private_chats' } });
      expect(telegram.menuFor(token, 912)).toEqual(privates);
      await api.setMyCommands(only913, { scope: { type: 'chat', chat_id: 913 } });
      expect(telegram.menuFor(token, 913)).toEqual(only913);
      expect(telegram.menuFor(token, 912)).toEqual(privates);
      // A group skips the private scopes; its viewer's language still counts.
      expect(telegram.menuFor(token, -1_000_912)).toEqual(fallback);
      expect(telegram.menuFor(token, -1_000_912, { userId: 912 })).toEqual(fallbackDe);
      expect(() => telegram.menuFor(token, 404)).toThrow('fake telegram: the bot has no chat 404');
    });
  });

  describe('duplicate delivery', () => {
    it('when an update is redelivered to a long-polling bot, then the next getUpdates carries it again, identical, once', async () => {
      const token = newToken();
      const api = apiFor(token);
      const sent = telegram.sendUserMessage(token, { userId: 914, text: 'deploy' });
      const [original] = await api.getUpdates();
      expect(original).toEqual({ update_id: 1, message: sent });
      expect(await api.getUpdates({ offset: 2 })).toEqual([]);
      // Far beyond the test's timeout: only the redelivery can answer this poll.
      const poll = api.getUpdates({ offset: 2, timeout: longPollSeconds });
      await telegram.waitFor(() => telegram.calls(token, 'getUpdates').length === 3);
      expect(telegram.redeliver(token, 1)).toEqual(original);
      expect(await poll).toEqual([original]);
      expect(await api.getUpdates({ offset: 2 })).toEqual([]);
      expect(() => telegram.redeliver(token, 2)).toThrow(
        'fake telegram: update 2 was never created for this bot',
      );
    });

    it('when an update is redelivered ahead of newer ones, then it comes first and the newer ones follow', async () => {
      const token = newToken();
      const api = apiFor(token);
      telegram.sendUserMessage(token, { userId: 916, text: 'one' });
      await api.getUpdates();
      await api.getUpdates({ offset: 2 });
      telegram.sendUserMessage(token, { userId: 916, text: 'two' });
      telegram.redeliver(token, 1);
      expect((await api.getUpdates({ offset: 2 })).map((u) => [u.update_id, u.message?.text])).toEqual([
        [1, 'one'],
        [2, 'two'],
      ]);
      expect((await api.getUpdates({ offset: 2 })).map((u) => u.update_id)).toEqual([2]);
    });

    it('when an update is redelivered to a webhook, then it is posted again with a byte-identical body', async () => {
      const token = newToken();
      const hook = await startHookRecorder();
      try {
        await apiFor(token).setWebhook(hook.url);
        const sent = telegram.sendUserMessage(token, { userId: 915, text: 'deploy' });
        await telegram.waitFor(() => telegram.webhookDeliveries(token).length === 1);
        expect(telegram.redeliver(token, 1)).toEqual({ update_id: 1, message: sent });
        await telegram.waitFor(() => telegram.webhookDeliveries(token).length === 2);
        expect(hook.bodies).toHaveLength(2);
        expect(hook.bodies[1]).toBe(hook.bodies[0]);
        expect(hook.updates()[0]).toEqual({ update_id: 1, message: sent });
        expect(telegram.webhookDeliveries(token).map((d) => [d.updateId, d.attempt, d.status])).toEqual([
          [1, 1, 200],
          [1, 1, 200],
        ]);
        expect(() => telegram.redeliver(token, 7)).toThrow(
          'fake telegram: update 7 was never created for this bot',
        );
      } finally {
        await apiFor(token).deleteWebhook();
        await hook.close();
      }
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
