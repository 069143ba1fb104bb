import type { Chat, InlineKeyboardMarkup, Message, User, UserFromGetMe } from 'grammy/types';
import type { StoredCommands } from './commands-menu.js';
import type { ManagedBot } from './managed-bots.js';
import { optionalString, type Params } from './params.js';
import type { ClientMarkup } from './reply-markup.js';
import { type ApiResponse, type BotApiError, badRequest } from './responses.js';
import { createUpdateQueue, type UpdateQueue } from './updates.js';

/** One request the bot made, in arrival order; `response` is filled in when the fake answered. */
export interface RecordedCall {
  method: string;
  params: Params;
  at: number;
  finishedAt?: number;
  response?: ApiResponse;
  /** Set when the call came back in the body of a webhook response rather than over its own request. */
  viaWebhookReply?: boolean;
}

export interface EditRecord {
  messageId: number;
  method: 'editMessageText' | 'editMessageReplyMarkup';
  text: string | undefined;
  replyMarkup: InlineKeyboardMarkup | undefined;
  at: number;
}

/** A reply keyboard, its removal or a force-reply the bot sent; Telegram keeps these off the Message. */
export interface SentReplyKeyboard {
  messageId: number;
  markup: ClientMarkup;
  at: number;
}

export interface ChatActionRecord {
  action: string;
  at: number;
}

export interface CallbackAnswer {
  callbackQueryId: string;
  text?: string;
  showAlert: boolean;
  url?: string;
  cacheTime?: number;
  at: number;
}

export interface WebhookConfig {
  url: string;
  secretToken?: string;
  maxConnections: number;
}

export interface WebhookDelivery {
  updateId: number;
  url: string;
  attempt: number;
  at: number;
  /** HTTP status of the bot's answer; absent when the connection itself failed. */
  status?: number;
  error?: string;
  secretSent: boolean;
}

interface StoredMessage {
  message: Message;
  fromBot: boolean;
  deleted: boolean;
}

export interface ChatState {
  chat: Chat;
  /** Private chats share one id sequence between both sides, so user and bot messages interleave. */
  nextMessageId: number;
  messages: Map<number, StoredMessage>;
  sent: Message[];
  edits: EditRecord[];
  deleted: number[];
  actions: ChatActionRecord[];
  replyKeyboards: SentReplyKeyboard[];
}

export interface ArmedFault {
  method: string;
  remaining: number;
  chatId?: string;
  messageId?: number;
  error: BotApiError;
}

export interface BotState {
  token: string;
  me: UserFromGetMe;
  chats: Map<number, ChatState>;
  users: Map<number, User>;
  queue: UpdateQueue;
  allowedUpdates: string[] | undefined;
  webhook: WebhookConfig | undefined;
  webhookError: { date: number; message: string } | undefined;
  deliveries: WebhookDelivery[];
  /** A long poll in progress; a newer getUpdates or a webhook ends it. */
  poll: AbortController | undefined;
  calls: RecordedCall[];
  faults: ArmedFault[];
  /** Command lists by scope and language, see commands-menu.ts. */
  commands: Map<string, StoredCommands>;
  /** Bots this bot manages (Bot API 9.6), by their id. */
  managed: Map<number, ManagedBot>;
  callbackQueries: Map<string, { answered: boolean }>;
  callbackAnswers: CallbackAnswer[];
  nextCallbackId: number;
  /** `${chatId}/${messageId}` -> the refusal deleteMessage answers with. */
  undeletable: Map<string, string>;
}

export function createBotState(token: string, me: UserFromGetMe): BotState {
  return {
    token,
    me,
    chats: new Map(),
    users: new Map(),
    queue: createUpdateQueue(),
    allowedUpdates: undefined,
    webhook: undefined,
    webhookError: undefined,
    deliveries: [],
    poll: undefined,
    calls: [],
    faults: [],
    commands: new Map(),
    managed: new Map(),
    callbackQueries: new Map(),
    callbackAnswers: [],
    nextCallbackId: 1,
    undeletable: new Map(),
  };
}

export function botAsUser(me: UserFromGetMe): User {
  return { id: me.id, is_bot: true, first_name: me.first_name, username: me.username };
}

export function createChatState(chat: Chat): ChatState {
  return {
    chat,
    nextMessageId: 1,
    messages: new Map(),
    sent: [],
    edits: [],
    deleted: [],
    actions: [],
    replyKeyboards: [],
  };
}

/** Resolves `chat_id`, numeric or `@username`, to a chat this bot has seen; otherwise "chat not found". */
export function requireChat(bot: BotState, params: Params): ChatState {
  const raw = optionalString(params, 'chat_id');
  if (raw === undefined) throw badRequest('chat_id is empty');
  const chat = /^-?\d+$/.test(raw)
    ? bot.chats.get(Number(raw))
    : [...bot.chats.values()].find((c) => c.chat.type !== 'private' && `@${c.chat.username}` === raw);
  if (!chat) throw badRequest('chat not found');
  return chat;
}

export function liveMessage(chat: ChatState, messageId: number) {
  const stored = chat.messages.get(messageId);
  return stored && !stored.deleted ? stored : undefined;
}

export function storeMessage(chat: ChatState, message: Message, fromBot: boolean): void {
  chat.messages.set(message.message_id, { message, fromBot, deleted: false });
}

export const clone = <T>(value: T): T => structuredClone(value);
