import { type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { type Metrics, watchWorker } from '../metrics.js';
import { logErrors } from '../store/redis.js';
import { type PingDeps, processPing } from './ping.js';
import { type ProvisionDeps, ProvisionFailed, processProvision } from './provision.js';
import { pingPayload, provisionPayload, queueNames, rolloutPayload, schedulePayload } from './queues.js';
import { processRollout, type RolloutDeps, RolloutRejected } from './rollout.js';
import { processScheduled } from './scheduled.js';

export interface WorkerDeps {
  ping: PingDeps;
  provision: ProvisionDeps;
  rollout: RolloutDeps;
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
      if (job.name !== 'ping') throw new UnrecoverableError(`unknown job ${job.name}`);
      const result = await processPing(pingPayload.parse(job.data), deps.ping);
      log.info({ jobId: job.id, aws: result.aws }, 'ping done');
      return result;
    },
    { connection, prefix, concurrency: 4 },
  );
  // Provisions mostly wait; many run at once, sharing one status poll per tick.
  const provisions = new Worker(
    queueNames.provision,
    async (job: Job) => {
      const data = provisionPayload.parse(job.data);
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
          const data = schedulePayload.parse(job.data);
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
        const data = rolloutPayload.parse(job.data);
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
        if (error instanceof RolloutRejected) throw new UnrecoverableError(error.message);
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
