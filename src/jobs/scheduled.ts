import { randomBytes } from 'node:crypto';
import { rolloutTitle } from '../core/rollout-request.js';
import type { SchedulePayload } from './queues.js';
import { processRollout, type RolloutDeps, type RolloutSummary } from './rollout.js';

export interface ScheduledJob {
  id: string;
  data: SchedulePayload;
  updateData(data: SchedulePayload): Promise<void>;
}

/**
 * One run of a recurring rollout: it posts its own progress message in the report channel, then
 * runs exactly like an approved rollout (its record lives inside the scheduled job's data).
 */
export async function processScheduled(job: ScheduledJob, deps: RolloutDeps): Promise<RolloutSummary> {
  let data = job.data;
  if (!data.run) {
    const slack = deps.outboxes.slack;
    if (!slack) throw new Error('scheduled rollouts report to Slack, and this worker has no Slack client');
    const message = await slack.send(
      { platform: 'slack', chatId: data.channel },
      { text: `Scheduled ${rolloutTitle(data.request)} (schedule ${data.scheduleId}): starting…` },
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
        startedAt: Date.now(),
      },
    };
    await job.updateData(data);
  }
  return processRollout(
    {
      id: job.id,
      data: data.run ?? (undefined as never),
      updateData: async (run) => {
        data = { ...data, run };
        await job.updateData(data);
      },
    },
    deps,
  );
}
