import type { Logger } from '../log.js';
import type { RedisClient } from './redis.js';

/**
 * Rate limits shared by every bot process through Redis. The pacer hands out evenly spaced slots
 * (a burst waits its turn instead of failing); the window counter refuses past a limit.
 */

// Reserves the next free slot: returns the slot (ms, Redis time) and how long the caller must wait.
// Redis TIME keeps all processes on one clock.
const reserveSlot = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nextFree = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, nextFree)
redis.call('SET', KEYS[1], slot + tonumber(ARGV[1]), 'PX', tonumber(ARGV[1]) * 2 + 1000 + (slot - now))
return {slot, slot - now}
`;

/** Spaces calls evenly and never refuses: a burst waits its turn (unlike a Budget, which can run out). */
export interface Pacer {
  /** Resolves when the caller may make its call; never more often than the configured rate. */
  wait(): Promise<void>;
}

/**
 * With a logger, every slot handed out is logged at debug as `{ pacer: key, slotAt }`: what the pace
 * actually scheduled, which arrival times at AWS cannot show on a busy machine.
 */
export function createPacer(redis: RedisClient, key: string, perSecond: number, log?: Logger): Pacer {
  const spacingMs = Math.ceil(1000 / perSecond);
  return {
    async wait() {
      const [slotAt, delay] = (await redis.eval(reserveSlot, 1, key, spacingMs)) as [number, number];
      log?.debug({ pacer: key, slotAt }, 'pace slot reserved');
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    },
  };
}

export interface WindowLimit {
  /** Counts one hit; false when the limit for the current window is already used up. */
  hit(id: string): Promise<boolean>;
}

export function createWindowLimit(
  redis: RedisClient,
  keyPrefix: string,
  limit: number,
  windowMs: number,
): WindowLimit {
  return {
    async hit(id) {
      const key = `${keyPrefix}:${id}`;
      const [[, count] = [], [, ttl] = []] = (await redis.multi().incr(key).pttl(key).exec()) ?? [];
      if (Number(ttl) < 0) await redis.pexpire(key, windowMs);
      return Number(count) <= limit;
    },
  };
}

/** A window limit as a budget of actions shared by every process (e.g. Slack chat.update per workspace). */
export function createSharedBudget(limit: WindowLimit, id: string, retryMs = 1000) {
  return {
    tryTake: () => limit.hit(id),
    async take() {
      while (!(await limit.hit(id))) await new Promise((resolve) => setTimeout(resolve, retryMs));
    },
  };
}
