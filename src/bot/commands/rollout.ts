import { z } from 'zod';
import type { Caller } from '../../core/caller.js';
import type { Reply } from '../../core/chat.js';
import { formatUtc } from '../../core/durations.js';
import { UserError } from '../../core/errors.js';
import {
  describeErrorLimit,
  formatAmount,
  maxIdsPerCommand,
  parseAmount,
  planBatches,
  resolveAmount,
} from '../../core/rollout.js';
import { type RolloutRequest, rolloutKey, rolloutTitle } from '../../core/rollout-request.js';
import { matchesTargets, parseTargets } from '../../core/targets.js';
import { newPlanId } from '../../store/plans.js';
import { noArgs } from '../args.js';
import { type AuditDetail, defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { deployArgs, type ParsedRollout, patchArgs } from './rollout-args.js';

const live = ['active', 'waiting', 'delayed', 'prioritized'];

/** Posts the plan in plain words with Approve/Cancel buttons; nothing runs before approval. */
async function proposeRollout(
  parsed: ParsedRollout,
  caller: Caller,
  reply: Reply,
  deps: BotDeps,
  audit: (detail: AuditDetail) => void,
): Promise<void> {
  const request: RolloutRequest = {
    ...parsed,
    concurrency: parsed.concurrency ?? deps.settings.rollout.defaultConcurrency,
    maxErrors: parsed.maxErrors ?? deps.settings.rollout.defaultMaxErrors,
  };
  const key = rolloutKey(request);
  const existing = await deps.plans.existing(key);
  if (existing?.planId)
    throw new UserError(`An identical plan is already waiting for approval (plan ${existing.planId}).`);
  if (existing?.jobId && live.includes((await deps.queues.rolloutState(existing.jobId)) ?? ''))
    throw new UserError(
      `An identical rollout is already running as job ${existing.jobId}. /job ${existing.jobId} shows it.`,
    );

  const targets = parseTargets(request.targets);
  const matched = targets ? (await deps.fleet.list()).filter((i) => matchesTargets(i, targets)).length : 0;
  const concurrency = Math.max(
    1,
    resolveAmount(parseAmount(request.concurrency) ?? { kind: 'count', value: 1 }, matched),
  );
  const maxErrors = resolveAmount(parseAmount(request.maxErrors) ?? { kind: 'count', value: 0 }, matched);
  const batches = planBatches(Array(matched).fill(''), concurrency, request.canary).length;
  const ttlMs = deps.settings.rollout.planTtlMs;
  const id = newPlanId();
  const expiresAt = new Date(deps.now().getTime() + ttlMs);
  const lines = [
    `Plan: ${rolloutTitle(request)}.`,
    matched === 0
      ? 'No running fleet instance matches right now.'
      : `${matched} running instance${matched > 1 ? 's' : ''} match, in ${batches} batch${batches > 1 ? 'es' : ''} of at most ${Math.min(maxIdsPerCommand, concurrency)}.`,
    `At most ${concurrency} at once (--concurrency ${formatAmount(parseAmount(request.concurrency) ?? { kind: 'count', value: 1 })}); it ${describeErrorLimit(maxErrors)}.`,
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
    { id, key, request, requestedBy: caller.userId, matched, message, expiresAt: expiresAt.toISOString() },
    ttlMs,
  );
  audit({ outcome: `plan ${id}` });
}

export const deploy = defineCommand<BotDeps, typeof deployArgs>({
  name: 'deploy',
  summary: 'plan a deploy of a version across the fleet (runs after approval)',
  usage:
    '<version> [all|user:<id>,…|tag:<k>=<v>|i-…,…] [--concurrency N|N%] [--max-errors N|N%] [--canary N]',
  args: deployArgs,
  requires: 'admin',
  run: ({ caller, args, reply, audit }, deps) => proposeRollout(args, caller, reply, deps, audit),
});

export const patch = defineCommand<BotDeps, typeof patchArgs>({
  name: 'patch',
  summary: 'plan a patch scan or install across the fleet (runs after approval)',
  usage: 'scan|install [targets] [--reboot if-needed|never] [--concurrency N|N%] [--max-errors N|N%]',
  args: patchArgs,
  requires: 'admin',
  run: ({ caller, args, reply, audit }, deps) => proposeRollout(args, caller, reply, deps, audit),
});

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
  async run({ caller, args: id, reply, audit }, deps) {
    const plan = await deps.plans.get(id);
    if (!plan)
      throw new UserError(`Plan ${id} expired or was already handled. Nothing ran; send the command again.`);
    if (deps.settings.rollout.twoPersonRule && plan.requestedBy === caller.userId) {
      throw new UserError('The two-person rule is on: another admin must approve this plan.');
    }
    // Taking the plan makes approval single-use even if two admins press at once.
    const taken = await deps.plans.take(id);
    if (!taken) throw new UserError(`Plan ${id} was already handled.`);
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
      `Cancelled by ${caller.displayName}: ${rolloutTitle(plan.request)}. Nothing ran.`,
    );
  },
});

const jobIdArg = z
  .string()
  .trim()
  .regex(/^rollout-[a-f0-9]{12}$/, 'Give the job id (rollout-…); /jobs lists them.');

export const cancel = defineCommand<BotDeps, typeof jobIdArg>({
  name: 'cancel',
  summary: 'stop a running rollout: no new batches, in-flight commands cancelled',
  usage: '<job id>',
  args: jobIdArg,
  requires: 'admin',
  async run({ args: jobId, reply, audit }, deps) {
    const state = await deps.queues.rolloutState(jobId);
    if (!state) throw new UserError(`There is no job ${jobId}.`);
    if (!live.includes(state)) throw new UserError(`Job ${jobId} is already ${state}.`);
    await deps.plans.requestCancel(jobId);
    audit({ jobId, outcome: 'cancel requested' });
    await reply.send(
      `Cancelling job ${jobId}: no new batches start, and running commands are being cancelled.`,
    );
  },
});

export const jobs = defineCommand<BotDeps, typeof noArgs>({
  name: 'jobs',
  readOnly: true,
  summary: 'recent and running fleet rollouts',
  args: noArgs,
  requires: 'admin',
  async run({ reply }, deps) {
    const recent = await deps.queues.recentRollouts(15);
    if (recent.length === 0) {
      await reply.send('No rollouts yet.');
      return;
    }
    const lines = recent.map((j) => {
      const batches = j.data.batches ?? [];
      const done = batches.filter((b) => b.state === 'done').length;
      return `${j.id}  ${j.state.padEnd(9)}  ${rolloutTitle(j.data.request)}  batches ${done}/${batches.length}  started ${formatUtc(new Date(j.data.startedAt))}`;
    });
    await reply.send(['Rollouts, newest first:', ...lines].join('\n'));
  },
});

export const job = defineCommand<BotDeps, typeof jobIdArg>({
  name: 'job',
  readOnly: true,
  summary: 'details of one rollout, with its failed instances',
  usage: '<job id>',
  args: jobIdArg,
  requires: 'admin',
  async run({ args: jobId, reply }, deps) {
    const found = await deps.queues.rolloutJob(jobId);
    if (!found) throw new UserError(`There is no job ${jobId}.`);
    if (!found.data) {
      // Not written by fleetbot's bot: show what the worker made of it, never what it holds.
      await reply.send(
        [
          `${found.id}: not a valid rollout, ${found.state}`,
          found.failedReason ? `Stopped: ${found.failedReason}` : '',
        ]
          .filter(Boolean)
          .join('\n'),
      );
      return;
    }
    const batches = found.data.batches ?? [];
    const result = found.result as {
      failed?: { instanceId: string; userId: string; status: string; output: string }[];
    } | null;
    const lines = [
      `${found.id}: ${rolloutTitle(found.data.request)}, ${found.state}`,
      `Requested by ${found.data.requestedBy}, approved by ${found.data.approvedBy}, started ${formatUtc(new Date(found.data.startedAt))}`,
      `Batches: ${batches.filter((b) => b.state === 'done').length} done, ${batches.filter((b) => b.state === 'sent').length} running, ${batches.filter((b) => b.state === 'planned').length} not started`,
      found.failedReason ? `Stopped: ${found.failedReason}` : '',
      ...(result?.failed ?? []).map(
        (f) => `• ${f.userId} ${f.instanceId} ${f.status}${f.output ? `: ${f.output}` : ''}`,
      ),
    ].filter(Boolean);
    await reply.send(lines.join('\n'));
  },
});
