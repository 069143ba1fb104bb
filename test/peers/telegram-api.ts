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
 */
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
  WebhookDelivery,
} from './telegram-api/state.js';
export type { NewUpdate } from './telegram-api/updates.js';
export type { ButtonPress, UserEdit, UserMessage } from './telegram-api/user-side.js';
export type { WebhookOptions } from './telegram-api/webhook.js';
