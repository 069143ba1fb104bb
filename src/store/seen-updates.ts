import type { RedisClient } from './redis.js';

/** Telegram may deliver an update twice (a webhook retried after a timeout, a restart before the offset was confirmed). */
export const seenUpdateTtlSeconds = 24 * 60 * 60;

/**
 * Slack rejects a request whose timestamp is over 5 minutes old, and fleetbot one over 5 minutes
 * ahead: a signature can be replayed for at most 10 minutes.
 */
export const slackReplayWindowSeconds = 10 * 60;

/**
 * Remembers each chat update id (or button press on a message) for a day, so every update has exactly one effect. `first` marks the
 * id and says whether this is its first delivery, in one atomic SET NX shared by all bot processes.
 */
export function createSeenUpdates(redis: RedisClient, prefix: string) {
  return {
    async first(platform: string, updateId: string, ttlSeconds = seenUpdateTtlSeconds): Promise<boolean> {
      const set = await redis.set(
        `${prefix}:seen-update:${platform}:${updateId}`,
        '1',
        'EX',
        ttlSeconds,
        'NX',
      );
      return set === 'OK';
    },
  };
}

export type SeenUpdates = ReturnType<typeof createSeenUpdates>;
