import { createServer, type Server } from 'node:http';
import { autoRetry } from '@grammyjs/auto-retry';
import { type RunnerHandle, run, sequentialize } from '@grammyjs/runner';
import {
  Api,
  Bot,
  type ChatTypeContext,
  type Composer,
  type Context,
  GrammyError,
  HttpError,
  InlineKeyboard,
  webhookCallback,
} from 'grammy';
import type { BotCommand, ReplyKeyboardMarkup, UserFromGetMe } from 'grammy/types';
import type { Caller, RoleOf } from '../core/caller.js';
import {
  type ChatAddress,
  ChatUnavailable,
  type CommandMenus,
  createReply,
  deletable,
  type Outbox,
  type OutgoingMessage,
  type Reply,
} from '../core/chat.js';
import type { ManagedBotReport, ManagedBots } from '../core/managed-bots.js';
import { looksSecret } from '../core/secret-kinds.js';
import type { Logger } from '../log.js';
import type { ChatAction, ChatMeter } from '../metrics.js';
import type { PollLease } from '../store/poll-lease.js';
import type { Dispatch } from './dispatch.js';
import { fitText } from './text.js';

const maxText = 4096;
const notDeleted = ' I could not delete it: delete it yourself now and rotate that secret.';

const countedMethods: Partial<Record<string, ChatAction>> = {
  sendMessage: 'sent',
  editMessageText: 'edited',
  deleteMessage: 'deleted',
};

/** The meter sees every attempt, each 429 included, so it sits innermost. */
function metered(api: Api, meter?: ChatMeter): Api {
  if (meter)
    api.config.use(async (prev, method, payload, signal) => {
      const result = await prev(method, payload, signal);
      const action = countedMethods[method];
      if (result.ok && action) meter.chatMessage('telegram', action);
      if (!result.ok && result.error_code === 429) meter.chatRateLimited('telegram');
      return result;
    });
  return api;
}

/** Chat handlers honour 429 retry_after and retry 5xx, but give up rather than stall for minutes. */
function withRetries(api: Api, meter?: ChatMeter): Api {
  metered(api, meter).config.use(autoRetry({ maxRetryAttempts: 3, maxDelaySeconds: 60 }));
  return api;
}

/**
 * The workers' client makes each call once: a job retries with its latest text after the platform's
 * retry_after (src/jobs/delivery.ts) instead of replaying a stale edit from inside the client.
 */
export function telegramApi(token: string, apiRoot: string, meter?: ChatMeter): Api {
  return metered(new Api(token, { apiRoot }), meter);
}

/** Rate limits, server errors and unreachable servers pass; anything else (a 400) will not. */
function unavailable(error: unknown): unknown {
  if (error instanceof GrammyError && (error.error_code === 429 || error.error_code >= 500)) {
    const retryAfter = error.parameters.retry_after;
    return new ChatUnavailable(
      `Telegram answered ${error.error_code}`,
      retryAfter === undefined ? undefined : retryAfter * 1000,
      { cause: error },
    );
  }
  if (error instanceof HttpError)
    return new ChatUnavailable('Telegram could not be reached', undefined, { cause: error });
  return error;
}

type Markup = InlineKeyboard | ReplyKeyboardMarkup;

function keyboard(message: OutgoingMessage): Markup | undefined {
  if (message.createBot) {
    const { label, suggestion } = message.createBot;
    return {
      keyboard: [
        [
          {
            text: label,
            // One request per message, so a fixed id is unique within it.
            request_managed_bot: {
              request_id: 1,
              suggested_name: suggestion.name,
              suggested_username: suggestion.username,
            },
          },
        ],
      ],
      one_time_keyboard: true,
      resize_keyboard: true,
    };
  }
  if (!message.buttons?.length) return undefined;
  const kb = new InlineKeyboard();
  for (const b of message.buttons) kb.text(b.label, b.command);
  return kb;
}

/** In a DM every message is already private, so `private` changes nothing here. */
export function telegramOutbox(api: Api): Outbox {
  return {
    async send(to, message, options) {
      const sent = await api
        .sendMessage(to.chatId, fitText(message.text, maxText), {
          reply_markup: keyboard(message),
          ...(options?.thread
            ? {
                reply_parameters: {
                  message_id: Number(options.thread.messageId),
                  allow_sending_without_reply: true,
                },
              }
            : {}),
          link_preview_options: { is_disabled: true },
        })
        .catch((error: unknown) => {
          throw unavailable(error);
        });
      return { platform: 'telegram', chatId: to.chatId, messageId: String(sent.message_id) };
    },
    async edit(ref, message) {
      try {
        // Only inline keyboards can be edited in; a reply keyboard stays with the message that sent it.
        const markup = keyboard(message);
        await api.editMessageText(ref.chatId, Number(ref.messageId), fitText(message.text, maxText), {
          reply_markup: markup instanceof InlineKeyboard ? markup : { inline_keyboard: [] },
        });
      } catch (error) {
        // Progress may repeat a state; Telegram refuses an identical edit, which is not a failure.
        if (error instanceof GrammyError && error.description.includes('message is not modified')) return;
        throw unavailable(error);
      }
    },
  };
}

export interface TelegramOptions {
  token: string;
  apiRoot: string;
  roleOf: RoleOf;
  dispatch: Dispatch;
  log: Logger;
  mode: 'polling' | 'webhook';
  webhook?: { url: string; secret: string; host: string; port: number };
  /**
   * How long a webhook request waits for its update (grammY's default, 10 s). Past it Telegram gets
   * its 200 and the update carries on; tests shorten it.
   */
  webhookTimeoutMs?: number;
  /** Skips getMe at start (tests that already know the bot). */
  botInfo?: UserFromGetMe;
  meter?: ChatMeter;
  /** True the first time an update id is seen; a repeat delivery is dropped. */
  firstDelivery?: (updateId: string) => Promise<boolean>;
  /** Telegram reported a managed bot of this caller: just created with the button, or a new token. */
  onManagedBot?: (event: ManagedBotEvent) => Promise<void>;
  /** The command menus: guests' as the default, members' per private chat. */
  menus?: { guest: BotCommand[]; member: BotCommand[] };
  /** Whose private chats get the member menu at start (members keep theirs across restarts anyway). */
  memberIds?: () => Promise<string[]>;
  /**
   * Polling mode: only the process holding this lease polls (Telegram answers 409 to all pollers but
   * one); the others wait and take over when it stops or dies. Without it this process just polls.
   */
  pollLease?: PollLease;
}

export interface ManagedBotEvent extends ManagedBotReport {
  caller: Promise<Caller>;
  reply: Reply;
}

export interface TelegramAdapter {
  bot: Bot;
  outbox: Outbox;
  menus: CommandMenus;
  /** Set at start when getMe says fleetbot's bot may manage bots (`can_manage_bots`). */
  managedBots(): ManagedBots | undefined;
  /** The port the webhook server listens on (useful when configured as 0). */
  webhookPort(): number | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createTelegramAdapter(options: TelegramOptions): TelegramAdapter {
  const { log } = options;
  const bot = new Bot(options.token, { client: { apiRoot: options.apiRoot }, botInfo: options.botInfo });
  withRetries(bot.api, options.meter);
  const outbox = telegramOutbox(bot.api);
  guardUpdates(bot, options);
  const dm = bot.chatType('private');
  listenForText(dm, outbox, options);
  listenForManagedBots(bot, dm, outbox, options);
  listenForOtherMessages(dm);
  listenForPresses(dm, outbox, options);
  listenInGroups(bot, log);
  bot.catch((err) => updateFailed(log, err.ctx.update.update_id, err.error));
  const menus = commandMenus(bot.api, options);
  const polling = createPolling(bot, log);

  let server: Server | undefined;
  let managedBots: ManagedBots | undefined;
  return {
    bot,
    outbox,
    menus,
    managedBots: () => managedBots,
    webhookPort: () => serverPort(server),
    async start() {
      await bot.init();
      if (bot.botInfo.can_manage_bots) managedBots = telegramManagedBots(bot.api);
      void refreshMenus(bot.api, menus, options).catch((err: unknown) =>
        log.warn({ err: String(err) }, 'command menus not set'),
      );
      if (options.mode === 'webhook' && options.webhook) {
        const { url, secret, host, port } = options.webhook;
        // Kept before it listens, so stop() closes it even when setWebhook below fails.
        const listening = webhookServer(bot, options.webhook, log, options.webhookTimeoutMs ?? 10_000);
        server = listening;
        await new Promise<void>((resolve) => listening.listen(port, host, resolve));
        await bot.api.setWebhook(url, { secret_token: secret });
        log.info({ mode: 'webhook', port: serverPort(listening) }, 'telegram listening');
      } else {
        await bot.api.deleteWebhook();
        if (options.pollLease) polling.whileLeased(options.pollLease);
        else polling.start();
      }
    },
    async stop() {
      if (server) {
        const s = server;
        await new Promise<void>((resolve) => s.close(() => resolve()));
        s.closeAllConnections();
      } else if (options.pollLease) {
        // Polling stops first, then the lease is released: another process takes over at once.
        const lease = options.pollLease;
        if (await lease.stop())
          log.info({ holder: lease.holder }, 'telegram polling stopped; lease released');
      } else {
        await polling.stop();
      }
    },
  };
}

type PrivateChats = Composer<ChatTypeContext<Context, 'private'>>;

function updateFailed(log: Logger, updateId: number, error: unknown): void {
  log.error({ update: updateId, err: error }, 'telegram update failed');
}

function personOf(ctx: Context): { userId: string; displayName: string } | undefined {
  const from = ctx.from;
  if (!from || from.is_bot) return undefined;
  return { userId: String(from.id), displayName: from.username ? `@${from.username}` : from.first_name };
}

// Invited members' roles live in Redis: the lookup goes to the dispatcher unresolved, so an outage
// is answered there. Made at the dispatch call, so a failed lookup never goes unhandled meanwhile.
async function callerOf(roleOf: RoleOf, who: { userId: string; displayName: string }): Promise<Caller> {
  return {
    platform: 'telegram',
    ...who,
    role: await roleOf({ platform: 'telegram', userId: who.userId }),
  };
}

function addressOf(ctx: Context): ChatAddress {
  return { platform: 'telegram', chatId: String(ctx.chat?.id), userId: String(ctx.from?.id) };
}

/** What runs before any handler: a logging boundary, duplicate delivery, and per-chat order. */
function guardUpdates(bot: Bot, options: TelegramOptions): void {
  const { log } = options;
  // grammY calls bot.catch for polled updates only: in webhook mode a failed update rejects the webhook
  // handler instead, and once the webhook was answered on timeout nothing awaits it any more. So every
  // update ends here, logged, whichever way it came.
  bot.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      updateFailed(log, ctx.update.update_id, error);
    }
  });
  // Each update has one effect: a second delivery of the same update_id is dropped before anything
  // runs. If the ids cannot be checked (Redis away), the update is handled: the dispatcher answers it.
  bot.use(async (ctx, next) => {
    const updateId = String(ctx.update.update_id);
    const first = options.firstDelivery ? await options.firstDelivery(updateId).catch(() => true) : true;
    if (!first) {
      log.info({ update: updateId }, 'duplicate update dropped');
      options.meter?.chatDuplicateDropped?.('telegram');
      return;
    }
    await next();
  });
  // Updates run concurrently (one member's slow live check must not hold up everyone else), but
  // in order within a chat: `/set` and the value that follows it must not overtake each other. A
  // managed bot's report has no chat; it belongs to its creator's private chat, whose id is theirs.
  bot.use(sequentialize((ctx) => (ctx.chat?.id ?? ctx.update.managed_bot?.user.id)?.toString()));
}

function listenForText(dm: PrivateChats, outbox: Outbox, options: TelegramOptions): void {
  // Edited messages count as new ones: editing a message to paste a secret must not bypass intake.
  dm.on(['message:text', 'edited_message:text'], async (ctx) => {
    const who = personOf(ctx);
    if (!who) return;
    const message = ctx.msg;
    const reply = createReply(outbox, addressOf(ctx));
    const original = deletable(() => ctx.api.deleteMessage(message.chat.id, message.message_id));
    if (message.forward_origin) {
      const secret = looksSecret(message.text) && (await original.delete());
      await reply.send(
        `I don't take forwarded messages: paste the value yourself, or use /set <kind>. Nothing was stored.${
          looksSecret(message.text)
            ? secret
              ? ' I deleted it because it looked like a secret.'
              : notDeleted
            : ''
        }`,
      );
      return;
    }
    await options.dispatch({
      caller: callerOf(options.roleOf, who),
      text: message.text,
      reply,
      original,
      updateId: String(ctx.update.update_id),
    });
  });
}

// A bot created with the one-tap button is reported twice, as an update and as a service message in
// the creator's chat; both go to one handler, which stores the token once.
function listenForManagedBots(bot: Bot, dm: PrivateChats, outbox: Outbox, options: TelegramOptions): void {
  const managedBot = async (
    report: ManagedBotEvent['report'],
    creator: { id: number; is_bot: boolean; username?: string; first_name: string },
    created: { id: number; username?: string },
  ) => {
    if (!options.onManagedBot || creator.is_bot) return;
    const who = {
      userId: String(creator.id),
      displayName: creator.username ? `@${creator.username}` : creator.first_name,
    };
    await options.onManagedBot({
      caller: callerOf(options.roleOf, who),
      bot: { botId: created.id, username: created.username ?? String(created.id) },
      report,
      reply: createReply(outbox, { platform: 'telegram', chatId: who.userId, userId: who.userId }),
    });
  };
  bot.on('managed_bot', (ctx) =>
    managedBot('updated', ctx.update.managed_bot.user, ctx.update.managed_bot.bot),
  );
  dm.on('message:managed_bot_created', (ctx) =>
    ctx.from ? managedBot('created', ctx.from, ctx.msg.managed_bot_created.bot) : undefined,
  );
}

function listenForOtherMessages(dm: PrivateChats): void {
  dm.on('message', async (ctx) => {
    // Media, stickers, contacts…: a caption can still hold a pasted secret.
    const caption = ctx.msg.caption ?? '';
    const deleted = looksSecret(caption) ? await deletable(() => ctx.deleteMessage()).delete() : undefined;
    await ctx.reply(
      `I only take secrets as plain text typed or pasted into a message. Nothing was stored.${
        deleted === undefined
          ? ''
          : deleted
            ? ' I deleted it because its caption looked like a secret.'
            : notDeleted
      }`,
    );
  });
}

function listenForPresses(dm: PrivateChats, outbox: Outbox, options: TelegramOptions): void {
  dm.on('callback_query:data', async (ctx) => {
    const who = personOf(ctx);
    await ctx.answerCallbackQuery();
    if (!who) return;
    const pressed = ctx.callbackQuery.message;
    await options.dispatch({
      caller: callerOf(options.roleOf, who),
      text: ctx.callbackQuery.data,
      reply: createReply(outbox, addressOf(ctx)),
      updateId: String(ctx.update.update_id),
      // The dispatcher takes the buttons away once the press is allowed, never before.
      ...(pressed && 'text' in pressed
        ? {
            pressed: {
              message: {
                platform: 'telegram',
                chatId: String(pressed.chat.id),
                messageId: String(pressed.message_id),
              },
              text: pressed.text ?? '',
              label: findLabel(pressed.reply_markup?.inline_keyboard, ctx.callbackQuery.data) ?? 'pressed',
            },
          }
        : {}),
    });
  });
}

function listenInGroups(bot: Bot, log: Logger): void {
  bot.chatType(['group', 'supergroup']).on(['message:text', 'edited_message:text'], async (ctx) => {
    const text = ctx.msg.text;
    if (looksSecret(text)) {
      // Never stored from a group: everyone there has seen it already.
      const deleted = await deletable(() => ctx.deleteMessage()).delete();
      log.warn({ user: ctx.from?.id, chat: ctx.chat.id, deleted }, 'secret-shaped message in a group');
      await ctx.reply(
        `That looked like a secret, so I did not store it${deleted ? ' and deleted it' : ''}. ` +
          `${deleted ? '' : 'Delete it yourself now. '}Everyone here may have seen it: rotate it, then send the new one to me in a private chat.`,
      );
      return;
    }
    if (text.startsWith('/')) await ctx.reply('I only take commands in a private chat. Open a DM with me.');
  });
}

function commandMenus(api: Api, options: TelegramOptions): CommandMenus {
  return {
    async member(userId) {
      if (options.menus)
        await api.setMyCommands(options.menus.member, {
          scope: { type: 'chat', chat_id: Number(userId) },
        });
    },
    async guest(userId) {
      await api.deleteMyCommands({ scope: { type: 'chat', chat_id: Number(userId) } });
    },
  };
}

/** Members keep their menu across restarts; setting them all again brings a changed list to everyone. */
async function refreshMenus(api: Api, menus: CommandMenus, options: TelegramOptions): Promise<void> {
  if (!options.menus) return;
  await api.setMyCommands(options.menus.guest);
  let failed = 0;
  // One by one: a member who never opened a chat with the bot has none to set a menu for yet.
  for (const userId of (await options.memberIds?.()) ?? []) await menus.member(userId).catch(() => failed++);
  if (failed > 0) options.log.info({ failed }, 'member menus not set for members without a chat yet');
}

/** Polling, by this process alone or by whichever process holds the poll lease. */
function createPolling(bot: Bot, log: Logger) {
  let runner: RunnerHandle | undefined;
  const start = (holder?: string) => {
    const polling = run(bot);
    runner = polling;
    log.info({ mode: 'polling', ...(holder ? { holder } : {}) }, 'telegram polling');
    void polling.task()?.catch((err: unknown) => log.error({ err }, 'telegram polling stopped'));
  };
  const stop = async () => {
    const polling = runner;
    runner = undefined;
    if (polling?.isRunning()) await polling.stop();
  };
  // Waits for the lease without holding up start: Slack and the other roles serve meanwhile.
  const whileLeased = (lease: PollLease) => {
    let waitedFor: string | undefined;
    lease.start({
      begin() {
        if (waitedFor !== undefined)
          log.info({ holder: lease.holder, from: waitedFor }, 'telegram polling taken over');
        waitedFor = undefined;
        start(lease.holder);
      },
      async end(why) {
        await stop();
        if (why !== 'released')
          log.warn({ holder: lease.holder, why }, 'telegram polling stopped: the lease is lost; waiting');
      },
      waiting(current) {
        waitedFor = current;
        log.info(
          { holder: lease.holder, poller: current },
          'telegram polling held by another process; waiting',
        );
      },
    });
  };
  return { start: () => start(), stop, whileLeased };
}

/** The server Telegram posts updates to; only the webhook's path is served. */
function webhookServer(
  bot: Bot,
  webhook: NonNullable<TelegramOptions['webhook']>,
  log: Logger,
  timeoutMs: number,
) {
  const path = new URL(webhook.url).pathname;
  // A slow update (auto-retry waiting out a 429, a slow live check, AWS retries) must not hold
  // Telegram's request: past the timeout Telegram is answered 200, so it neither redelivers nor
  // backs off, and the update runs on in the background; its failure is logged by the boundary above.
  const handle = webhookCallback(bot, 'http', {
    secretToken: webhook.secret,
    timeoutMilliseconds: timeoutMs,
    onTimeout: () => log.warn({ timeoutMs }, 'telegram webhook answered while its update runs on'),
  });
  return createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== path) {
      res.writeHead(404).end();
      return;
    }
    // Left unhandled, a rejection here would end the process and every role in it. What is left
    // to reject is the request itself (a body that is not JSON, a connection that broke).
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'telegram webhook request failed');
      if (!res.headersSent) res.writeHead(err instanceof SyntaxError ? 400 : 500).end();
    });
  });
}

/** The managed-bot methods of Bot API 9.6, through fleetbot's own bot. */
function telegramManagedBots(api: Api): ManagedBots {
  return {
    token: (botId) => api.getManagedBotToken(botId),
    replaceToken: (botId) => api.replaceManagedBotToken(botId),
    async restrictAccess(botId, addedUserIds) {
      await api.setManagedBotAccessSettings(botId, true, { added_user_ids: [...addedUserIds] });
    },
  };
}

function serverPort(server: Server | undefined): number | undefined {
  const address = server?.address();
  return typeof address === 'object' && address ? address.port : undefined;
}

function findLabel(
  rows: { text: string; callback_data?: string }[][] | undefined,
  data: string,
): string | undefined {
  return rows?.flat().find((b) => b.callback_data === data)?.text;
}
