import { createHmac } from 'node:crypto';
import type { AssistantBot } from '../core/managed-bots.js';
import type { RedisClient } from './redis.js';

export interface AssistantBotRecord extends AssistantBot {
  /** Users the member let talk to their assistant besides themselves. */
  addedUserIds: number[];
}

/**
 * Which managed bot is each member's assistant, and which of its tokens was stored last. The token
 * is kept as an HMAC keyed with fleetbot's own bot token: it tells "already stored" from "changed"
 * without Redis ever holding the token or anything that can be turned back into it.
 */
export interface AssistantBots {
  get(userId: string): Promise<AssistantBotRecord | undefined>;
  /** Records the bot and which token is now stored. */
  save(userId: string, bot: AssistantBot, storedToken: string): Promise<AssistantBotRecord>;
  setAddedUsers(userId: string, addedUserIds: number[]): Promise<void>;
  /** True when this token is the one stored last for this member's bot. */
  isStored(userId: string, botId: number, token: string): Promise<boolean>;
  /** After /forget: the next token Telegram reports is stored again, even if it did not change. */
  forgetStoredToken(userId: string): Promise<void>;
  /**
   * Held while fleetbot itself replaces a member's token, so the change Telegram reports meanwhile
   * is not stored a second time. False when another replacement holds it.
   */
  lockRotation(userId: string, ttlMs: number): Promise<boolean>;
  unlockRotation(userId: string): Promise<void>;
  rotating(userId: string): Promise<boolean>;
}

export function createAssistantBots(redis: RedisClient, prefix: string, digestKey: string): AssistantBots {
  const botsKey = `${prefix}:assistant-bot`;
  const digestsKey = `${prefix}:assistant-bot-token`;
  const lockKey = (userId: string) => `${prefix}:assistant-bot-rotating:${userId}`;
  const digest = (botId: number, token: string) =>
    createHmac('sha256', digestKey).update(`${botId}:${token}`).digest('hex');
  const read = async (userId: string) => {
    const raw = await redis.hget(botsKey, userId);
    return raw ? (JSON.parse(raw) as AssistantBotRecord) : undefined;
  };
  return {
    get: read,
    async save(userId, bot, storedToken) {
      const previous = await read(userId);
      // A new bot starts with nobody added; the same bot keeps its list.
      const record: AssistantBotRecord = {
        botId: bot.botId,
        username: bot.username,
        addedUserIds: previous?.botId === bot.botId ? previous.addedUserIds : [],
      };
      await redis
        .multi()
        .hset(botsKey, userId, JSON.stringify(record))
        .hset(digestsKey, userId, digest(bot.botId, storedToken))
        .exec();
      return record;
    },
    async setAddedUsers(userId, addedUserIds) {
      const record = await read(userId);
      if (record) await redis.hset(botsKey, userId, JSON.stringify({ ...record, addedUserIds }));
    },
    async isStored(userId, botId, token) {
      return (await redis.hget(digestsKey, userId)) === digest(botId, token);
    },
    async forgetStoredToken(userId) {
      await redis.hdel(digestsKey, userId);
    },
    async lockRotation(userId, ttlMs) {
      return (await redis.set(lockKey(userId), '1', 'PX', ttlMs, 'NX')) === 'OK';
    },
    async unlockRotation(userId) {
      await redis.del(lockKey(userId));
    },
    async rotating(userId) {
      return (await redis.exists(lockKey(userId))) === 1;
    },
  };
}
