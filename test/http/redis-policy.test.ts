import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoEviction, EvictionPolicyError, readEvictionPolicy } from '../../src/store/redis-policy.js';
import { type PrivateRedis, startPrivateRedis } from './private-redis.js';

describe('the Redis eviction check', () => {
  let safe: PrivateRedis;
  let evicting: PrivateRedis;
  let managed: PrivateRedis;
  beforeAll(async () => {
    [safe, evicting, managed] = await Promise.all([
      startPrivateRedis(['--maxmemory-policy', 'noeviction']),
      startPrivateRedis(['--maxmemory-policy', 'allkeys-lru']),
      // Managed services refuse CONFIG; renaming it away is the same thing locally.
      startPrivateRedis(['--rename-command', 'CONFIG', '']),
    ]);
  });
  afterAll(async () => {
    await Promise.all([safe?.stop(), evicting?.stop(), managed?.stop()]);
  });

  it('when Redis never evicts, then the check passes', async () => {
    await expect(assertNoEviction(safe.redis)).resolves.toBe('noeviction');
  });

  it('when Redis evicts, then the check throws with the fix in its message', async () => {
    const error = await assertNoEviction(evicting.redis).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EvictionPolicyError);
    expect((error as Error).message).toBe(
      'Redis maxmemory-policy is allkeys-lru; BullMQ needs noeviction: ' +
        'CONFIG SET maxmemory-policy noeviction, and in redis.conf',
    );
  });

  it('when Redis refuses CONFIG, then the policy is unknown and the check does not throw', async () => {
    expect(await readEvictionPolicy(managed.redis)).toBe('unknown');
    await expect(assertNoEviction(managed.redis)).resolves.toBe('unknown');
  });
});
