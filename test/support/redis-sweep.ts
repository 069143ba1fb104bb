import type { Redis } from 'ioredis';

/**
 * Every key on one server, or on one node of a Redis Cluster (each master swept on its own): SCAN
 * walks only the keys of the server it is sent to, so a cluster is swept node by node.
 */
export async function redisKeys(redis: Redis): Promise<string[]> {
  const all: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    all.push(...keys);
  } while (cursor !== '0');
  return all;
}

/**
 * Every key on the server (or cluster node) whose name or content matches: how a canary test
 * proves Redis never held a secret.
 */
export async function redisKeysMatching(redis: Redis, leaks: (text: string) => boolean): Promise<string[]> {
  const found: string[] = [];
  for (const key of await redisKeys(redis)) {
    const type = await redis.type(key);
    const content =
      type === 'string'
        ? await redis.get(key)
        : type === 'hash'
          ? JSON.stringify(await redis.hgetall(key))
          : type === 'list'
            ? JSON.stringify(await redis.lrange(key, 0, -1))
            : type === 'set'
              ? JSON.stringify(await redis.smembers(key))
              : type === 'zset'
                ? JSON.stringify(await redis.zrange(key, '0', '-1'))
                : type === 'stream'
                  ? JSON.stringify(await redis.xrange(key, '-', '+'))
                  : '';
    if (leaks(key) || leaks(content ?? '')) found.push(key);
  }
  return found;
}
