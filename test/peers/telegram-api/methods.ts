import type { ChatFullInfo, Update, WebhookInfo } from 'grammy/types';
import { commandMethods } from './commands-menu.js';
import type { BotDirectory } from './directory.js';
import { managedBotMethods } from './managed-bots.js';
import {
  deleteMessage,
  deleteMessages,
  editMessageReplyMarkup,
  editMessageText,
  sendMessage,
} from './message-methods.js';
import { clamp, optionalBool, optionalInt, optionalJson, optionalString, type Params } from './params.js';
import { badRequest, conflict, Described } from './responses.js';
import { type BotState, clone, requireChat } from './state.js';
import type { NewUpdate } from './updates.js';

export interface MethodContext {
  bot: BotState;
  params: Params;
  /** Aborts when the client goes away or the fake closes. */
  signal: AbortSignal;
  now(): number;
  /** Lets the webhook pump notice a new, changed or removed webhook. */
  webhookChanged(bot: BotState): void;
  /** Queues an update for a bot (getUpdates or its webhook); undefined when allowed_updates filters it. */
  publish(bot: BotState, update: NewUpdate): Update | undefined;
  /** Every bot by token, for methods that create bots or change their tokens. */
  directory: BotDirectory;
}

export type MethodHandler = (ctx: MethodContext) => unknown;

/** The real server's ceiling for a long poll. */
const maxPollSeconds = 50;
const chatActions = [
  'typing',
  'upload_photo',
  'record_video',
  'upload_video',
  'record_voice',
  'upload_voice',
  'upload_document',
  'choose_sticker',
  'find_location',
  'record_video_note',
  'upload_video_note',
];

async function getUpdates({ bot, params, signal }: MethodContext) {
  if (bot.webhook) {
    throw conflict(
      "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
    );
  }
  const limit = clamp(optionalInt(params, 'limit') ?? 100, 1, 100);
  const timeout = clamp(optionalInt(params, 'timeout') ?? 0, 0, maxPollSeconds);
  setAllowedUpdates(bot, params);
  bot.queue.confirm(optionalInt(params, 'offset') ?? 0);
  // Like the real server, the newest getUpdates wins and the older one is told why it lost.
  bot.poll?.abort('terminated');
  if (bot.queue.size === 0 && timeout > 0) {
    const poll = new AbortController();
    bot.poll = poll;
    try {
      await bot.queue.waitForAny(timeout * 1000, AbortSignal.any([signal, poll.signal]));
    } finally {
      if (bot.poll === poll) bot.poll = undefined;
    }
    if (poll.signal.reason === 'terminated') {
      throw conflict(
        'terminated by other getUpdates request; make sure that only one bot instance is running',
      );
    }
  }
  if (bot.webhook) return [];
  const batch = bot.queue.take(limit);
  // A replayed update goes out once, below the confirmed offset or not.
  bot.queue.handedOut(batch);
  return clone(batch);
}

function setAllowedUpdates(bot: BotState, params: Params): void {
  const allowed = optionalJson(params, 'allowed_updates', "can't parse allowed updates JSON array");
  if (allowed === undefined) return;
  if (!Array.isArray(allowed)) throw badRequest('allowed updates must be an Array');
  bot.allowedUpdates = allowed.map(String);
}

function setWebhook(ctx: MethodContext) {
  const { bot, params } = ctx;
  const url = optionalString(params, 'url') ?? '';
  if (!url) return removeWebhook(ctx);
  // Real Telegram insists on HTTPS; tests serve plain HTTP on localhost, so only the shape is checked.
  if (!/^https?:$/.test(URL.canParse(url) ? new URL(url).protocol : '')) {
    throw badRequest('bad webhook: invalid webhook URL specified');
  }
  const secretToken = optionalString(params, 'secret_token');
  if (secretToken !== undefined && !/^[A-Za-z0-9_-]{1,256}$/.test(secretToken)) {
    throw badRequest('secret token contains unallowed characters');
  }
  const maxConnections = clamp(optionalInt(params, 'max_connections') ?? 40, 1, 100);
  setAllowedUpdates(bot, params);
  if (optionalBool(params, 'drop_pending_updates')) bot.queue.clear();
  const unchanged = bot.webhook?.url === url && bot.webhook.secretToken === secretToken;
  bot.webhook = { url, maxConnections, ...(secretToken !== undefined ? { secretToken } : {}) };
  bot.webhookError = undefined;
  bot.poll?.abort('webhook');
  ctx.webhookChanged(bot);
  return new Described(true, unchanged ? 'Webhook is already set' : 'Webhook was set');
}

function removeWebhook({ bot, params, webhookChanged }: MethodContext) {
  const had = bot.webhook !== undefined;
  if (optionalBool(params, 'drop_pending_updates')) bot.queue.clear();
  bot.webhook = undefined;
  bot.webhookError = undefined;
  webhookChanged(bot);
  return new Described(true, had ? 'Webhook was deleted' : 'Webhook is already deleted');
}

function getWebhookInfo({ bot }: MethodContext): WebhookInfo {
  return {
    url: bot.webhook?.url ?? '',
    has_custom_certificate: false,
    pending_update_count: bot.queue.size,
    ...(bot.webhook ? { max_connections: bot.webhook.maxConnections, ip_address: '127.0.0.1' } : {}),
    ...(bot.webhook && bot.allowedUpdates?.length
      ? { allowed_updates: bot.allowedUpdates as WebhookInfo['allowed_updates'] }
      : {}),
    ...(bot.webhookError
      ? { last_error_date: bot.webhookError.date, last_error_message: bot.webhookError.message }
      : {}),
  };
}

function answerCallbackQuery({ bot, params, now }: MethodContext): true {
  const id = optionalString(params, 'callback_query_id') ?? '';
  const query = bot.callbackQueries.get(id);
  if (!query || query.answered) {
    throw badRequest('query is too old and response timeout expired or query ID is invalid');
  }
  query.answered = true;
  const text = optionalString(params, 'text');
  const url = optionalString(params, 'url');
  const cacheTime = optionalInt(params, 'cache_time');
  bot.callbackAnswers.push({
    callbackQueryId: id,
    showAlert: optionalBool(params, 'show_alert'),
    at: now(),
    ...(text !== undefined ? { text } : {}),
    ...(url !== undefined ? { url } : {}),
    ...(cacheTime !== undefined ? { cacheTime } : {}),
  });
  return true;
}

function sendChatAction({ bot, params, now }: MethodContext): true {
  const chat = requireChat(bot, params);
  const action = optionalString(params, 'action') ?? '';
  if (!chatActions.includes(action)) throw badRequest('wrong parameter action in request');
  chat.actions.push({ action, at: now() });
  return true;
}

function getChat({ bot, params }: MethodContext): ChatFullInfo {
  const { chat } = requireChat(bot, params);
  return {
    ...clone(chat),
    accent_color_id: 0,
    max_reaction_count: 11,
    accepted_gift_types: {
      unlimited_gifts: false,
      limited_gifts: false,
      unique_gifts: false,
      premium_subscription: false,
    },
  } as ChatFullInfo;
}

/** Method names are case-insensitive in the Bot API, hence the lower-case keys. */
export const methods: ReadonlyMap<string, MethodHandler> = new Map<string, MethodHandler>([
  ['getme', ({ bot }) => clone(bot.me)],
  ['getupdates', getUpdates],
  ['setwebhook', setWebhook],
  ['deletewebhook', removeWebhook],
  ['getwebhookinfo', getWebhookInfo],
  ['sendmessage', sendMessage],
  ['editmessagetext', editMessageText],
  ['editmessagereplymarkup', editMessageReplyMarkup],
  ['deletemessage', deleteMessage],
  ['deletemessages', deleteMessages],
  ['answercallbackquery', answerCallbackQuery],
  ['sendchataction', sendChatAction],
  ['getchat', getChat],
  ...commandMethods,
  ...managedBotMethods,
]);
