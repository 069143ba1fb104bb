import { type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { z } from 'zod';
import { type AccessPolicy, resolveRole } from '../core/caller.js';
import type { Stage } from '../core/provision-stages.js';
import type { Logger } from '../log.js';
import { type Metrics, watchWorker } from '../metrics.js';
import { logErrors, type RedisClient } from '../store/redis.js';
import { type DeliveryPolicy, defaultDelivery, deliver } from './delivery.js';
import {
  type AttemptInfo,
  failureReason,
  provisionFailureText,
  type RolloutRecord,
  rolloutFailureText,
} from './failure-text.js';
import { editMessage, type Outboxes } from './outboxes.js';
import { type PingDeps, processPing } from './ping.js';
import { type PlanExpiryDeps, processPlanExpiry } from './plan-expiry.js';
import type { Budget } from './progress.js';
import { type ProvisionDeps, ProvisionFailed, processProvision } from './provision.js';
import {
  messageRefSchema,
  pingPayload,
  planExpiryPayload,
  provisionPayload,
  queueNames,
  type RolloutPayload,
  restartPayload,
  revokePayload,
  rolloutPayload,
  rolloutRequestSchema,
  schedulePayload,
} from './queues.js';
import { processRestart, type RestartDeps } from './restart.js';
import { processRevoke } from './revoke.js';
import { LockLost, processRollout, type RolloutDeps, RolloutRejected } from './rollout.js';
import { processScheduled } from './scheduled.js';

export interface WorkerDeps {
  ping: PingDeps;
  restart: RestartDeps;
  planExpiry: PlanExpiryDeps;
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
  connection: RedisClient,
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
  const context: ProcessorContext = {
    deps,
    log,
    holdsLock: (queue, job, token) => holdsJobLock(connection, prefix, queue, job, token),
  };
  const ops = new Worker(queueNames.ops, opsProcessor(context), { connection, prefix, concurrency: 4 });
  // Provisions mostly wait; many run at once, sharing one status poll per tick.
  const provisions = new Worker(queueNames.provision, provisionProcessor(context), {
    connection,
    prefix,
    concurrency: 100,
    ...resumable,
  });
  const rolloutQueue = new Queue(queueNames.rollout, { connection, prefix });
  rolloutQueue.on('error', logErrors(log.child({ queue: queueNames.rollout }), 'queue'));
  const otherRunActive = async (job: Job, scheduleId: string) =>
    (await rolloutQueue.getJobs(['active'])).some(
      (other) => other.id !== job.id && other.name === 'scheduled' && other.data?.scheduleId === scheduleId,
    );
  const rollouts = new Worker(queueNames.rollout, rolloutProcessor(context, otherRunActive), {
    connection,
    prefix,
    concurrency: 10,
    ...resumable,
  });
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

/** What every processor shares. */
interface ProcessorContext {
  deps: WorkerDeps;
  log: Logger;
  /** False once another worker has taken the job over: it owns the job's message from then on. */
  holdsLock(queue: string, job: Job, token: string | undefined): Promise<boolean>;
}

/**
 * Whether `token` still holds the job's lock in Redis. BullMQ 6.7.0 has no read-only public call that
 * answers this: Job#extendLock does, but renews the lock as it answers (so a worker closed by force,
 * whose processor still runs, would keep its job from ever being taken over), and Job#token is only
 * this worker's own copy. So the lock is read where BullMQ keeps it, `<prefix>:<queue>:<jobId>:lock`,
 * the key its extendLock script checks.
 */
async function holdsJobLock(
  connection: RedisClient,
  prefix: string,
  queue: string,
  job: Job,
  token: string | undefined,
): Promise<boolean> {
  return (await connection.get(`${prefix}:${queue}:${job.id}:lock`)) === token;
}

/** Whether a failed attempt may still speak for its job; when Redis cannot say, it speaks. */
const mayReport = (context: ProcessorContext, queue: string, job: Job, token: string | undefined) =>
  context.holdsLock(queue, job, token).catch(() => true);

function opsProcessor({ deps, log }: ProcessorContext) {
  return async (job: Job) => {
    if (job.name === 'restart') {
      const result = await processRestart(parsed(restartPayload, job.data, 'restart'), deps.restart);
      log.info({ jobId: job.id, status: result.status }, 'restart followed');
      return result;
    }
    if (job.name === 'revoke') {
      const data = parsed(revokePayload, job.data, 'revoke');
      // Redis is not a trusted source: only an admin's revoke may stop a member's server.
      if (!isAdmin({ ...deps.access, slackChannelIds: [] }, data.requestedBy, ''))
        throw new UnrecoverableError(
          `revoke requested by ${shown(data.requestedBy)}, who is not a fleet admin`,
        );
      // The provision's AWS clients and outboxes: a revoke undoes what a provision set up.
      const { fleet, secrets, outboxes, settings } = deps.provision;
      const result = await processRevoke(data, {
        fleet,
        secrets,
        outboxes,
        awsWaitMs: settings.timeoutsMs.running,
        log: log.child({ queue: queueNames.ops, jobId: job.id }),
      });
      log.info({ jobId: job.id, instanceId: result.instanceId ?? null }, 'revoke cleanup done');
      return result;
    }
    if (job.name === 'plan-expiry')
      return processPlanExpiry(parsed(planExpiryPayload, job.data, 'plan expiry'), deps.planExpiry);
    if (job.name !== 'ping') throw new UnrecoverableError(`unknown job ${job.name}`);
    const result = await processPing(parsed(pingPayload, job.data, 'ping'), deps.ping);
    log.info({ jobId: job.id, aws: result.aws }, 'ping done');
    return result;
  };
}

function provisionProcessor(context: ProcessorContext) {
  const { deps } = context;
  return async (job: Job, token?: string) => {
    let stage: Stage | undefined;
    try {
      const data = parsed(provisionPayload, job.data, 'provision');
      return await processProvision(
        {
          id: job.id ?? '',
          timestamp: job.timestamp,
          data,
          updateData: async (next) => {
            job.data = next;
            await job.updateData(next);
          },
          onStage: (next) => {
            stage = next;
          },
        },
        deps.provision,
      );
    } catch (error) {
      // The member was already told why; retrying would not change the answer.
      if (error instanceof ProvisionFailed) throw new UnrecoverableError(error.message);
      if (await mayReport(context, queueNames.provision, job, token))
        await reportProvisionFailure(job, error, stage, context);
      throw error;
    }
  };
}

/** Tells the member, on the job's message, what became of an attempt the processor could not explain. */
async function reportProvisionFailure(
  job: Job,
  error: unknown,
  stage: Stage | undefined,
  { deps, log }: ProcessorContext,
): Promise<void> {
  const attempt = attemptOf(job, error);
  const record = job.data as Record<string, unknown> | undefined;
  const text = provisionFailureText({
    jobId: job.id ?? '',
    mode: provisionPayload.shape.mode.safeParse(record?.mode).data ?? 'provision',
    stage,
    instanceId: provisionPayload.shape.instanceId.safeParse(record?.instanceId).data,
    reason: failureReason(error),
    attempt,
  });
  await tellFailure(record?.message, text, attempt, {
    outboxes: deps.provision.outboxes,
    log: log.child({ queue: queueNames.provision, jobId: job.id }),
  });
}

function rolloutProcessor(
  context: ProcessorContext,
  otherRunActive: (job: Job, scheduleId: string) => Promise<boolean>,
) {
  return async (job: Job, token?: string) => {
    // BullMQ's lock holds the token of the worker that owns the job right now.
    const ownsJob = () => context.holdsLock(queueNames.rollout, job, token);
    try {
      return await runRolloutJob(job, context.deps, ownsJob, otherRunActive);
    } catch (error) {
      // Refused before any AWS call: no retry makes it acceptable.
      const refused = error instanceof RolloutRejected || error instanceof InvalidJob;
      // A worker that lost the job leaves its message to the one that carries on.
      if (!(error instanceof LockLost) && (await mayReport(context, queueNames.rollout, job, token)))
        await reportRolloutFailure(job, error, refused, context);
      if (refused) throw new UnrecoverableError(error.message);
      throw error;
    }
  };
}

/** One attempt of a rollout job, approved on demand or run by a schedule, once its approvals check out. */
async function runRolloutJob(
  job: Job,
  deps: WorkerDeps,
  ownsJob: () => Promise<boolean>,
  otherRunActive: (job: Job, scheduleId: string) => Promise<boolean>,
) {
  const update = async <T>(next: T) => {
    job.data = next;
    await job.updateData(next);
  };
  if (job.name === 'scheduled') {
    const data = parsed(schedulePayload, job.data, 'scheduled rollout');
    // The schedule was made in an admin channel; its reports may go to any channel.
    const anyChannel = { ...deps.access, slackChannelIds: [] };
    if (!isAdmin(anyChannel, data.createdBy, ''))
      throw new RolloutRejected(`scheduled by ${shown(data.createdBy)}, who is not a fleet admin`);
    if (data.approvedBy && !isAdmin(anyChannel, data.approvedBy, ''))
      throw new RolloutRejected(`approved by ${shown(data.approvedBy)}, who is not a fleet admin`);
    // Installs are scheduled only through an approved plan (src/bot/commands/schedule.ts).
    if (data.request.operation === 'patch-install' && !data.approvedBy)
      throw new RolloutRejected('a scheduled install that nobody approved');
    return await processScheduled(
      {
        id: job.id ?? '',
        data,
        updateData: update,
        previousRunActive: () => otherRunActive(job, data.scheduleId),
        holdsLock: ownsJob,
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
      holdsLock: ownsJob,
    },
    deps.rollout,
  );
}

/** Tells the channel, on the run's message, what became of a failed rollout attempt. */
async function reportRolloutFailure(
  job: Job,
  error: unknown,
  refused: boolean,
  { deps, log }: ProcessorContext,
): Promise<void> {
  const attempt = refused ? { ...attemptOf(job, error), final: true } : attemptOf(job, error);
  // A scheduled job keeps its current run's record (and message) inside its own data.
  const run: unknown = job.name === 'scheduled' ? (job.data as { run?: unknown })?.run : job.data;
  const text = rolloutFailureText({
    jobId: job.id ?? '',
    record: rolloutRecord(run),
    reason: failureReason(error),
    attempt,
    refused,
  });
  await tellFailure((run as { message?: unknown } | undefined)?.message, text, attempt, {
    outboxes: deps.rollout.outboxes,
    log: log.child({ queue: queueNames.rollout, jobId: job.id }),
    budget: deps.rollout.editBudget,
  });
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

/**
 * Where this attempt stands, by BullMQ's own rule (Job.shouldRetryJob): inside the processor
 * `attemptsMade` counts the attempts that failed before this one, and a job without `attempts` gets one.
 */
function attemptOf(job: Job, error: unknown): AttemptInfo {
  const attempts = Math.max(1, job.opts.attempts ?? 1);
  const attempt = job.attemptsMade + 1;
  const unrecoverable =
    error instanceof UnrecoverableError || (error instanceof Error && error.name === 'UnrecoverableError');
  return { attempt, attempts, final: unrecoverable || attempt >= attempts };
}

/** The parts of a stored rollout record that are sound; a part that is not is left out, never guessed. */
function rolloutRecord(data: unknown): RolloutRecord {
  const record = data as
    | { request?: unknown; batches?: unknown; skipped?: unknown; unreachable?: unknown }
    | undefined;
  return {
    request: rolloutRequestSchema.safeParse(record?.request).data,
    batches: rolloutPayload.shape.batches.safeParse(record?.batches).data,
    skipped: rolloutPayload.shape.skipped.safeParse(record?.skipped).data,
    unreachable: rolloutPayload.shape.unreachable.safeParse(record?.unreachable).data,
  };
}

// A retry notice must not hold up the retry for long: the next attempt's progress speaks anyway.
const retryNoticeDelivery: DeliveryPolicy = { ...defaultDelivery, giveUpAfterMs: 60_000 };

/**
 * Edits a failed job's message, when its reference to that message is sound. Never throws: the job
 * fails with its own error whatever becomes of the edit.
 */
async function tellFailure(
  ref: unknown,
  text: string,
  attempt: AttemptInfo,
  options: { outboxes: Outboxes; log: Logger; budget?: Budget },
): Promise<void> {
  const message = messageRefSchema.safeParse(ref);
  if (!message.success) return;
  const { outboxes, log, budget } = options;
  await deliver(
    async () => {
      // Slack's chat.update allowance is shared by every job in the workspace.
      await budget?.take();
      await editMessage(outboxes, message.data, { text });
    },
    {
      log,
      what: attempt.final ? 'failed job report' : 'retry notice',
      policy: attempt.final ? defaultDelivery : retryNoticeDelivery,
    },
  ).catch((err: unknown) => log.warn({ err: String(err) }, 'could not report a failed job attempt'));
}
