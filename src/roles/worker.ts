import { hostname } from 'node:os';
import { slackClient, slackOutbox } from '../bot/slack.js';
import { telegramApi, telegramOutbox } from '../bot/telegram.js';
import type { Config } from '../config.js';
import type { Outbox } from '../core/chat.js';
import { createHealthPoller } from '../jobs/health-poller.js';
import type { Outboxes } from '../jobs/outboxes.js';
import { startWorkers } from '../jobs/worker.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { createInvocationEventBus } from '../store/invocation-events.js';
import { createPlans } from '../store/plans.js';
import { createPacer } from '../store/rate-limits.js';
import type { RedisClient } from '../store/redis.js';
import { assertNoEviction } from '../store/redis-policy.js';
import { type RoleContext, type StartedRole, slackEditBudget } from './context.js';

/** How often a job edits its chat message, at most. */
const editIntervalMs = 3000;

/**
 * The worker role: every job queue, on `jobsRedis`, a connection of its own that waits out a Redis
 * outage instead of failing fast. `consoleOutbox` reaches the sandbox's console chat in this process.
 */
export async function startWorkerRole(
  ctx: RoleContext,
  jobsRedis: RedisClient,
  consoleOutbox?: Outbox,
): Promise<StartedRole> {
  const { config, aws } = ctx;
  const redis = jobsRedis;
  const log = ctx.log.child({ role: 'worker' });
  const outboxes = workerOutboxes(config, ctx.metrics, ctx.log, consoleOutbox);
  // BullMQ loses jobs when Redis evicts keys: refuse to work on such a Redis.
  if ((await assertNoEviction(redis)) === 'unknown')
    log.warn('could not read Redis maxmemory-policy (CONFIG refused); make sure it is noeviction');
  const prefix = config.redis.prefix;
  const plans = createPlans(redis, prefix);
  const poller = createHealthPoller(aws.fleet, config.provisioning.pollMs, log);
  const editBudget = slackEditBudget(redis, config);
  // Completion events reach every worker's rollouts, whichever worker took them off the queue.
  const eventBus = aws.receiveInvocationEvents && createInvocationEventBus(redis, prefix, log);
  const eventQueue = eventBus && aws.receiveInvocationEvents?.((events) => eventBus.publish(events), log);
  const workers = startWorkers(
    redis,
    { prefix, jobLockMs: config.jobLockMs },
    {
      ping: { outboxes, probeAws: aws.probe, now: Date.now, workerName: hostname() },
      access: config.access,
      rollout: {
        fleet: aws.fleet,
        runCommand: aws.jobRunCommand,
        ssmPacer: createPacer(redis, `${prefix}:pace:ssm`, config.rollout.ssmRequestsPerSecond, log),
        editBudget,
        isCancelled: (jobId) => plans.isCancelled(jobId),
        events: eventBus,
        outboxes,
        settings: {
          pollMs: config.rollout.pollMs,
          safetyPollMs: config.rollout.safetyPollMs,
          commandTimeoutSeconds: config.rollout.commandTimeoutSeconds,
          deployDocument: config.rollout.deployDocument,
          editIntervalMs,
          awsWaitMs: config.rollout.awsWaitMs,
          planTtlMs: config.rollout.planTtlMs,
          deliveryWaitMs: config.rollout.deliveryWaitMs,
          listingLagMs: config.rollout.listingLagMs,
        },
        log: log.child({ queue: 'rollout' }),
      },
      planExpiry: { plans, outboxes, editBudget, log },
      restart: {
        runCommand: aws.jobRunCommand,
        outboxes,
        pollMs: config.provisioning.pollMs,
        // The restart document gives up after 900 s (infra/fleetbot.yaml); SSM decides first.
        timeoutMs: 960_000,
        now: Date.now,
        log,
      },
      provision: {
        fleet: aws.fleet,
        runCommand: aws.jobRunCommand,
        secrets: aws.secrets,
        poller,
        launchPacer: createPacer(
          redis,
          `${prefix}:pace:run-instances`,
          config.provisioning.launchesPerSecond,
          log,
        ),
        outboxes,
        settings: {
          ...config.provisioning,
          parameterPrefix: config.aws.parameterPrefix,
          serviceName: config.instances.serviceName,
          installCommand: config.instances.installCommand,
          version: config.instances.version,
          editIntervalMs,
        },
        log,
      },
    },
    log,
    ctx.metrics,
  );
  return {
    async stop() {
      await workers.close(config.shutdownGraceMs);
      poller.stop();
      await eventQueue?.stop();
      await eventBus?.stop();
    },
  };
}

/** Where jobs write: every configured chat, reached through its API rather than its adapter. */
function workerOutboxes(config: Config, metrics: Metrics, log: Logger, consoleOutbox?: Outbox): Outboxes {
  return {
    telegram:
      config.telegram && telegramOutbox(telegramApi(config.telegram.token, config.telegram.apiRoot, metrics)),
    slack:
      config.slack &&
      slackOutbox(
        slackClient({
          token: config.slack.botToken,
          apiUrl: config.slack.apiUrl,
          meter: metrics,
          log: log.child({ chat: 'slack' }),
        }),
        metrics,
        config.slack.command,
      ),
    console: consoleOutbox,
  };
}
