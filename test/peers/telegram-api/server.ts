import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  BotCommand,
  BotCommandScope,
  Chat,
  Message,
  ReplyKeyboardMarkup,
  Update,
  UserFromGetMe,
} from 'grammy/types';
import { commandsFor, type MenuViewer, menuFor } from './commands-menu.js';
import { createBotDirectory } from './directory.js';
import {
  type CreatedBot,
  type ManagedBotCreation,
  type ManagedBotView,
  managedBotViews,
  userCreatesManagedBot,
} from './managed-bots.js';
import { methods } from './methods.js';
import { type Params, readParams } from './params.js';
import {
  type ApiResponse,
  BotApiError,
  Described,
  describeErrorCode,
  notFound,
  tooManyRequests,
  unauthorized,
} from './responses.js';
import {
  type BotState,
  type CallbackAnswer,
  type ChatActionRecord,
  clone,
  type EditRecord,
  type RecordedCall,
  type SentReplyKeyboard,
  type WebhookDelivery,
} from './state.js';
import { isAllowed, type NewUpdate, updateTypeOf } from './updates.js';
import {
  type ButtonPress,
  type UserEdit,
  type UserMessage,
  userEditsMessage,
  userPressesButton,
  userSendsMessage,
} from './user-side.js';
import { createWebhookPump, type WebhookOptions } from './webhook.js';

export interface FakeTelegramOptions {
  /** Defaults to a port the kernel picks, so parallel test files never collide. */
  port?: number;
  /** Defaults for every bot registered with `addBot`. */
  botInfo?: Partial<UserFromGetMe>;
  /** Wall clock in ms. Message dates and the 48-hour deletion window follow it. */
  now?: () => number;
  webhook?: WebhookOptions;
}

/** A canned failure for the next call(s) of one method, optionally only for one chat or message. */
export type Fault = { times?: number; chatId?: number | string; messageId?: number } & (
  | { retryAfter: number }
  | { errorCode: number; description?: string }
);

/** One chat as a test sees it; every array is a copy. */
export interface ChatView {
  chat: Chat | undefined;
  /** The bot's messages as they are now: edits applied, deleted ones gone. */
  messages: Message[];
  /** The user's messages the bot has not deleted. */
  userMessages: Message[];
  /** Every message the bot sent, as first sent, deleted ones included. */
  sent: Message[];
  edits: EditRecord[];
  /** Ids of deleted messages, the bot's and the user's, in deletion order. */
  deleted: number[];
  actions: ChatActionRecord[];
  /** Reply keyboards, their removals and force_replies the bot sent, with the message each came with. */
  replyKeyboards: SentReplyKeyboard[];
  /** The reply keyboard the user's client shows now, if any. */
  replyKeyboard: ReplyKeyboardMarkup | undefined;
}

export type MessageMatch = string | RegExp | ((message: Message) => boolean);

export interface FakeTelegram {
  /** Pass as `new Bot(token, { client: { apiRoot } })`. */
  readonly apiRoot: string;
  readonly port: number;
  /** Makes a token valid. Unregistered tokens get 401 Unauthorized, as a revoked token would. */
  addBot(token: string, botInfo?: Partial<UserFromGetMe>): UserFromGetMe;
  /** The user writes to the bot; the update goes to getUpdates or the webhook. */
  sendUserMessage(token: string, message: UserMessage): Message;
  editUserMessage(token: string, edit: UserEdit): Message;
  /** The user taps an inline button; returns the callback query id. */
  pressButton(token: string, press: ButtonPress): string;
  /** Any update shape; `undefined` when the bot's allowed_updates filters it out, as Telegram would. */
  injectUpdate(token: string, update: NewUpdate): Update | undefined;
  /**
   * Delivers an update already created once more, same update_id, same body: as another webhook POST, or
   * in the next getUpdates answer even below the confirmed offset. Throws for an update never created.
   */
  redeliver(token: string, updateId: number): Update;
  /**
   * The user taps the request_managed_bot button on the reply keyboard their private chat with the
   * manager shows and confirms the dialog. The new bot is registered (getMe works with its token); the
   * manager gets a `managed_bot` update, then the user's `managed_bot_created` service message.
   */
  createManagedBot(managerToken: string, creation: ManagedBotCreation): CreatedBot;
  /** The bots this one manages, in creation order. */
  managedBots(managerToken: string): ManagedBotView[];
  /** The command list set for exactly this scope (default: the default scope) and language. */
  commandsFor(token: string, scope?: BotCommandScope, languageCode?: string): BotCommand[];
  /** The command menu this chat shows, by Telegram's scope lookup order; private chats need no viewer. */
  menuFor(token: string, chatId: number, viewer?: MenuViewer): BotCommand[];
  chat(token: string, chatId: number): ChatView;
  /** Requests the bot made, optionally of one method (case-insensitive); in-flight ones lack `response`. */
  calls(token: string, method?: string): RecordedCall[];
  callbackAnswers(token: string): CallbackAnswer[];
  webhookDeliveries(token: string): WebhookDelivery[];
  /** Updates not yet confirmed (getUpdates) or not yet delivered (webhook). */
  pendingUpdates(token: string): Update[];
  failNext(token: string, method: string, fault: Fault): void;
  /** Makes deleteMessage of this message fail from now on, as for a message the bot may not delete. */
  failDelete(token: string, chatId: number, messageId: number, description?: string): void;
  /**
   * Resolves with the probe's first truthy result, re-probing whenever the fake's state changes. A probe
   * that throws counts as "not yet"; on timeout its last error is the rejection.
   */
  waitFor<T>(probe: () => T | undefined | null | false, timeoutMs?: number): Promise<T>;
  /** Waits for a bot message in the chat whose current text matches. */
  waitForMessage(token: string, chatId: number, match: MessageMatch, timeoutMs?: number): Promise<Message>;
  /** Answers pending long polls with [], stops webhook deliveries, closes every socket. */
  close(): Promise<void>;
}

export async function startFakeTelegram(options: FakeTelegramOptions = {}): Promise<FakeTelegram> {
  const now = options.now ?? Date.now;
  const directory = createBotDirectory(options.botInfo);
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const changed = () => events.emit('change');
  const closing = new AbortController();
  const inFlight = new Set<Promise<void>>();

  const pump = createWebhookPump({
    now,
    changed,
    closing: closing.signal,
    options: options.webhook ?? {},
    executeReply: async (bot, method, params) => {
      await dispatch(bot, method, params, closing.signal, true);
    },
  });

  function publish(bot: BotState, update: NewUpdate): Update | undefined {
    const type = updateTypeOf(update);
    if (type === undefined || !isAllowed(bot.allowedUpdates, type)) return undefined;
    const full = bot.queue.push(update);
    if (bot.webhook) pump.kick(bot);
    changed();
    return clone(full);
  }

  function takeFault(bot: BotState, method: string, params: Params): BotApiError | undefined {
    const name = method.toLowerCase();
    const index = bot.faults.findIndex(
      (f) =>
        f.method === name &&
        (f.chatId === undefined || f.chatId === String(params.chat_id ?? '')) &&
        (f.messageId === undefined || f.messageId === Number(params.message_id)),
    );
    const fault = bot.faults[index];
    if (!fault) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) bot.faults.splice(index, 1);
    return fault.error;
  }

  async function dispatch(
    bot: BotState,
    method: string,
    params: Params,
    signal: AbortSignal,
    viaWebhookReply = false,
  ): Promise<ApiResponse> {
    const call: RecordedCall = { method, params, at: now(), ...(viaWebhookReply ? { viaWebhookReply } : {}) };
    bot.calls.push(call);
    changed();
    let response: ApiResponse;
    try {
      const fault = takeFault(bot, method, params);
      if (fault) throw fault;
      const handler = methods.get(method.toLowerCase());
      if (!handler) throw notFound('method not found');
      const pending = handler({ bot, params, signal, now, webhookChanged: pump.kick, publish, directory });
      // Handlers mutate state before their first await (getUpdates confirms, then parks): let waiters see it.
      changed();
      const result = await pending;
      response =
        result instanceof Described
          ? { ok: true, result: result.result, description: result.description }
          : { ok: true, result };
    } catch (e) {
      response =
        e instanceof BotApiError
          ? e.toResponse()
          : { ok: false, error_code: 500, description: `Internal Server Error: ${(e as Error).message}` };
    }
    call.response = response;
    call.finishedAt = now();
    changed();
    return response;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const gone = new AbortController();
    res.on('close', () => gone.abort());
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const route = /^\/bot([^/]+)\/([^/]*)$/.exec(url.pathname);
    const bot = route ? directory.live(decodeURIComponent(route[1] ?? '')) : undefined;
    if (!route || !bot) {
      req.resume();
      return send(res, (route ? unauthorized() : notFound()).toResponse());
    }
    let params: Params;
    try {
      params = await readParams(req, url);
    } catch (e) {
      return send(res, e instanceof BotApiError ? e.toResponse() : notFound().toResponse());
    }
    send(res, await dispatch(bot, route[2] ?? '', params, AbortSignal.any([gone.signal, closing.signal])));
  }

  const server = createServer((req, res) => {
    const work = handle(req, res).catch(() => {
      if (!res.headersSent) send(res, { ok: false, error_code: 500, description: 'Internal Server Error' });
    });
    inFlight.add(work);
    void work.finally(() => inFlight.delete(work));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  function botOf(token: string): BotState {
    const bot = directory.find(token);
    if (!bot) throw new Error('fake telegram: unknown bot token, register it with addBot first');
    return bot;
  }

  const userSide = { now, publish };

  function waitFor<T>(probe: () => T | undefined | null | false, timeoutMs = 3000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let lastError: unknown;
      let timer: NodeJS.Timeout | undefined;
      const settle = () => {
        clearTimeout(timer);
        events.off('change', check);
      };
      function check(): boolean {
        try {
          const value = probe();
          if (value !== undefined && value !== null && value !== false) {
            settle();
            resolve(value);
            return true;
          }
        } catch (e) {
          lastError = e;
        }
        return false;
      }
      if (check()) return;
      events.on('change', check);
      timer = setTimeout(() => {
        settle();
        reject(lastError ?? new Error(`fake telegram: condition not met within ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }

  function chat(token: string, chatId: number): ChatView {
    const state = botOf(token).chats.get(chatId);
    if (!state)
      return {
        chat: undefined,
        messages: [],
        userMessages: [],
        sent: [],
        edits: [],
        deleted: [],
        actions: [],
        replyKeyboards: [],
        replyKeyboard: undefined,
      };
    const live = [...state.messages.values()]
      .filter((m) => !m.deleted)
      .sort((a, b) => a.message.message_id - b.message.message_id);
    return clone({
      chat: state.chat,
      messages: live.filter((m) => m.fromBot).map((m) => m.message),
      userMessages: live.filter((m) => !m.fromBot).map((m) => m.message),
      sent: state.sent,
      edits: state.edits,
      deleted: state.deleted,
      actions: state.actions,
      replyKeyboards: state.replyKeyboards,
      replyKeyboard: shownKeyboard(state.replyKeyboards),
    });
  }

  let closed: Promise<void> | undefined;

  return {
    apiRoot: `http://127.0.0.1:${port}`,
    port,
    addBot: (token, botInfo) => clone(directory.add(token, botInfo).me),
    sendUserMessage: (token, message) => userSendsMessage(botOf(token), userSide, message),
    editUserMessage: (token, edit) => userEditsMessage(botOf(token), userSide, edit),
    pressButton: (token, press) => userPressesButton(botOf(token), userSide, press),
    injectUpdate: (token, update) => publish(botOf(token), update),
    redeliver(token, updateId) {
      const bot = botOf(token);
      const update = bot.queue.replay(updateId);
      if (bot.webhook) pump.kick(bot);
      changed();
      return update;
    },
    createManagedBot: (token, creation) =>
      userCreatesManagedBot(botOf(token), { now, publish, directory }, creation),
    managedBots: (token) => managedBotViews(botOf(token)),
    commandsFor: (token, scope, languageCode) => commandsFor(botOf(token), scope, languageCode),
    menuFor: (token, chatId, viewer) => menuFor(botOf(token), chatId, viewer),
    chat,
    calls(token, method) {
      const all = botOf(token).calls;
      return clone(method ? all.filter((c) => c.method.toLowerCase() === method.toLowerCase()) : all);
    },
    callbackAnswers: (token) => clone(botOf(token).callbackAnswers),
    webhookDeliveries: (token) => clone(botOf(token).deliveries),
    pendingUpdates: (token) => clone(botOf(token).queue.take(Number.MAX_SAFE_INTEGER)),
    failNext(token, method, fault) {
      const error =
        'retryAfter' in fault
          ? tooManyRequests(fault.retryAfter)
          : new BotApiError(fault.errorCode, fault.description ?? describeErrorCode(fault.errorCode));
      botOf(token).faults.push({
        method: method.toLowerCase(),
        remaining: fault.times ?? 1,
        error,
        ...(fault.chatId !== undefined ? { chatId: String(fault.chatId) } : {}),
        ...(fault.messageId !== undefined ? { messageId: fault.messageId } : {}),
      });
    },
    failDelete(token, chatId, messageId, description = "message can't be deleted") {
      botOf(token).undeletable.set(`${chatId}/${messageId}`, description);
    },
    waitFor,
    waitForMessage(token, chatId, match, timeoutMs) {
      const matches = (m: Message) => {
        if (typeof match === 'function') return match(m);
        const text = (m as { text?: string }).text ?? '';
        return typeof match === 'string' ? text.includes(match) : match.test(text);
      };
      return waitFor(() => chat(token, chatId).messages.find(matches), timeoutMs);
    },
    close() {
      closed ??= (async () => {
        closing.abort();
        // Pending long polls answer [] as soon as the abort lands; let those answers go out first,
        // but never wait on a client that stalls halfway through sending its body.
        await Promise.race([Promise.allSettled([...inFlight]), delay(500)]);
        await pump.idle();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          setImmediate(() => server.closeAllConnections());
        });
      })();
      return closed;
    },
  };
}

/** The latest keyboard or removal wins; force_reply leaves the keyboard as it is. */
function shownKeyboard(sent: SentReplyKeyboard[]): ReplyKeyboardMarkup | undefined {
  const last = [...sent].reverse().find((k) => 'keyboard' in k.markup || 'remove_keyboard' in k.markup);
  return last && 'keyboard' in last.markup ? last.markup : undefined;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function send(res: ServerResponse, response: ApiResponse): void {
  if (res.destroyed || res.writableEnded) return;
  const body = JSON.stringify(response);
  res.writeHead(response.ok ? 200 : response.error_code, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
