import type {
  ForceReply,
  InlineKeyboardMarkup,
  KeyboardButton,
  KeyboardButtonRequestManagedBot,
  ReplyKeyboardMarkup,
  ReplyKeyboardRemove,
} from 'grammy/types';
import { isRecord, optionalJson, type Params } from './params.js';
import { badRequest } from './responses.js';
import { textLength } from './text.js';

/**
 * `reply_markup` as the Bot API reads it. An inline keyboard travels with the message; a reply keyboard,
 * its removal and force_reply stay with the client and never come back in `Message.reply_markup`, so the
 * fake records them beside the message instead (ChatView.replyKeyboards).
 */
export type ClientMarkup = ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply;

export interface ReplyMarkup {
  inline?: InlineKeyboardMarkup;
  client?: ClientMarkup;
}

/** Where the markup is going; some buttons need a private chat or a bot allowed to manage bots. */
export interface MarkupPlacement {
  privateChat: boolean;
  canManageBots: boolean;
}

const maxCallbackDataBytes = 64;
const inlineActions = [
  'url',
  'callback_data',
  'web_app',
  'login_url',
  'switch_inline_query',
  'switch_inline_query_current_chat',
  'switch_inline_query_chosen_chat',
  'copy_text',
  'callback_game',
  'pay',
];
/** TDLib's refusal for each request button outside a private chat. */
const privateOnly: Record<string, string> = {
  request_contact: 'phone number can be requested in private chats only',
  request_location: 'location can be requested in private chats only',
  request_poll: 'poll can be requested in private chats only',
  web_app: 'Web App buttons can be used in private chats only',
  request_users: 'users can be requested in private chats only',
  request_chat: 'chats can be requested in private chats only',
  request_managed_bot: 'managed bots can be requested in private chats only',
};
const minInt32 = -(2 ** 31);
const maxInt32 = 2 ** 31 - 1;
const maxBotNameLength = 64;

/**
 * Parses the shape, as the Bot API does before anything else. Like the real server, a non-empty
 * `keyboard` wins over `inline_keyboard`, which wins over `remove_keyboard`, then `force_reply`.
 */
export function readReplyMarkup(params: Params): ReplyMarkup {
  const markup = optionalJson(params, 'reply_markup', "can't parse reply keyboard markup JSON object");
  if (markup === undefined) return {};
  if (!isRecord(markup)) throw badRequest('object expected as reply markup');
  const keyboard = 'keyboard' in markup ? readKeyboard(markup) : undefined;
  if (keyboard) return { client: keyboard };
  const inline = 'inline_keyboard' in markup ? readInlineKeyboard(markup) : undefined;
  if (inline) return { inline };
  const selective = markup.selective === true ? { selective: true } : {};
  if (markup.remove_keyboard === true) return { client: { remove_keyboard: true, ...selective } };
  if (markup.force_reply === true) {
    const placeholder = optionalField(markup, 'input_field_placeholder', 'string');
    return {
      client: {
        force_reply: true,
        ...(placeholder !== undefined ? { input_field_placeholder: placeholder as string } : {}),
        ...selective,
      },
    };
  }
  return {};
}

/** Edits take an inline keyboard or nothing. */
export function readInlineOnly(params: Params): InlineKeyboardMarkup | undefined {
  const { inline, client } = readReplyMarkup(params);
  if (client) throw badRequest('inline keyboard expected');
  return inline;
}

/** What the server checks once it knows the chat: request buttons and their managed-bot suggestions. */
export function checkPlacement(markup: ClientMarkup, where: MarkupPlacement): void {
  if (!('keyboard' in markup)) return;
  for (const button of markup.keyboard.flat()) {
    if (typeof button === 'string') continue;
    const request = Object.keys(privateOnly).find((key) => key in button);
    if (request && !where.privateChat) throw badRequest(privateOnly[request] ?? 'private chats only');
    if ('request_managed_bot' in button) checkManagedBotRequest(button.request_managed_bot, where);
  }
}

function checkManagedBotRequest(request: KeyboardButtonRequestManagedBot, where: MarkupPlacement): void {
  if (!where.canManageBots) throw badRequest('the bot is not allowed to manage other bots');
  if (request.suggested_name && textLength(request.suggested_name) > maxBotNameLength) {
    throw badRequest('suggested bot name is too long');
  }
  if (request.suggested_username && !isBotUsername(request.suggested_username)) {
    throw badRequest('USERNAME_INVALID');
  }
}

/** 5-32 letters, digits and underscores, ending in "bot" in any case: the rule for bot usernames. */
export function isBotUsername(username: string): boolean {
  return /^[A-Za-z0-9_]{5,32}$/.test(username) && /bot$/i.test(username);
}

export function isBotName(name: string): boolean {
  return name.trim().length > 0 && textLength(name) <= maxBotNameLength;
}

function readKeyboard(markup: Record<string, unknown>): ReplyKeyboardMarkup | undefined {
  const rows = markup.keyboard;
  if (!Array.isArray(rows) || !rows.every(Array.isArray)) {
    throw badRequest('field "keyboard" of the ReplyKeyboardMarkup must be an Array of Arrays');
  }
  const keyboard = (rows as unknown[][]).filter((row) => row.length > 0).map((row) => row.map(readButton));
  if (keyboard.length === 0) return undefined;
  const options: Record<string, unknown> = {};
  for (const flag of ['is_persistent', 'resize_keyboard', 'one_time_keyboard', 'selective']) {
    const value = optionalField(markup, flag, 'boolean');
    if (value !== undefined) options[flag] = value;
  }
  const placeholder = optionalField(markup, 'input_field_placeholder', 'string');
  if (placeholder !== undefined) options.input_field_placeholder = placeholder;
  return { keyboard, ...options } as ReplyKeyboardMarkup;
}

const buttonError = (what: string) => badRequest(`can't parse keyboard button: ${what}`);

function readButton(button: unknown): KeyboardButton {
  if (typeof button === 'string') {
    if (!button) throw badRequest('keyboard button text must be non-empty');
    return button;
  }
  if (!isRecord(button)) throw buttonError('expected an Object');
  if (button.text === undefined) throw buttonError('Can\'t find field "text"');
  if (typeof button.text !== 'string') throw buttonError('Field "text" must be of type String');
  if (!button.text) throw badRequest('keyboard button text must be non-empty');
  const copy = structuredClone(button);
  if (button.request_managed_bot !== undefined) {
    copy.request_managed_bot = readManagedBotRequest(button.request_managed_bot);
  }
  return copy as unknown as KeyboardButton;
}

function readManagedBotRequest(value: unknown): KeyboardButtonRequestManagedBot {
  if (!isRecord(value)) throw buttonError('Field "request_managed_bot" must be of type Object');
  const raw = value.request_id;
  if (raw === undefined) throw buttonError('Can\'t find field "request_id"');
  const id = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw;
  if (typeof id !== 'number' || !Number.isInteger(id) || id < minInt32 || id > maxInt32) {
    throw buttonError('Field "request_id" must be a valid Number');
  }
  const name = optionalField(value, 'suggested_name', 'string', buttonError);
  const username = optionalField(value, 'suggested_username', 'string', buttonError);
  return {
    request_id: id,
    ...(name !== undefined ? { suggested_name: name as string } : {}),
    ...(username !== undefined ? { suggested_username: username as string } : {}),
  };
}

function optionalField(
  object: Record<string, unknown>,
  name: string,
  type: 'string' | 'boolean',
  fail: (what: string) => Error = badRequest,
): unknown {
  const value = object[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== type) {
    throw fail(`Field "${name}" must be of type ${type === 'string' ? 'String' : 'Boolean'}`);
  }
  return value;
}

function readInlineKeyboard(markup: Record<string, unknown>): InlineKeyboardMarkup | undefined {
  const rows = markup.inline_keyboard;
  if (!Array.isArray(rows) || !rows.every(Array.isArray)) {
    throw badRequest('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays');
  }
  for (const row of rows as unknown[][]) {
    for (const button of row) {
      if (!isRecord(button) || typeof button.text !== 'string') throw badRequest('can\'t find field "text"');
      if (button.callback_data !== undefined) {
        const bytes = Buffer.byteLength(String(button.callback_data), 'utf8');
        if (bytes < 1 || bytes > maxCallbackDataBytes) throw badRequest('BUTTON_DATA_INVALID');
      }
      if (button.url !== undefined && !URL.canParse(String(button.url)))
        throw badRequest('BUTTON_URL_INVALID');
      if (!inlineActions.some((action) => button[action] !== undefined)) {
        throw badRequest('text buttons are unallowed in the inline keyboard');
      }
    }
  }
  const nonEmpty = (rows as unknown[][]).filter((row) => row.length > 0);
  return nonEmpty.length > 0 ? ({ inline_keyboard: nonEmpty } as InlineKeyboardMarkup) : undefined;
}
