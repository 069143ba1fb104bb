import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

/** The Redis every test talks to: the configured one, or the local server this project's machines run. */
export const testRedisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A unique key prefix per test, so parallel files and reruns never see each other's queues. */
export function uniquePrefix(label = 'test'): string {
  return `fleetbot-${label}-${randomUUID().slice(0, 8)}`;
}

export function testRedis(): Redis {
  // BullMQ workers need maxRetriesPerRequest: null; the same options serve plain commands.
  return new Redis(testRedisUrl, { maxRetriesPerRequest: null, lazyConnect: false });
}

/** Deletes every key under the prefix (SCAN, never KEYS, so a shared server is not blocked). */
export async function dropPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

/** A redis-server of a test's own: loopback only, its files in `dir`, nothing persisted unless asked. */
export function ownServerArgs(dir: string): string[] {
  return ['--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'];
}
