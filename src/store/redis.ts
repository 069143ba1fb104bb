import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisSettings } from '../config.js';
import type { Logger } from '../log.js';

/** A connection to one Redis server or to a Redis Cluster: everything fleetbot stores works on both. */
export type RedisClient = Redis | Cluster;

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

/**
 * Opens a connection to one server or to a cluster with the same behaviour per use. It does not
 * connect yet (`lazyConnect`), and a failed first connect is not retried: the caller decides.
 */
export function openRedis(settings: RedisSettings, use: RedisUse, tlsCa?: string): RedisClient {
  const { username, password } = settings;
  // Node checks the certificate against the host name, with the system's CAs unless one is given.
  const tls = settings.tls ? (tlsCa ? { ca: tlsCa } : {}) : undefined;
  const { enableOfflineQueue, ...perCommand } = redisOptions(use);
  const node = { username, password, tls, lazyConnect: true, ...perCommand };
  const [first] = settings.nodes;
  if (!settings.cluster)
    return new Redis({ ...first, db: settings.db, ...node, enableOfflineQueue, retryStrategy: () => null });
  return new Cluster(settings.nodes, {
    redisOptions: node,
    enableOfflineQueue,
    lazyConnect: true,
    clusterRetryStrategy: () => null,
    // Nodes are reached by the names the cluster announces. With TLS those names must stay names, not
    // the addresses they resolve to, or no certificate matches (a managed cluster's nodes are names).
    dnsLookup: (address, callback) => callback(null, address),
  });
}

/** After the first connect: reconnect for good, and let duplicates (BullMQ's) connect on their own. */
export function keepReconnecting(redis: RedisClient): void {
  if (redis instanceof Cluster) {
    redis.options.clusterRetryStrategy = reconnectDelay;
    redis.options.lazyConnect = false;
  } else {
    redis.options.retryStrategy = reconnectDelay;
    redis.options.lazyConnect = false;
  }
}

const unreachableMessages = [
  "Stream isn't writeable", // enableOfflineQueue: false while disconnected
  'Reached the max retries per request limit', // in flight when the link dropped
  'Connection is closed', // closed for good, or closing
  'Command timed out', // connected, but the server does not answer
  "Cluster isn't ready", // a cluster with enableOfflineQueue: false, while it (re)connects
  'None of startup nodes is available', // no seed node answers
  'Failed to refresh slots cache', // every node failed while the cluster looked for its slots
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
export function watchRedis(redis: RedisClient, log: Logger): void {
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
  // A cluster reports each node's failures apart; the cluster's own error follows when it matters.
  redis.on('node error', (err: Error) => log.debug({ err: err?.message }, 'Redis cluster node error'));
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
