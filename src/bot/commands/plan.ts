import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Caller } from '../../core/caller.js';
import type { Reply } from '../../core/chat.js';
import { formatUtc } from '../../core/durations.js';
import { UserError } from '../../core/errors.js';
import { describeErrorLimit, formatAmount, planRollout } from '../../core/rollout.js';
import { type RolloutRequest, rolloutKey, rolloutTitle } from '../../core/rollout-request.js';
import { matchesTargets, parseTargets } from '../../core/targets.js';
import { liveJobStates } from '../../jobs/queues.js';
import { newPlanId, type Plan } from '../../store/plans.js';
import { type AuditDetail, defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { alreadyHandled } from '../dispatch.js';
import type { ParsedRollout } from './rollout-args.js';

/** A parsed /deploy or /patch with the configured defaults filled in. */
export function withDefaults(parsed: ParsedRollout, deps: BotDeps): RolloutRequest {
  return {
    ...parsed,
    concurrency: parsed.concurrency ?? deps.settings.rollout.defaultConcurrency,
    maxErrors: parsed.maxErrors ?? deps.settings.rollout.defaultMaxErrors,
  };
}

const planTitle = (request: RolloutRequest, schedule: Plan['schedule']) =>
  schedule ? `${rolloutTitle(request)} on the schedule "${schedule.cron}" (UTC)` : rolloutTitle(request);

/**
 * Posts the plan in plain words with Approve/Cancel buttons; nothing runs (and nothing is scheduled)
 * before approval. A plan nobody handles is marked expired on its message by a worker.
 */
export async function proposePlan(
  request: RolloutRequest,
  caller: Caller,
  reply: Reply,
  deps: BotDeps,
  audit: (detail: AuditDetail) => void,
  schedule?: Plan['schedule'],
): Promise<void> {
  const key = schedule
    ? `schedule:${rolloutKey({ ...request, targets: `${schedule.cron}|${request.targets}` })}`
    : rolloutKey(request);
  const existing = await deps.plans.existing(key);
  if (existing?.planId)
    throw new UserError(`An identical plan is already waiting for approval (plan ${existing.planId}).`);
  if (existing?.jobId && liveJobStates.includes((await deps.queues.rolloutState(existing.jobId)) ?? ''))
    throw new UserError(
      `An identical rollout is already running as job ${existing.jobId}. /job ${existing.jobId} shows it.`,
    );

  const targets = parseTargets(request.targets);
  const view = targets ? await deps.fleetView.snapshot() : undefined;
  const matching = targets ? (view?.instances ?? []).filter((i) => matchesTargets(i, targets)) : [];
  const plan = planRollout(
    request,
    matching.map((i) => i.id),
  );
  const { matched, concurrency } = plan;
  const batches = plan.batches.length;
  // SSM refuses a send to an instance whose agent is not online; the job checks again before each
  // batch, so one that comes online meanwhile still gets it.
  const offline = matching.filter((i) => view?.agentsOnline.get(i.id) !== true).length;
  const ttlMs = deps.settings.rollout.planTtlMs;
  const id = newPlanId();
  const expiresAt = new Date(deps.now().getTime() + ttlMs);
  const title = planTitle(request, schedule);
  const lines = [
    `Plan: ${title}.`,
    schedule ? `Each run reports to ${schedule.channel}; runs plan their instances when they start.` : '',
    matched === 0
      ? 'No running fleet instance matches right now.'
      : `${matched} running instance${matched > 1 ? 's' : ''} match${schedule ? ' right now' : ''}, in ${batches} batch${batches > 1 ? 'es' : ''} of at most ${plan.batchSize}.`,
    offline > 0
      ? `${offline} of them ha${offline > 1 ? 've' : 's'} no SSM agent online right now: checked again before each batch, and reported as not reachable if still so.`
      : '',
    `At most ${concurrency} at once (--concurrency ${formatAmount(plan.concurrencyAmount)}); it ${describeErrorLimit(plan.maxErrors)}.`,
    request.canary > 0
      ? `Canary: ${request.canary} instance${request.canary > 1 ? 's' : ''} first; the rest waits for them.`
      : '',
    `Requested by ${caller.displayName}. ${deps.settings.rollout.twoPersonRule ? 'Another admin must approve. ' : ''}Expires ${formatUtc(expiresAt)}.`,
  ].filter(Boolean);
  const message = await reply.send({
    text: lines.join('\n'),
    buttons: [
      { label: 'Approve', command: `/approve ${id}`, style: 'primary' },
      { label: 'Cancel', command: `/reject ${id}`, style: 'danger' },
    ],
  });
  if (!message) throw new UserError('This chat cannot show a plan.');
  await deps.plans.save(
    {
      id,
      key,
      request,
      requestedBy: caller.userId,
      matched,
      message,
      expiresAt: expiresAt.toISOString(),
      ...(schedule ? { schedule } : {}),
    },
    ttlMs,
    title,
  );
  await deps.queues.reportPlanExpiry(id, ttlMs);
  audit({ outcome: `plan ${id}` });
}

/** Creates the recurring runs; the worker checks creator and approver again before each run. */
export async function startSchedule(
  request: RolloutRequest,
  schedule: NonNullable<Plan['schedule']>,
  createdBy: string,
  approvedBy: string,
  deps: BotDeps,
): Promise<string> {
  const id = `sched-${randomBytes(3).toString('hex')}`;
  await deps.queues.upsertSchedule(schedule.cron, {
    scheduleId: id,
    request,
    createdBy,
    approvedBy,
    channel: schedule.channel,
  });
  return id;
}

const planIdArg = z
  .string()
  .trim()
  .regex(/^[a-f0-9]{12}$/, 'Give the plan id from the plan message.');

export const approve = defineCommand<BotDeps, typeof planIdArg>({
  name: 'approve',
  summary: 'approve a rollout plan',
  usage: '<plan id>',
  args: planIdArg,
  requires: 'admin',
  hidden: true,
  // A press the plan refuses (expired, the requester's own under the two-person rule) keeps the buttons.
  claimsPress: true,
  async run({ caller, args: id, reply, audit, claim }, deps) {
    const plan = await deps.plans.get(id);
    if (!plan)
      throw new UserError(`Plan ${id} expired or was already handled. Nothing ran; send the command again.`);
    if (deps.settings.rollout.twoPersonRule && plan.requestedBy === caller.userId) {
      throw new UserError('The two-person rule is on: another admin must approve this plan.');
    }
    if (!(await claim())) throw new UserError(alreadyHandled);
    // Taking the plan makes approval single-use even if two admins approve at once.
    const taken = await deps.plans.take(id);
    if (!taken) throw new UserError(`Plan ${id} was already handled.`);
    if (taken.schedule) {
      await deps.plans.forget(taken.key);
      const scheduleId = await startSchedule(
        taken.request,
        taken.schedule,
        taken.requestedBy,
        caller.userId,
        deps,
      );
      audit({ outcome: `approved plan ${id}: schedule ${scheduleId}` });
      await reply.edit(
        taken.message,
        `Scheduled: ${planTitle(taken.request, taken.schedule)} as ${scheduleId}, approved by ${caller.displayName}. Each run reports to ${taken.schedule.channel}; /unschedule ${scheduleId} removes it.`,
      );
      return;
    }
    const jobId = await deps.queues.rollout({
      planId: taken.id,
      request: taken.request,
      requestedBy: taken.requestedBy,
      approvedBy: caller.userId,
      message: taken.message,
      startedAt: deps.now().getTime(),
    });
    await deps.plans.markStarted(taken.key, jobId);
    audit({ jobId, outcome: `approved plan ${id}` });
    await reply.whisper(
      `Approved. ${rolloutTitle(taken.request)} runs as job ${jobId}; /cancel ${jobId} stops it.`,
    );
  },
});

export const reject = defineCommand<BotDeps, typeof planIdArg>({
  name: 'reject',
  summary: 'cancel a rollout plan before it runs',
  usage: '<plan id>',
  args: planIdArg,
  requires: 'admin',
  hidden: true,
  async run({ caller, args: id, reply, audit }, deps) {
    const plan = await deps.plans.take(id);
    if (!plan) throw new UserError(`Plan ${id} expired or was already handled.`);
    await deps.plans.forget(plan.key);
    audit({ outcome: `rejected plan ${id}` });
    await reply.edit(
      plan.message,
      `Cancelled by ${caller.displayName}: ${planTitle(plan.request, plan.schedule)}. Nothing ran.`,
    );
  },
});
