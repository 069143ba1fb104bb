import type { UserFromGetMe } from 'grammy/types';
import { type BotState, createBotState } from './state.js';

/**
 * Every bot the fake knows, by token. A replaced token is kept aside: HTTP calls with it get 401 like
 * any unknown token, while the test helpers still find the bot by the token the test started with.
 */
export interface BotDirectory {
  /** The bot this token opens over HTTP; undefined for unknown and revoked tokens. */
  live(token: string): BotState | undefined;
  /** Live or revoked: what a test helper may look a bot up by. */
  find(token: string): BotState | undefined;
  /** Registers a bot, or updates the getMe of one already registered under this token. */
  add(token: string, botInfo?: Partial<UserFromGetMe>): BotState;
  /** Moves the bot to a new token; the old one stops working. */
  retoken(bot: BotState, token: string): void;
  usernameTaken(username: string): boolean;
  /** A bot id no registered bot has, shaped like the ids Telegram gives new bots. */
  newBotId(): number;
}

export function createBotDirectory(defaults: Partial<UserFromGetMe> | undefined): BotDirectory {
  const bots = new Map<string, BotState>();
  const revoked = new Map<string, BotState>();
  let nextNewId = 8_000_000_001;
  const ids = () => new Set([...bots.values()].map((b) => b.me.id));

  return {
    live: (token) => bots.get(token),
    find: (token) => bots.get(token) ?? revoked.get(token),
    add(token, botInfo) {
      const existing = bots.get(token);
      if (existing) {
        Object.assign(existing.me, botInfo);
        existing.me.can_manage_bots ??= false;
        return existing;
      }
      // Like Telegram, the bot's id is the token's numeric prefix when it has one.
      const tokenId = /^(\d+):/.exec(token)?.[1];
      const id = botInfo?.id ?? (tokenId ? Number(tokenId) : (defaults?.id ?? 7_000_000_000 + bots.size));
      const me: UserFromGetMe = {
        first_name: 'Fake Bot',
        username: `fake_${id}_bot`,
        can_join_groups: true,
        can_read_all_group_messages: false,
        supports_inline_queries: false,
        can_connect_to_business: false,
        has_main_web_app: false,
        has_topics_enabled: false,
        allows_users_to_create_topics: false,
        can_manage_bots: false,
        supports_join_request_queries: false,
        ...defaults,
        ...botInfo,
        id,
        is_bot: true,
      };
      // getMe always carries the flag, even when a test hands in `undefined`.
      me.can_manage_bots ??= false;
      const bot = createBotState(token, me);
      revoked.delete(token);
      bots.set(token, bot);
      return bot;
    },
    retoken(bot, token) {
      bots.delete(bot.token);
      revoked.set(bot.token, bot);
      bot.token = token;
      bots.set(token, bot);
    },
    usernameTaken(username) {
      const wanted = username.toLowerCase();
      return [...bots.values()].some((b) => b.me.username.toLowerCase() === wanted);
    },
    newBotId() {
      const taken = ids();
      while (taken.has(nextNewId)) nextNewId += 1;
      return nextNewId++;
    },
  };
}
