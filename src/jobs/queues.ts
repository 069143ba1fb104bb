import { Queue } from 'bullmq';
import { z } from 'zod';
import { slackChannelIdPattern, telegramUserIdPattern } from '../core/caller.js';
import { chatPlatforms } from '../core/chat.js';
import { versionPattern } from '../core/version.js';
import type { Logger } from '../log.js';
import { logErrors, type RedisClient } from '../store/redis.js';
import { unreachableReasons } from './reachability.js';

/**
 * Queue names and the payload each job carries. Payloads hold references only (user ids,
 * message refs, versions): never a secret and never a Slack response_url.
 */
export const queueNames = { ops: 'ops', provision: 'provision', rollout: 'rollout' } as const;

export const messageRefSchema = z.object({
  platform: z.enum(chatPlatforms),
  chatId: z.string().min(1).max(64),
  messageId: z.string().min(1).max(64),
});

/** Members are named by their numeric Telegram user id in every payload. */
const telegramUserId = z.string().regex(telegramUserIdPattern);

export const pingPayload = z.object({
  requestedBy: z.string().min(1).max(64),
  requestedAt: z.number().int().positive(),
  message: messageRefSchema,
});
export type PingPayload = z.infer<typeof pingPayload>;

/** A member's restart command, followed until it ends so their message can say how it went. */
export const restartPayload = z.object({
  userId: telegramUserId,
  instanceId: z.string().regex(/^i-[0-9a-f]{8,17}$/),
  commandId: z.string().min(1).max(64),
  message: messageRefSchema,
});
export type RestartPayload = z.infer<typeof restartPayload>;

/** After /revoke: stop the former member's server, unbind their parameters, ask about terminating. */
export const revokePayload = z.object({
  userId: telegramUserId,
  /** The admin who revoked; the worker checks again that they are one. */
  requestedBy: z.string().min(1).max(64),
  message: messageRefSchema,
});
export type RevokePayload = z.infer<typeof revokePayload>;

export const provisionPayload = z.object({
  userId: telegramUserId,
  mode: z.enum(['provision', 'start']),
  requestedBy: z.string().min(1).max(64),
  startedAt: z.number().int().positive(),
  message: messageRefSchema,
  /** Recorded as soon as it is known, so a restarted job resumes rather than launches again. */
  instanceId: z
    .string()
    .regex(/^i-[0-9a-f]{8,17}$/)
    .optional(),
  boundArn: z.string().max(200).optional(),
});
export type ProvisionPayload = z.infer<typeof provisionPayload>;

export const rolloutRequestSchema = z.object({
  operation: z.enum(['deploy', 'patch-scan', 'patch-install']),
  version: z.string().regex(versionPattern).optional(),
  reboot: z.enum(['if-needed', 'never']),
  targets: z.string().min(1).max(20_000),
  concurrency: z.string().regex(/^\d{1,5}%?$/),
  maxErrors: z.string().regex(/^\d{1,5}%?$/),
  canary: z.number().int().min(0).max(1000),
});

export const batchSchema = z.object({
  instanceIds: z
    .array(z.string().regex(/^i-[0-9a-f]{8,17}$/))
    .min(1)
    .max(50),
  /** `sending` is written before SendCommand, the command id right after: a crash in between is found by Comment. */
  state: z.enum(['planned', 'sending', 'sent', 'done']),
  commandId: z.string().optional(),
  /** When the `sending` mark was written: a send younger than SSM's listing lag may not be listed yet. */
  sendingAt: z.number().int().positive().optional(),
});

export const rolloutPayload = z.object({
  planId: z.string().regex(/^[a-z0-9]{8,32}$/),
  request: rolloutRequestSchema,
  requestedBy: z.string().min(1).max(64),
  approvedBy: z.string().min(1).max(64),
  message: messageRefSchema,
  startedAt: z.number().int().positive(),
  batches: z.array(batchSchema).optional(),
  /** Instances that matched but were never sent anything (halted or cancelled). */
  halted: z.enum(['errors', 'cancelled']).optional(),
  /** Written by older jobs only: planned instances found no longer running (see `unreachable`). */
  skipped: z.array(z.string().regex(/^i-[0-9a-f]{8,17}$/)).optional(),
  /**
   * Planned instances a command could not reach (no longer running, SSM agent not online, delivery
   * never possible), so never run anything, and why. Written before the `sending` mark of the batch
   * it shrinks; optional, so older jobs still parse.
   */
  unreachable: z.record(z.string().regex(/^i-[0-9a-f]{8,17}$/), z.enum(unreachableReasons)).optional(),
});
export type RolloutPayload = z.infer<typeof rolloutPayload>;

export const schedulePayload = z.object({
  scheduleId: z.string().regex(/^[a-z0-9-]{1,40}$/),
  request: rolloutRequestSchema,
  createdBy: z.string().min(1).max(64),
  /** Who approved the schedule's plan; absent for scans scheduled without approval. */
  approvedBy: z.string().min(1).max(64).optional(),
  /** Slack channel that receives each run's summary. */
  channel: z.string().regex(slackChannelIdPattern),
  /** The current run, recorded like any rollout so a crash resumes it. */
  run: rolloutPayload.optional(),
});
export type SchedulePayload = z.infer<typeof schedulePayload>;

export interface Schedule {
  id: string;
  pattern: string;
  next?: Date;
  data: SchedulePayload;
}

/** A plan to look at once its time is up: nobody handled it, its message says it expired. */
export const planExpiryPayload = z.object({ planId: z.string().regex(/^[a-f0-9]{12}$/) });
export type PlanExpiryPayload = z.infer<typeof planExpiryPayload>;

export interface Queues {
  ping(data: PingPayload): Promise<string>;
  /** Reports the plan as expired on its message if it is still pending after `afterMs`. */
  reportPlanExpiry(planId: string, afterMs: number): Promise<void>;
  followRestart(data: RestartPayload): Promise<string>;
  /** Stops a former member's server and unbinds their parameters (src/jobs/revoke.ts). */
  revokeServer(data: RevokePayload): Promise<string>;
  /** One provision (or start) per member at a time: `queued: false` means one is already running. */
  provision(data: ProvisionPayload): Promise<{ jobId: string; queued: boolean }>;
  provisionInProgress(userId: string): Promise<boolean>;
  rollout(data: RolloutPayload): Promise<string>;
  /** State of a rollout job, or undefined when it is gone. */
  rolloutState(jobId: string): Promise<string | undefined>;
  /** A rollout job as stored; `data` is undefined when what Redis holds is not a valid rollout. */
  rolloutJob(
    jobId: string,
  ): Promise<
    | { id: string; state: string; data: RolloutPayload | undefined; result: unknown; failedReason?: string }
    | undefined
  >;
  /** Recurring rollouts (BullMQ job schedulers on the rollout queue). */
  upsertSchedule(pattern: string, data: SchedulePayload): Promise<void>;
  schedules(): Promise<Schedule[]>;
  removeSchedule(id: string): Promise<boolean>;
  recentRollouts(
    limit: number,
  ): Promise<{ id: string; name: string; state: string; data: RolloutPayload; progress: unknown }[]>;
  close(): Promise<void>;
}

const provisionJobId = (userId: string) => `provision-${userId}`;

/**
 * BullMQ states of a job that has not finished: it runs, waits its turn, or waits out a delay or its
 * child jobs. A provision or rollout in any of them is still under way: an identical one is not
 * started beside it, and /cancel still applies to it.
 */
export const liveJobStates: readonly string[] = [
  'active',
  'waiting',
  'delayed',
  'prioritized',
  'waiting-children',
];

/**
 * The bot's side of the queues. Give it the `requests` connection: while Redis is away, adding a
 * job then fails at once (and the dispatcher says so) instead of waiting in ioredis' offline queue.
 * With a logger, BullMQ's own errors become log lines (main always passes one).
 */
export function openQueues(connection: RedisClient, prefix: string, log?: Logger): Queues {
  const ops = new Queue(queueNames.ops, {
    connection,
    prefix,
    // Finished jobs would otherwise stay in Redis forever.
    defaultJobOptions: { removeOnComplete: { count: 1000 }, removeOnFail: { count: 5000 } },
  });
  const provisions = new Queue(queueNames.provision, {
    connection,
    prefix,
    defaultJobOptions: { removeOnComplete: { count: 1000 }, removeOnFail: { count: 5000 } },
  });
  const rollouts = new Queue(queueNames.rollout, {
    connection,
    prefix,
    defaultJobOptions: { removeOnComplete: { count: 500 }, removeOnFail: { count: 500 } },
  });
  // Without a listener BullMQ prints each error, stack and all, to the console.
  if (log)
    for (const q of [ops, provisions, rollouts])
      q.on('error', logErrors(log.child({ queue: q.name }), 'queue'));
  return {
    ...opsQueue(ops),
    ...provisionQueue(provisions),
    ...rolloutQueue(rollouts),
    async close() {
      await Promise.all([ops.close(), provisions.close(), rollouts.close()]);
    },
  };
}

/** Short jobs: pings, plan expiries, restart followers and revokes. */
function opsQueue(ops: Queue): Pick<Queues, 'ping' | 'reportPlanExpiry' | 'followRestart' | 'revokeServer'> {
  return {
    async ping(data) {
      const job = await ops.add('ping', pingPayload.parse(data), {
        attempts: 2,
        backoff: { type: 'fixed', delay: 1000 },
      });
      return job.id ?? '';
    },
    async reportPlanExpiry(planId, afterMs) {
      await ops.add('plan-expiry', planExpiryPayload.parse({ planId }), {
        jobId: `plan-expiry-${planId}`,
        delay: afterMs,
        // A clock a little behind Redis' finds the plan still pending: it looks again shortly.
        attempts: 10,
        backoff: { type: 'fixed', delay: 2000 },
      });
    },
    async followRestart(data) {
      // One follower per command, however often the bot is asked.
      const job = await ops.add('restart', restartPayload.parse(data), {
        jobId: `restart-${data.commandId}`,
        attempts: 3,
        backoff: { type: 'exponential', delay: 2000 },
      });
      return job.id ?? '';
    },
    async revokeServer(data) {
      // Each step is safe to repeat: a crash or a lost lock just runs it again.
      const job = await ops.add('revoke', revokePayload.parse(data), { attempts: 2 });
      return job.id ?? '';
    },
  };
}

function provisionQueue(provisions: Queue): Pick<Queues, 'provision' | 'provisionInProgress'> {
  return {
    async provision(data) {
      const jobId = provisionJobId(data.userId);
      const previous = await provisions.getJob(jobId);
      if (previous) {
        if (liveJobStates.includes(await previous.getState())) return { jobId, queued: false };
        // A finished run keeps its id; it must go before the same member can provision again.
        await previous.remove();
      }
      const job = await provisions.add(data.mode, provisionPayload.parse(data), {
        jobId,
        attempts: 3,
        backoff: { type: 'exponential', delay: 5000 },
      });
      // Two requests at once: BullMQ keeps the first job under this id and returns it to the second.
      const ours = job.data.message.messageId === data.message.messageId;
      return { jobId: job.id ?? jobId, queued: ours };
    },
    async provisionInProgress(userId) {
      const job = await provisions.getJob(provisionJobId(userId));
      return job ? liveJobStates.includes(await job.getState()) : false;
    },
  };
}

/** Rollouts, and the schedulers that start recurring ones. */
function rolloutQueue(
  rollouts: Queue,
): Pick<
  Queues,
  | 'rollout'
  | 'rolloutState'
  | 'rolloutJob'
  | 'upsertSchedule'
  | 'schedules'
  | 'removeSchedule'
  | 'recentRollouts'
> {
  return {
    async rollout(data) {
      const job = await rollouts.add(data.request.operation, rolloutPayload.parse(data), {
        jobId: `rollout-${data.planId}`,
        // Crash-safe by design: a retried job resumes from its recorded batches.
        attempts: 5,
        backoff: { type: 'exponential', delay: 2000 },
      });
      return job.id ?? '';
    },
    async rolloutState(jobId) {
      const job = await rollouts.getJob(jobId);
      return job ? await job.getState() : undefined;
    },
    async upsertSchedule(pattern, data) {
      await rollouts.upsertJobScheduler(
        data.scheduleId,
        { pattern },
        {
          name: 'scheduled',
          data: schedulePayload.parse(data),
          opts: { attempts: 5, backoff: { type: 'exponential', delay: 2000 } },
        },
      );
    },
    async schedules() {
      const found = await rollouts.getJobSchedulers(0, 99);
      return found.flatMap((s) => {
        const data = schedulePayload.safeParse(s.template?.data);
        return data.success && s.pattern
          ? [{ id: s.key, pattern: s.pattern, next: s.next ? new Date(s.next) : undefined, data: data.data }]
          : [];
      });
    },
    removeSchedule: (id) => rollouts.removeJobScheduler(id),
    async rolloutJob(jobId) {
      const job = await rollouts.getJob(jobId);
      if (!job) return undefined;
      const data = rolloutPayload.safeParse(job.data);
      return {
        id: job.id ?? jobId,
        state: await job.getState(),
        data: data.success ? data.data : undefined,
        result: job.returnvalue,
        failedReason: job.failedReason,
      };
    },
    async recentRollouts(limit) {
      const jobs = await rollouts.getJobs(
        ['active', 'waiting', 'delayed', 'completed', 'failed'],
        0,
        limit - 1,
      );
      const out = [];
      for (const job of jobs.filter(Boolean).slice(0, limit)) {
        const data = rolloutPayload.safeParse(job.data);
        if (data.success)
          out.push({
            id: job.id ?? '',
            name: job.name,
            state: await job.getState(),
            data: data.data,
            progress: job.progress,
          });
      }
      return out.sort((a, b) => b.data.startedAt - a.data.startedAt);
    },
  };
}
