import type { Redis, RedisOptions } from 'ioredis';
import type { Logger } from '../log.js';

/**
 * How each role talks to Redis when Redis is away.
 *
 * `requests` (chat handlers, the dashboard) answers people: while disconnected it refuses commands at
 * once instead of queueing them, a command in flight fails when the link drops, and a server that
 * hangs gets a deadline. The dispatcher turns those refusals into a plain answer.
 *
 * `jobs` (workers) is patient: BullMQ needs maxRetriesPerRequest: null, and a job's commands should
 * simply wait for Redis and carry on from the job's recorded phase.
 */
export type RedisUse = 'requests' | 'jobs';

export function redisOptions(use: RedisUse): RedisOptions {
  return use === 'requests'
    ? { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 5000 }
    : { maxRetriesPerRequest: null };
}

/** Short on loopback, bounded so a long outage costs one attempt every two seconds. */
export const reconnectDelay = (attempt: number): number => Math.min(attempt * 200, 2000);

const unreachableMessages = [
  "Stream isn't writeable", // enableOfflineQueue: false while disconnected
  'Reached the max retries per request limit', // in flight when the link dropped
  'Connection is closed', // closed for good, or closing
  'Command timed out', // connected, but the server does not answer
];
const unreachableCodes = ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND'];

/** True for errors that say Redis could not be reached, as opposed to Redis refusing a command. */
export function isRedisUnreachable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return (
    (typeof code === 'string' && unreachableCodes.includes(code)) ||
    unreachableMessages.some((m) => error.message.includes(m)) ||
    unreachableCodes.some((c) => error.message.includes(c))
  );
}

/**
 * Reports a connection's outages on one JSON line each: lost (once, however many reconnect attempts
 * fail) and restored. Without an `error` listener ioredis prints every failed attempt to the console.
 */
export function watchRedis(redis: Redis, log: Logger): void {
  let down = false;
  const lost = (err?: Error) => {
    if (down) {
      log.debug({ err: err?.message }, 'Redis still unreachable');
      return;
    }
    down = true;
    log.warn({ err: err?.message ?? null }, 'Redis connection lost; reconnecting');
  };
  redis.on('error', (err: Error) => lost(err));
  redis.on('reconnecting', () => lost());
  redis.on('ready', () => {
    if (!down) return;
    down = false;
    log.info('Redis connection restored');
  });
}

/**
 * An `error` listener for a BullMQ Queue or Worker: one JSON line instead of BullMQ's console dump.
 * Unreachable-Redis errors repeat with every reconnect attempt and are already reported by the
 * connection's watcher, so they stay at debug.
 */
export function logErrors(log: Logger, what: string): (err: Error) => void {
  return (err) => {
    if (isRedisUnreachable(err)) log.debug({ err: err.message }, `${what}: Redis unreachable`);
    else log.error({ err: err.message }, `${what} error`);
  };
}
