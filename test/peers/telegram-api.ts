/**
 * A fake Telegram Bot API server for tests: a real HTTP peer grammY talks to through `apiRoot`, with
 * real long polling, webhook delivery with the secret header, Bot API error shapes and on-demand 429s,
 * recording what each bot sent, edited and deleted per chat.
 *
 *   const telegram = await startFakeTelegram();
 *   telegram.addBot(token);
 *   const bot = new Bot(token, { client: { apiRoot: telegram.apiRoot } });
 *   telegram.sendUserMessage(token, { userId: 42, text: '/start' });
 *   await telegram.waitForMessage(token, 42, /welcome/i);
 *
 * Beyond messages (one concept per file under telegram-api/):
 * - Plain text only (text.ts): fleetbot never formats its messages, so `parse_mode` or `entities` on
 *   sendMessage or editMessageText is answered 400 "… is not supported by this test peer".
 * - Reply keyboards (reply-markup.ts): a ReplyKeyboardMarkup, ReplyKeyboardRemove or ForceReply is
 *   validated and recorded in `chat().replyKeyboards`, never echoed in `Message.reply_markup`.
 * - Managed bots, Bot API 9.6 (managed-bots.ts): `addBot(token, { can_manage_bots: true })`, a
 *   `request_managed_bot` button, `createManagedBot(token, { userId })` for the user's tap, the
 *   get/replaceManagedBotToken and get/setManagedBotAccessSettings methods, `managedBots(token)`.
 * - Command menus (commands-menu.ts): set/get/deleteMyCommands per scope and language,
 *   `commandsFor(token, scope?)` and `menuFor(token, chatId)` for what a chat's menu shows.
 * - Duplicate delivery (updates.ts): `redeliver(token, updateId)` sends an update once more, as Telegram
 *   does after a webhook timeout or when a crashed bot never confirmed its offset.
 */
export type { MenuViewer, StoredCommands } from './telegram-api/commands-menu.js';
export type { CreatedBot, ManagedBotCreation, ManagedBotView } from './telegram-api/managed-bots.js';
export type { ClientMarkup } from './telegram-api/reply-markup.js';
export {
  type ChatView,
  type FakeTelegram,
  type FakeTelegramOptions,
  type Fault,
  type MessageMatch,
  startFakeTelegram,
} from './telegram-api/server.js';
export type {
  CallbackAnswer,
  ChatActionRecord,
  EditRecord,
  RecordedCall,
  SentReplyKeyboard,
  WebhookDelivery,
} from './telegram-api/state.js';
export type { NewUpdate } from './telegram-api/updates.js';
export type { ButtonPress, UserEdit, UserMessage } from './telegram-api/user-side.js';
export type { WebhookOptions } from './telegram-api/webhook.js';
