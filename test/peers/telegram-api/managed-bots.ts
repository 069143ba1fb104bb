import { randomBytes } from 'node:crypto';
import type { BotAccessSettings, KeyboardButtonRequestManagedBot, Message, Update, User } from 'grammy/types';
import type { BotDirectory } from './directory.js';
import { seconds } from './message-methods.js';
import type { MethodContext, MethodHandler } from './methods.js';
import { optionalBool, optionalInt, optionalJson } from './params.js';
import { type ClientMarkup, isBotName, isBotUsername } from './reply-markup.js';
import { badRequest } from './responses.js';
import { type BotState, botAsUser, type ChatState, clone, storeMessage } from './state.js';
import type { NewUpdate } from './updates.js';
import { rememberUser } from './user-side.js';

/**
 * Managed bots (Bot API 9.6). A bot whose getMe says `can_manage_bots` shows a `request_managed_bot`
 * keyboard button in a private chat; the user taps it and creates a bot they own and the manager bot
 * controls: it fetches and rotates the bot's token and decides who may talk to it.
 */
export interface ManagedBot {
  bot: BotState;
  /** The user who created the bot. */
  owner: User;
  revokedTokens: string[];
  access: { isAccessRestricted: boolean; addedUserIds: number[] };
}

/** A managed bot as a test sees it. */
export interface ManagedBotView {
  botId: number;
  ownerId: number;
  username: string;
  /** The token that works now. */
  token: string;
  /** Tokens replaced by replaceManagedBotToken, oldest first; each answers 401. */
  revokedTokens: string[];
  access: { isAccessRestricted: boolean; addedUserIds: number[] };
}

/** The user completing the creation dialog a request_managed_bot button opened. */
export interface ManagedBotCreation {
  userId: number;
  /** Which button to tap when the keyboard has several; the first one otherwise. */
  requestId?: number;
  /** What the user typed instead of the button's suggestion. */
  name?: string;
  username?: string;
}

export interface CreatedBot {
  botId: number;
  token: string;
  username: string;
}

export interface ManagedBotDeps {
  now(): number;
  directory: BotDirectory;
  publish(bot: BotState, update: NewUpdate): Update | undefined;
}

/** Maximum `added_user_ids` of setManagedBotAccessSettings. */
const maxAddedUsers = 10;

/** A token shaped like Telegram's: the bot id, a colon and 35 characters of [A-Za-z0-9_-]. */
export function newBotToken(botId: number): string {
  return `${botId}:${randomBytes(27).toString('base64url').slice(0, 35)}`;
}

export function userCreatesManagedBot(
  manager: BotState,
  deps: ManagedBotDeps,
  input: ManagedBotCreation,
): CreatedBot {
  const { chat, request } = tappedRequest(manager, input);
  const botId = deps.directory.newBotId();
  const username = input.username ?? (request.suggested_username || `managed_${botId}_bot`);
  if (!isBotUsername(username)) {
    throw new Error(
      `fake telegram: "${username}" is not a bot username (5-32 of A-Z a-z 0-9 _, ending in "bot")`,
    );
  }
  if (deps.directory.usernameTaken(username)) {
    throw new Error(`fake telegram: the username @${username} is already taken`);
  }
  const name = input.name ?? (request.suggested_name || username);
  if (!isBotName(name)) throw new Error(`fake telegram: a bot name has 1-64 characters, not "${name}"`);

  const token = newBotToken(botId);
  const created = deps.directory.add(token, {
    id: botId,
    first_name: name,
    username,
    can_manage_bots: false,
  });
  const owner = rememberUser(manager, { userId: input.userId });
  manager.managed.set(botId, {
    bot: created,
    owner,
    revokedTokens: [],
    access: { isAccessRestricted: false, addedUserIds: [] },
  });

  const botUser = botAsUser(created.me);
  deps.publish(manager, { managed_bot: { user: clone(owner), bot: clone(botUser) } });
  const message = {
    message_id: chat.nextMessageId++,
    from: owner,
    chat: chat.chat,
    date: seconds(deps.now()),
    managed_bot_created: { bot: botUser },
  } as Message;
  storeMessage(chat, message, false);
  deps.publish(manager, { message: clone(message) } as NewUpdate);
  return { botId, token, username };
}

/**
 * The button a user can actually tap: on the reply keyboard their client shows now, which is the one of
 * the bot's latest message that sent a keyboard or removed it.
 */
function tappedRequest(
  manager: BotState,
  input: ManagedBotCreation,
): { chat: ChatState; request: KeyboardButtonRequestManagedBot } {
  const where = `the private chat with user ${input.userId}`;
  const chat = manager.chats.get(input.userId);
  if (chat?.chat.type !== 'private') {
    throw new Error(`fake telegram: the bot has no private chat with user ${input.userId}`);
  }
  const requestsOf = (markup: ClientMarkup) =>
    'keyboard' in markup
      ? markup.keyboard
          .flat()
          .flatMap((b) =>
            typeof b !== 'string' && 'request_managed_bot' in b ? [b.request_managed_bot] : [],
          )
      : [];
  const newestFirst = [...chat.replyKeyboards].reverse();
  const withButton = newestFirst.find((k) => requestsOf(k.markup).length > 0);
  if (!withButton)
    throw new Error(`fake telegram: no bot message in ${where} has a request_managed_bot button`);
  const shown = newestFirst.find((k) => 'keyboard' in k.markup || 'remove_keyboard' in k.markup);
  if (shown !== withButton) {
    throw new Error(
      `fake telegram: message ${shown?.messageId} in ${where} replaced the keyboard of message ${withButton.messageId}, whose request_managed_bot button the user can no longer tap`,
    );
  }
  const requests = requestsOf(withButton.markup);
  const request =
    input.requestId === undefined ? requests[0] : requests.find((r) => r.request_id === input.requestId);
  if (!request) {
    throw new Error(
      `fake telegram: message ${withButton.messageId} has no request_managed_bot button with request_id ${input.requestId}; it has ${requests.map((r) => r.request_id).join(', ')}`,
    );
  }
  return { chat, request };
}

export function managedBotViews(manager: BotState): ManagedBotView[] {
  return [...manager.managed.values()].map((m) =>
    clone({
      botId: m.bot.me.id,
      ownerId: m.owner.id,
      username: m.bot.me.username,
      token: m.bot.token,
      revokedTokens: m.revokedTokens,
      access: m.access,
    }),
  );
}

/** Only the managing bot may act on a managed bot; to any other the bot does not exist. */
function managedBotOf({ bot, params }: MethodContext): ManagedBot {
  const userId = optionalInt(params, 'user_id');
  if (userId === undefined || userId <= 0) throw badRequest('invalid user_id specified');
  const managed = bot.managed.get(userId);
  if (!managed) throw badRequest('bot not found');
  return managed;
}

function getManagedBotToken(ctx: MethodContext): string {
  return managedBotOf(ctx).bot.token;
}

function replaceManagedBotToken(ctx: MethodContext): string {
  const managed = managedBotOf(ctx);
  const old = managed.bot.token;
  const token = newBotToken(managed.bot.me.id);
  ctx.directory.retoken(managed.bot, token);
  managed.revokedTokens.push(old);
  // ManagedBotUpdated covers "creation, token update, or owner update".
  ctx.publish(ctx.bot, { managed_bot: { user: clone(managed.owner), bot: botAsUser(managed.bot.me) } });
  return token;
}

function getManagedBotAccessSettings(ctx: MethodContext): BotAccessSettings {
  const managed = managedBotOf(ctx);
  const { isAccessRestricted, addedUserIds } = managed.access;
  if (!isAccessRestricted) return { is_access_restricted: false };
  return {
    is_access_restricted: true,
    added_users: addedUserIds.map((id) => userFor(ctx.bot, managed.bot, id)),
  };
}

function setManagedBotAccessSettings(ctx: MethodContext): true {
  const managed = managedBotOf(ctx);
  const restricted = optionalBool(ctx.params, 'is_access_restricted');
  const raw = optionalJson(ctx.params, 'added_user_ids', "can't parse added_user_ids JSON array");
  if (raw !== undefined && !Array.isArray(raw)) throw badRequest('field "added_user_ids" must be an Array');
  const ids = (raw ?? []).map((id: unknown) => {
    const value = typeof id === 'string' && /^\d+$/.test(id) ? Number(id) : id;
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      throw badRequest('invalid user_id specified');
    }
    return value;
  });
  const unique = [...new Set(ids)];
  if (restricted && unique.length > maxAddedUsers) throw badRequest('too many users specified');
  // added_user_ids "ignored if is_access_restricted is False".
  managed.access = { isAccessRestricted: restricted, addedUserIds: restricted ? unique : [] };
  return true;
}

function userFor(manager: BotState, managed: BotState, id: number): User {
  const known = manager.users.get(id) ?? managed.users.get(id);
  if (known) return clone(known);
  return { id, is_bot: false, first_name: `User ${id}` };
}

export const managedBotMethods: ReadonlyArray<[string, MethodHandler]> = [
  ['getmanagedbottoken', getManagedBotToken],
  ['replacemanagedbottoken', replaceManagedBotToken],
  ['getmanagedbotaccesssettings', getManagedBotAccessSettings],
  ['setmanagedbotaccesssettings', setManagedBotAccessSettings],
];
