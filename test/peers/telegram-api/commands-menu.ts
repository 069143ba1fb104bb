import type { BotCommand, BotCommandScope } from 'grammy/types';
import type { MethodContext, MethodHandler } from './methods.js';
import { isRecord, optionalJson, optionalString, type Params } from './params.js';
import { badRequest } from './responses.js';
import { type BotState, clone, requireChat } from './state.js';

/**
 * The bot's command menu: one list per scope and language, as setMyCommands keeps it. Checks and their
 * wording follow the real server: the Bot API parses the JSON, TDLib checks the scope, the language and
 * each command's length, and Telegram itself refuses characters outside a-z, 0-9 and _.
 */
export interface StoredCommands {
  scope: BotCommandScope;
  languageCode: string;
  commands: BotCommand[];
}

/** Who looks at the menu of a group; a private chat's viewer is its user. */
export interface MenuViewer {
  userId?: number;
  /** Defaults to the language the user's client reported, if any. */
  languageCode?: string;
  /** Administrators also see the administrator scopes. */
  isAdmin?: boolean;
}

const maxCommands = 100;
const maxCommandLength = 32;
const maxDescriptionLength = 256;
const scopeTypes = [
  'default',
  'all_private_chats',
  'all_group_chats',
  'all_chat_administrators',
  'chat',
  'chat_administrators',
  'chat_member',
];

const scopeError = (what: string) => badRequest(`can't parse BotCommandScope: ${what}`);

/** The scope with its chat resolved to a numeric id, or a Bot API error. */
export function readScope(bot: BotState, raw: unknown): BotCommandScope {
  if (raw === undefined) return { type: 'default' };
  if (!isRecord(raw)) throw scopeError('expected an Object');
  if (raw.type === undefined) throw scopeError('Can\'t find field "type"');
  if (typeof raw.type !== 'string' || !scopeTypes.includes(raw.type)) {
    throw scopeError('Unsupported type specified');
  }
  const type = raw.type as BotCommandScope['type'];
  if (type !== 'chat' && type !== 'chat_administrators' && type !== 'chat_member') {
    return { type } as BotCommandScope;
  }
  if (raw.chat_id === undefined || raw.chat_id === '') throw scopeError('Can\'t find field "chat_id"');
  let userId: number | undefined;
  if (type === 'chat_member') {
    if (raw.user_id === undefined) throw scopeError('Can\'t find field "user_id"');
    userId = Number(raw.user_id);
    if (!Number.isInteger(userId)) throw scopeError('Field "user_id" must be a valid Number');
    if (userId <= 0) throw scopeError('Invalid user_id specified');
  }
  const chat = requireChat(bot, { chat_id: raw.chat_id }).chat;
  if (chat.type === 'private' && type !== 'chat') {
    throw badRequest("can't use specified scope in private chats");
  }
  if (chat.type === 'channel') throw badRequest("can't change commands in channel chats");
  return (
    userId === undefined ? { type, chat_id: chat.id } : { type, chat_id: chat.id, user_id: userId }
  ) as BotCommandScope;
}

function readLanguage(params: Params): string {
  const code = optionalString(params, 'language_code') ?? '';
  if (code !== '' && !/^[a-z]{2}$/.test(code)) throw badRequest('invalid language code specified');
  return code;
}

function keyOf(scope: BotCommandScope, languageCode: string): string {
  const { chat_id, user_id } = scope as { chat_id?: number; user_id?: number };
  return JSON.stringify([scope.type, chat_id ?? null, user_id ?? null, languageCode]);
}

function target(bot: BotState, params: Params) {
  const scope = readScope(bot, optionalJson(params, 'scope', "can't parse BotCommandScope JSON object"));
  const languageCode = readLanguage(params);
  return { scope, languageCode, key: keyOf(scope, languageCode) };
}

function readCommands(params: Params): BotCommand[] {
  const raw = optionalJson(params, 'commands', "can't parse commands JSON object");
  if (raw === undefined) throw badRequest("can't parse commands JSON object");
  if (!Array.isArray(raw)) throw badRequest('expected an Array of BotCommand');
  return raw.map((command) => {
    if (!isRecord(command)) throw badRequest("can't parse BotCommand: expected an Object");
    for (const field of ['command', 'description']) {
      if (command[field] === undefined)
        throw badRequest(`can't parse BotCommand: Can't find field "${field}"`);
      if (typeof command[field] !== 'string') {
        throw badRequest(`can't parse BotCommand: Field "${field}" must be of type String`);
      }
    }
    return { command: command.command as string, description: command.description as string };
  });
}

/** TDLib trims both fields and drops a leading "/"; Telegram then checks the characters and the count. */
function normalize(commands: BotCommand[]): BotCommand[] {
  const clean = commands.map(({ command: rawCommand, description: rawDescription }) => {
    const trimmed = rawCommand.trim();
    const command = trimmed.startsWith('/') ? trimmed.slice(1) : trimmed;
    if (!command) throw badRequest('command must be non-empty');
    if ([...command].length > maxCommandLength) {
      throw badRequest(`command length must not exceed ${maxCommandLength}`);
    }
    const description = rawDescription.trim();
    if (!description) throw badRequest('command description must be non-empty');
    if ([...description].length > maxDescriptionLength) {
      throw badRequest(`command description length must not exceed ${maxDescriptionLength}`);
    }
    return { command, description };
  });
  if (clean.some(({ command }) => !/^[a-z0-9_]+$/.test(command))) throw badRequest('BOT_COMMAND_INVALID');
  if (clean.length > maxCommands) throw badRequest('BOT_COMMANDS_TOO_MUCH');
  return clean;
}

function setMyCommands({ bot, params }: MethodContext): true {
  const commands = readCommands(params);
  const { scope, languageCode, key } = target(bot, params);
  const clean = normalize(commands);
  // An empty list is how bots cleared their menu before deleteMyCommands existed; it still resets it.
  if (clean.length === 0) bot.commands.delete(key);
  else bot.commands.set(key, { scope, languageCode, commands: clean });
  return true;
}

function getMyCommands({ bot, params }: MethodContext): BotCommand[] {
  return clone(bot.commands.get(target(bot, params).key)?.commands ?? []);
}

function deleteMyCommands({ bot, params }: MethodContext): true {
  bot.commands.delete(target(bot, params).key);
  return true;
}

export const commandMethods: ReadonlyArray<[string, MethodHandler]> = [
  ['setmycommands', setMyCommands],
  ['getmycommands', getMyCommands],
  ['deletemycommands', deleteMyCommands],
];

/** The list set for exactly this scope and language, as getMyCommands returns it. */
export function commandsFor(bot: BotState, scope?: BotCommandScope, languageCode = ''): BotCommand[] {
  const key = keyOf(readScope(bot, scope), languageCode);
  return clone(bot.commands.get(key)?.commands ?? []);
}

/**
 * The menu a chat shows, by Telegram's documented lookup: the first list set, narrowest scope first,
 * each scope with the viewer's language before the scope without one.
 */
export function menuFor(bot: BotState, chatId: number, viewer: MenuViewer = {}): BotCommand[] {
  const chat = bot.chats.get(chatId)?.chat;
  if (!chat) throw new Error(`fake telegram: the bot has no chat ${chatId}`);
  const userId = chat.type === 'private' ? chat.id : viewer.userId;
  const reported = userId === undefined ? undefined : bot.users.get(userId)?.language_code;
  const languageCode = viewer.languageCode ?? reported?.split('-')[0]?.toLowerCase() ?? '';
  const scopes: BotCommandScope[] =
    chat.type === 'private'
      ? [{ type: 'chat', chat_id: chat.id }, { type: 'all_private_chats' }, { type: 'default' }]
      : [
          ...(userId !== undefined
            ? [{ type: 'chat_member', chat_id: chat.id, user_id: userId } as const]
            : []),
          ...(viewer.isAdmin ? [{ type: 'chat_administrators', chat_id: chat.id } as const] : []),
          { type: 'chat', chat_id: chat.id },
          ...(viewer.isAdmin ? [{ type: 'all_chat_administrators' } as const] : []),
          { type: 'all_group_chats' },
          { type: 'default' },
        ];
  for (const scope of scopes) {
    for (const language of languageCode ? [languageCode, ''] : ['']) {
      const found = bot.commands.get(keyOf(scope, language));
      if (found) return clone(found.commands);
    }
  }
  return [];
}
