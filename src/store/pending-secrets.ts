import { type SecretKindName, secretKindNames } from '../core/secret-kinds.js';
import type { RedisClient } from './redis.js';

/**
 * After `/set <kind>` the user's next message is that secret. Only the kind is kept, never a
 * value, and it expires on its own so a forgotten /set cannot capture a chat message days later.
 */
export interface PendingSecrets {
  expect(userId: string, kind: SecretKindName, ttlMs: number): Promise<void>;
  /** The kind awaited from this user, consumed: only the next message counts. */
  take(userId: string): Promise<SecretKindName | undefined>;
}

export function createPendingSecrets(redis: RedisClient, prefix: string): PendingSecrets {
  const key = (userId: string) => `${prefix}:pending-secret:${userId}`;
  return {
    async expect(userId, kind, ttlMs) {
      await redis.set(key(userId), kind, 'PX', ttlMs);
    },
    async take(userId) {
      const kind = await redis.getdel(key(userId));
      return secretKindNames.find((k) => k === kind);
    },
  };
}
