import type { RedisClient } from './redis.js';

/**
 * BullMQ keeps jobs, locks and ids as ordinary keys: a Redis that evicts under memory pressure
 * silently loses jobs (or a lock, so one job runs twice). Only `noeviction` is safe.
 */

/** `unknown` when the server refuses CONFIG, as managed services (ElastiCache, Memorystore) do. */
export async function readEvictionPolicy(redis: RedisClient): Promise<string> {
  try {
    const reply = (await redis.call('CONFIG', 'GET', 'maxmemory-policy')) as unknown;
    // RESP2 answers [name, value]; RESP3 answers a map, which ioredis hands over as an object.
    const value = Array.isArray(reply)
      ? reply[1]
      : reply && typeof reply === 'object'
        ? (reply as Record<string, unknown>)['maxmemory-policy']
        : undefined;
    return typeof value === 'string' && value !== '' ? value : 'unknown';
  } catch {
    return 'unknown';
  }
}

export class EvictionPolicyError extends Error {
  constructor(readonly policy: string) {
    super(
      `Redis maxmemory-policy is ${policy}; BullMQ needs noeviction: ` +
        'CONFIG SET maxmemory-policy noeviction, and in redis.conf',
    );
    this.name = 'EvictionPolicyError';
  }
}

/**
 * Throws when Redis reports a policy other than `noeviction`. A server that hides its config
 * cannot be checked from here, so that is answered with `unknown` (for the caller to log)
 * rather than refused: on a managed Redis the policy lives in the provider's parameter group.
 */
export async function assertNoEviction(redis: RedisClient): Promise<'noeviction' | 'unknown'> {
  const policy = await readEvictionPolicy(redis);
  if (policy === 'noeviction' || policy === 'unknown') return policy;
  throw new EvictionPolicyError(policy);
}
