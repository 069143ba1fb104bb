import type { Chat, Message, MessageEntity, MessageOrigin, Update, User } from 'grammy/types';
import { seconds } from './message-methods.js';
import { type BotState, type ChatState, clone, createChatState, liveMessage, storeMessage } from './state.js';
import type { NewUpdate } from './updates.js';

/** What a human does in the Telegram app, described for a test. */
export interface UserMessage {
  userId: number;
  text: string;
  /** Defaults to `userId`: a private chat's id is its user's id. Required for groups. */
  chatId?: number;
  chatType?: 'private' | 'group' | 'supergroup';
  chatTitle?: string;
  firstName?: string;
  lastName?: string;
  username?: string;
  languageCode?: string;
  /** Defaults to a `bot_command` entity when the text starts with a command, as the app would add. */
  entities?: MessageEntity[];
  replyToMessageId?: number;
  forwardOrigin?: MessageOrigin;
  /** Merged into the Message last, for shapes the options above don't cover. */
  extra?: Record<string, unknown>;
}

export interface UserEdit {
  chatId: number;
  messageId: number;
  text: string;
  entities?: MessageEntity[];
}

export interface ButtonPress {
  chatId: number;
  userId: number;
  messageId: number;
  data: string;
  /** Press even if the message shows no such button (a stale client, a forged request). */
  force?: boolean;
}

export interface UserSideDeps {
  now(): number;
  publish(bot: BotState, update: NewUpdate): Update | undefined;
}

export function userSendsMessage(bot: BotState, deps: UserSideDeps, input: UserMessage): Message {
  const user = rememberUser(bot, input);
  const chat = openChat(bot, input, user);
  const entities = input.entities ?? commandEntity(input.text);
  const replyTo =
    input.replyToMessageId === undefined ? undefined : liveMessage(chat, input.replyToMessageId);
  if (input.replyToMessageId !== undefined && !replyTo) {
    throw new Error(
      `fake telegram: chat ${chat.chat.id} has no message ${input.replyToMessageId} to reply to`,
    );
  }
  const message = {
    message_id: chat.nextMessageId++,
    from: user,
    chat: chat.chat,
    date: seconds(deps.now()),
    text: input.text,
    ...(entities.length > 0 ? { entities } : {}),
    ...(replyTo ? { reply_to_message: withoutReply(replyTo.message) } : {}),
    ...(input.forwardOrigin ? { forward_origin: input.forwardOrigin } : {}),
    ...input.extra,
  } as Message;
  storeMessage(chat, message, false);
  deps.publish(bot, { message: clone(message) } as NewUpdate);
  return clone(message);
}

export function userEditsMessage(bot: BotState, deps: UserSideDeps, input: UserEdit): Message {
  const chat = bot.chats.get(input.chatId);
  const stored = chat && liveMessage(chat, input.messageId);
  if (!stored || stored.fromBot) {
    throw new Error(`fake telegram: chat ${input.chatId} has no user message ${input.messageId} to edit`);
  }
  const entities = input.entities ?? commandEntity(input.text);
  const edited = { ...stored.message, text: input.text, edit_date: seconds(deps.now()) } as Record<
    string,
    unknown
  >;
  if (entities.length > 0) edited.entities = entities;
  else delete edited.entities;
  stored.message = edited as unknown as Message;
  deps.publish(bot, { edited_message: clone(stored.message) } as NewUpdate);
  return clone(stored.message);
}

/** Returns the callback query id, which the bot must answer with answerCallbackQuery. */
export function userPressesButton(bot: BotState, deps: UserSideDeps, input: ButtonPress): string {
  const chat = bot.chats.get(input.chatId);
  const stored = chat && liveMessage(chat, input.messageId);
  if (!chat || !stored?.fromBot) {
    throw new Error(`fake telegram: chat ${input.chatId} has no bot message ${input.messageId} with buttons`);
  }
  const markup = (stored.message as { reply_markup?: { inline_keyboard: { callback_data?: string }[][] } })
    .reply_markup;
  const shown =
    markup?.inline_keyboard.some((row) => row.some((b) => b.callback_data === input.data)) ?? false;
  if (!shown && !input.force) {
    throw new Error(`fake telegram: message ${input.messageId} shows no button with data "${input.data}"`);
  }
  const id = `${bot.me.id}${String(bot.nextCallbackId++).padStart(8, '0')}`;
  bot.callbackQueries.set(id, { answered: false });
  deps.publish(bot, {
    callback_query: {
      id,
      from: rememberUser(bot, { userId: input.userId }),
      message: clone(stored.message),
      chat_instance: `${Math.abs(chat.chat.id)}${bot.me.id}`,
      data: input.data,
    },
  } as NewUpdate);
  return id;
}

export function rememberUser(bot: BotState, input: Partial<UserMessage> & { userId: number }): User {
  const known = bot.users.get(input.userId);
  const lastName = input.lastName ?? known?.last_name;
  const username = input.username ?? known?.username;
  const languageCode = input.languageCode ?? known?.language_code;
  const user: User = {
    id: input.userId,
    is_bot: false,
    first_name: input.firstName ?? known?.first_name ?? `User ${input.userId}`,
    ...(lastName !== undefined ? { last_name: lastName } : {}),
    ...(username !== undefined ? { username } : {}),
    ...(languageCode !== undefined ? { language_code: languageCode } : {}),
  };
  bot.users.set(user.id, user);
  return user;
}

function openChat(bot: BotState, input: UserMessage, user: User): ChatState {
  const type = input.chatType ?? 'private';
  const chatId = input.chatId ?? (type === 'private' ? input.userId : undefined);
  if (chatId === undefined) throw new Error(`fake telegram: a ${type} message needs a chatId`);
  if (type === 'private' && chatId !== input.userId) {
    throw new Error(`fake telegram: a private chat's id is its user's id (${input.userId}), not ${chatId}`);
  }
  const existing = bot.chats.get(chatId);
  if (existing) {
    if (existing.chat.type !== type) {
      throw new Error(`fake telegram: chat ${chatId} is ${existing.chat.type}, not ${type}`);
    }
    return existing;
  }
  const chat: Chat =
    type === 'private'
      ? {
          id: chatId,
          type,
          first_name: user.first_name,
          ...(user.last_name !== undefined ? { last_name: user.last_name } : {}),
          ...(user.username !== undefined ? { username: user.username } : {}),
        }
      : { id: chatId, type, title: input.chatTitle ?? `Group ${chatId}` };
  const state = createChatState(chat);
  bot.chats.set(chatId, state);
  return state;
}

function commandEntity(text: string): MessageEntity[] {
  const command = /^\/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]+)?/.exec(text)?.[0];
  return command ? [{ type: 'bot_command', offset: 0, length: command.length }] : [];
}

function withoutReply(message: Message): Message {
  const { reply_to_message: _, ...flat } = message as Message & { reply_to_message?: unknown };
  return clone(flat) as Message;
}
