import { randomBytes } from 'node:crypto';
import { rolloutTitle } from '../core/rollout-request.js';
import { deliver } from './delivery.js';
import type { SchedulePayload } from './queues.js';
import { processRollout, type RolloutDeps, type RolloutSummary } from './rollout.js';

export interface ScheduledJob {
  id: string;
  data: SchedulePayload;
  updateData(data: SchedulePayload): Promise<void>;
  /** Whether an earlier run of the same schedule is still going. */
  previousRunActive(): Promise<boolean>;
  holdsLock?(): Promise<boolean>;
}

export type ScheduledOutcome = RolloutSummary | { skipped: string };

export interface ScheduledDeps extends RolloutDeps {
  /** The clock a run's start is stamped from; Date.now when absent. */
  now?: () => number;
}

/**
 * One run of a recurring rollout: it posts its own progress message in the report channel, then
 * runs exactly like an approved rollout (its record lives inside the scheduled job's data).
 * A run that comes due while the previous one still runs is skipped: a slow scan on a short cron
 * must not pile up runs that compete for the same SSM budget.
 */
export async function processScheduled(job: ScheduledJob, deps: ScheduledDeps): Promise<ScheduledOutcome> {
  const now = deps.now ?? Date.now;
  let data = job.data;
  if (!data.run && (await job.previousRunActive())) {
    deps.log.info(
      { jobId: job.id, scheduleId: data.scheduleId },
      'scheduled run skipped: previous still runs',
    );
    return { skipped: 'the previous run of this schedule is still going' };
  }
  if (!data.run) {
    const slack = deps.outboxes.slack;
    if (!slack) throw new Error('scheduled rollouts report to Slack, and this worker has no Slack client');
    const message = await deliver(
      () =>
        slack.send(
          { platform: 'slack', chatId: data.channel },
          { text: `Scheduled ${rolloutTitle(data.request)} (schedule ${data.scheduleId}): starting…` },
        ),
      { log: deps.log, what: 'scheduled run report' },
    );
    if (!message) throw new Error('the report channel returned no message to edit');
    data = {
      ...data,
      run: {
        planId: randomBytes(6).toString('hex'),
        request: data.request,
        requestedBy: `schedule:${data.scheduleId}`,
        approvedBy: data.createdBy,
        message,
        startedAt: now(),
      },
    };
    await job.updateData(data);
  }
  return processRollout(
    {
      id: job.id,
      data: data.run ?? (undefined as never),
      holdsLock: job.holdsLock,
      updateData: async (run) => {
        data = { ...data, run };
        await job.updateData(data);
      },
    },
    deps,
  );
}
