import type { InlineKeyboardMarkup, Message } from 'grammy/types';
import type { MethodContext } from './methods.js';
import {
  isRecord,
  optionalBool,
  optionalInt,
  optionalJson,
  optionalString,
  type Params,
  requiredInt,
} from './params.js';
import { checkPlacement, readInlineOnly, readReplyMarkup } from './reply-markup.js';
import { badRequest } from './responses.js';
import {
  type BotState,
  botAsUser,
  type ChatState,
  clone,
  liveMessage,
  requireChat,
  storeMessage,
} from './state.js';
import { plainText, textLength } from './text.js';

const maxTextLength = 4096;
/** Bots may delete messages younger than 48 hours, no older. */
const deleteWindowSeconds = 48 * 3600;

export const seconds = (ms: number) => Math.floor(ms / 1000);

export function sendMessage({ bot, params, now }: MethodContext): Message {
  const raw = optionalString(params, 'text') ?? '';
  if (!raw.trim()) throw badRequest('message text is empty');
  const chat = requireChat(bot, params);
  const text = plainText(params, raw);
  if (textLength(text) > maxTextLength) throw badRequest('message is too long');
  const markup = readReplyMarkup(params);
  if (markup.client) {
    checkPlacement(markup.client, {
      privateChat: chat.chat.type === 'private',
      canManageBots: bot.me.can_manage_bots === true,
    });
  }
  const replyTo = readReplyTarget(chat, params);
  const message = {
    message_id: chat.nextMessageId++,
    from: botAsUser(bot.me),
    chat: chat.chat,
    date: seconds(now()),
    text,
    ...(replyTo ? { reply_to_message: replyTo } : {}),
    ...(markup.inline ? { reply_markup: markup.inline } : {}),
  } as Message;
  storeMessage(chat, message, true);
  chat.sent.push(clone(message));
  if (markup.client) {
    chat.replyKeyboards.push({ messageId: message.message_id, markup: markup.client, at: now() });
  }
  return clone(message);
}

export function editMessageText({ bot, params, now }: MethodContext): Message {
  const raw = optionalString(params, 'text') ?? '';
  if (!raw.trim()) throw badRequest('message text is empty');
  const { chat, message } = editable(bot, params);
  const text = plainText(params, raw);
  if (textLength(text) > maxTextLength) throw badRequest('MESSAGE_TOO_LONG');
  if (!('text' in message)) throw badRequest('there is no text in the message to edit');
  const markup = readInlineOnly(params);
  const current = message as Message & { reply_markup?: InlineKeyboardMarkup };
  if (current.text === text && same(current.reply_markup, markup)) throw notModified();
  // Omitting reply_markup in an edit removes the keyboard, as on the real server.
  const edited = { ...current, text, edit_date: seconds(now()) } as Record<string, unknown>;
  if (markup) edited.reply_markup = markup;
  else delete edited.reply_markup;
  return recordEdit(chat, edited as unknown as Message, 'editMessageText', now());
}

export function editMessageReplyMarkup({ bot, params, now }: MethodContext): Message {
  const markup = readInlineOnly(params);
  const { chat, message } = editable(bot, params);
  const current = message as Message & { reply_markup?: InlineKeyboardMarkup };
  if (same(current.reply_markup, markup)) throw notModified();
  const edited = { ...current, edit_date: seconds(now()) } as Record<string, unknown>;
  if (markup) edited.reply_markup = markup;
  else delete edited.reply_markup;
  return recordEdit(chat, edited as unknown as Message, 'editMessageReplyMarkup', now());
}

export function deleteMessage({ bot, params, now }: MethodContext): true {
  const chat = requireChat(bot, params);
  const messageId = requiredInt(params, 'message_id', 'message identifier is not specified');
  deleteOne(bot, chat, messageId, now());
  return true;
}

/** Unlike deleteMessage, the plural form skips ids it can't find instead of failing. */
export function deleteMessages({ bot, params, now }: MethodContext): true {
  const chat = requireChat(bot, params);
  const ids = optionalJson(params, 'message_ids', "can't parse message identifiers JSON object");
  if (!Array.isArray(ids) || ids.length === 0) throw badRequest('message identifiers are not specified');
  if (ids.length > 100) throw badRequest('too many messages to delete');
  for (const id of ids) {
    if (typeof id === 'number' && liveMessage(chat, id)) deleteOne(bot, chat, id, now());
  }
  return true;
}

function deleteOne(bot: BotState, chat: ChatState, messageId: number, nowMs: number): void {
  const stored = liveMessage(chat, messageId);
  if (!stored) throw badRequest('message to delete not found');
  const refusal = bot.undeletable.get(`${chat.chat.id}/${messageId}`);
  if (refusal) throw badRequest(refusal);
  if (seconds(nowMs) - stored.message.date > deleteWindowSeconds) {
    throw badRequest("message can't be deleted for everyone");
  }
  stored.deleted = true;
  chat.deleted.push(messageId);
}

function editable(bot: BotState, params: Params) {
  if (optionalString(params, 'inline_message_id') !== undefined) {
    // The fake has no inline mode, so no inline message can exist.
    throw badRequest('message to edit not found');
  }
  const chat = requireChat(bot, params);
  const messageId = requiredInt(params, 'message_id', 'message identifier is not specified');
  const stored = liveMessage(chat, messageId);
  if (!stored) throw badRequest('message to edit not found');
  if (!stored.fromBot) throw badRequest("message can't be edited");
  // A message that came with a reply keyboard (or its removal, or force_reply) is never editable.
  if (chat.replyKeyboards.some((k) => k.messageId === messageId)) throw badRequest("message can't be edited");
  return { chat, message: stored.message };
}

function recordEdit(
  chat: ChatState,
  message: Message,
  method: 'editMessageText' | 'editMessageReplyMarkup',
  at: number,
) {
  const stored = chat.messages.get(message.message_id);
  if (stored) stored.message = message;
  const withMarkup = message as Message & { text?: string; reply_markup?: InlineKeyboardMarkup };
  chat.edits.push({
    messageId: message.message_id,
    method,
    text: withMarkup.text,
    replyMarkup: withMarkup.reply_markup ? clone(withMarkup.reply_markup) : undefined,
    at,
  });
  return clone(message);
}

const notModified = () =>
  badRequest(
    'message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message',
  );

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

function readReplyTarget(chat: ChatState, params: Params): Message | undefined {
  const parameters = optionalJson(params, 'reply_parameters', "can't parse reply parameters JSON object");
  let messageId = optionalInt(params, 'reply_to_message_id');
  let allowWithout = optionalBool(params, 'allow_sending_without_reply');
  if (isRecord(parameters)) {
    messageId = optionalInt(parameters, 'message_id');
    allowWithout = optionalBool(parameters, 'allow_sending_without_reply');
    if (parameters.chat_id !== undefined && String(parameters.chat_id) !== String(chat.chat.id)) {
      throw badRequest('message to be replied not found');
    }
  }
  if (messageId === undefined) return undefined;
  const target = liveMessage(chat, messageId);
  if (!target) {
    if (allowWithout) return undefined;
    throw badRequest('message to be replied not found');
  }
  // Telegram nests only one level deep.
  const { reply_to_message: _, ...flat } = target.message as Message & { reply_to_message?: unknown };
  return clone(flat) as Message;
}
