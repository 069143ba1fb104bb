import { type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { z } from 'zod';
import { type AccessPolicy, resolveRole } from '../core/caller.js';
import { rolloutTitle } from '../core/rollout-request.js';
import type { Logger } from '../log.js';
import { type Metrics, watchWorker } from '../metrics.js';
import { logErrors } from '../store/redis.js';
import { deliver } from './delivery.js';
import { editMessage, type Outboxes } from './outboxes.js';
import { type PingDeps, processPing } from './ping.js';
import { type ProvisionDeps, ProvisionFailed, processProvision } from './provision.js';
import {
  messageRefSchema,
  pingPayload,
  provisionPayload,
  queueNames,
  type RolloutPayload,
  restartPayload,
  rolloutPayload,
  rolloutRequestSchema,
  schedulePayload,
} from './queues.js';
import { processRestart, type RestartDeps } from './restart.js';
import { processRollout, type RolloutDeps, RolloutRejected } from './rollout.js';
import { processScheduled } from './scheduled.js';

export interface WorkerDeps {
  ping: PingDeps;
  restart: RestartDeps;
  provision: ProvisionDeps;
  rollout: RolloutDeps;
  /** The bot checked approvers against it; the worker checks again, since Redis is not a trusted source. */
  access: AccessPolicy;
}

export interface Workers {
  close(graceMs: number): Promise<void>;
}

export interface WorkerOptions {
  prefix: string;
  /** A crashed worker's provisions and rollouts resume elsewhere this long after its last renewal. */
  jobLockMs: number;
}

/** Wires processors to their queues. Payloads are re-validated here: Redis is not a trusted source. */
export function startWorkers(
  connection: Redis,
  options: WorkerOptions,
  deps: WorkerDeps,
  log: Logger,
  metrics?: Metrics,
): Workers {
  const { prefix } = options;
  // Resuming is safe by design (every step is recorded before the next), so a job may outlive many
  // dead workers; only one that keeps killing them is given up. The stalled check runs often enough
  // that a dead worker's job waits about one lock period.
  const resumable = {
    lockDuration: options.jobLockMs,
    stalledInterval: Math.min(30_000, options.jobLockMs / 2),
    maxStalledCount: 10,
  };
  const ops = new Worker(
    queueNames.ops,
    async (job: Job) => {
      if (job.name === 'restart') {
        const result = await processRestart(parsed(restartPayload, job.data, 'restart'), deps.restart);
        log.info({ jobId: job.id, status: result.status }, 'restart followed');
        return result;
      }
      if (job.name !== 'ping') throw new UnrecoverableError(`unknown job ${job.name}`);
      const result = await processPing(parsed(pingPayload, job.data, 'ping'), deps.ping);
      log.info({ jobId: job.id, aws: result.aws }, 'ping done');
      return result;
    },
    { connection, prefix, concurrency: 4 },
  );
  // Provisions mostly wait; many run at once, sharing one status poll per tick.
  const provisions = new Worker(
    queueNames.provision,
    async (job: Job) => {
      const data = parsed(provisionPayload, job.data, 'provision');
      try {
        return await processProvision(
          {
            id: job.id ?? '',
            timestamp: job.timestamp,
            data,
            updateData: async (next) => {
              job.data = next;
              await job.updateData(next);
            },
          },
          deps.provision,
        );
      } catch (error) {
        // The member was already told why; retrying would not change the answer.
        if (error instanceof ProvisionFailed) throw new UnrecoverableError(error.message);
        throw error;
      }
    },
    { connection, prefix, concurrency: 100, ...resumable },
  );
  const rolloutQueue = new Queue(queueNames.rollout, { connection, prefix });
  rolloutQueue.on('error', logErrors(log.child({ queue: queueNames.rollout }), 'queue'));
  const otherRunActive = async (job: Job, scheduleId: string) =>
    (await rolloutQueue.getJobs(['active'])).some(
      (other) => other.id !== job.id && other.name === 'scheduled' && other.data?.scheduleId === scheduleId,
    );
  const rollouts = new Worker(
    queueNames.rollout,
    async (job: Job, token?: string) => {
      // BullMQ's lock holds the token of the worker that owns the job right now.
      const holdsLock = async () =>
        (await connection.get(`${prefix}:${queueNames.rollout}:${job.id}:lock`)) === token;
      const update = async <T>(next: T) => {
        job.data = next;
        await job.updateData(next);
      };
      try {
        if (job.name === 'scheduled') {
          const data = parsed(schedulePayload, job.data, 'scheduled rollout');
          // The schedule was made in an admin channel; its reports may go to any channel.
          if (!isAdmin({ ...deps.access, slackChannelIds: [] }, data.createdBy, ''))
            throw new RolloutRejected(`scheduled by ${shown(data.createdBy)}, who is not a fleet admin`);
          return await processScheduled(
            {
              id: job.id ?? '',
              data,
              updateData: update,
              previousRunActive: () => otherRunActive(job, data.scheduleId),
              holdsLock,
            },
            deps.rollout,
          );
        }
        const data = parsed(rolloutPayload, job.data, 'rollout');
        const problem = approvalProblem(data, deps.access);
        if (problem) throw new RolloutRejected(problem);
        return await processRollout(
          {
            id: job.id ?? '',
            data,
            updateData: update,
            holdsLock,
          },
          deps.rollout,
        );
      } catch (error) {
        if (error instanceof RolloutRejected || error instanceof InvalidJob) {
          await tellRefused(job.data, error.message, deps.rollout.outboxes, log);
          throw new UnrecoverableError(error.message);
        }
        throw error;
      }
    },
    { connection, prefix, concurrency: 10, ...resumable },
  );
  const workers = [ops, provisions, rollouts];
  for (const w of workers) {
    w.on('failed', (job, err) => log.warn({ queue: w.name, jobId: job?.id, err: err.message }, 'job failed'));
    // Lost locks, Redis trouble: BullMQ would print these to the console, outside the JSON log.
    w.on('error', logErrors(log.child({ queue: w.name }), 'worker'));
    if (metrics) watchWorker(metrics, w);
  }
  return {
    async close(graceMs) {
      // Take no new jobs and let running ones finish for a while; after that a forced close leaves
      // them to another worker once their locks lapse. Pausing, not a first close(): BullMQ ignores
      // close(true) once a graceful close is under way, which would wait for the jobs forever.
      const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([Promise.all(workers.map((w) => w.pause())), timer]);
      await Promise.all(workers.map((w) => w.close(true)));
      await rolloutQueue.close();
    },
  };
}

/** A payload that does not match its schema fails for good: no retry makes it valid. Paths only, never values. */
function parsed<T>(schema: z.ZodType<T>, data: unknown, kind: string): T {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const fields = [...new Set(result.error.issues.map((i) => i.path.join('.') || '(the whole job)'))];
  throw new InvalidJob(`the job is not a valid ${kind}: ${fields.slice(0, 5).join(', ')}`);
}

class InvalidJob extends UnrecoverableError {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidJob';
  }
}

const isAdmin = (access: AccessPolicy, userId: string, channelId: string) =>
  resolveRole(access, { platform: 'slack', userId, channelId }) === 'admin';

/** Ids come from Redis too: shown only when they look like ids. */
const shown = (id: string) => (/^[A-Za-z0-9:_-]{1,64}$/.test(id) ? id : 'an unrecognised id');

/** Only an admin, where the plan was posted, may request and approve a rollout (as the bot decided). */
function approvalProblem(data: RolloutPayload, access: AccessPolicy): string | undefined {
  const channel = data.message.chatId;
  if (!isAdmin(access, data.approvedBy, channel))
    return `approved by ${shown(data.approvedBy)}, who is not a fleet admin`;
  if (!data.requestedBy.startsWith('schedule:') && !isAdmin(access, data.requestedBy, channel))
    return `requested by ${shown(data.requestedBy)}, who is not a fleet admin`;
  return undefined;
}

/** A refused rollout says so in the message it owns, when its reference to that message is sound. */
async function tellRefused(data: unknown, reason: string, outboxes: Outboxes, log: Logger): Promise<void> {
  const record = data as { message?: unknown; run?: { message?: unknown }; request?: unknown } | undefined;
  const ref = messageRefSchema.safeParse(record?.message ?? record?.run?.message);
  if (!ref.success) return;
  const request = rolloutRequestSchema.safeParse(record?.request);
  const title = request.success ? rolloutTitle(request.data) : 'Rollout';
  await deliver(
    () =>
      editMessage(outboxes, ref.data, {
        text: `${title}: refused by the worker (${reason}); nothing was sent.`,
      }),
    {
      log,
      what: 'refused rollout',
    },
  ).catch((err: unknown) => log.warn({ err: String(err) }, 'could not report a refused rollout'));
}
