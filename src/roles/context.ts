import type { AwsServices } from '../aws/services.js';
import type { Config } from '../config.js';
import { createRoleOf, type RoleOf } from '../core/caller.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { type AuditTrail, createAuditTrail } from '../store/audit.js';
import { createMembers, type Members } from '../store/members.js';
import { createSharedBudget, createWindowLimit } from '../store/rate-limits.js';
import type { RedisClient } from '../store/redis.js';

/** What every role of one process shares: built once by main (and by tests the same way). */
export interface RoleContext {
  config: Config;
  log: Logger;
  metrics: Metrics;
  aws: AwsServices;
  /** Fails fast while Redis is away: for chat requests and the dashboard (src/store/redis.ts). */
  redis: RedisClient;
  members: Members;
  auditTrail: AuditTrail;
  roleOf: RoleOf;
}

export function createRoleContext(
  parts: Pick<RoleContext, 'config' | 'log' | 'metrics' | 'aws' | 'redis'>,
): RoleContext {
  const { config, redis } = parts;
  const members = createMembers(redis, config.redis.prefix);
  return {
    ...parts,
    members,
    auditTrail: createAuditTrail(redis, config.redis.prefix, config.auditRetention),
    roleOf: createRoleOf(config.access, (userId) => members.isMember(userId)),
  };
}

/** A started role: `stop` ends what it started, in the order that loses nothing. */
export interface StartedRole {
  stop(): Promise<void>;
}

/** Slack's chat.update limit is per workspace: every process's edits share one budget. */
export function slackEditBudget(redis: RedisClient, config: Config) {
  return createSharedBudget(
    createWindowLimit(
      redis,
      `${config.redis.prefix}:budget:slack-update`,
      config.rollout.slackUpdatesPerMinute,
      60_000,
    ),
    'workspace',
  );
}

/** Runs every stop in order; one that fails is logged and the rest still run. */
export async function runStops(stops: readonly (() => Promise<void>)[], log: Logger): Promise<void> {
  for (const stop of stops) {
    await stop().catch((err: unknown) => log.warn({ err }, 'error while stopping'));
  }
}
