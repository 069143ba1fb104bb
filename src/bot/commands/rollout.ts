import { z } from 'zod';
import { formatUtc } from '../../core/durations.js';
import { UserError } from '../../core/errors.js';
import { rolloutTitle } from '../../core/rollout-request.js';
import { failureReason, rolloutFailureText } from '../../jobs/failure-text.js';
import { liveJobStates } from '../../jobs/queues.js';
import { noArgs } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { proposePlan, withDefaults } from './plan.js';
import { deployArgs, patchArgs } from './rollout-args.js';

export const deploy = defineCommand<BotDeps, typeof deployArgs>({
  name: 'deploy',
  summary: 'plan a deploy of a version across the fleet (runs after approval)',
  usage:
    '<version> [all|user:<id>,…|tag:<k>=<v>|i-…,…] [--concurrency N|N%] [--max-errors N|N%] [--canary N]',
  args: deployArgs,
  requires: 'admin',
  run: ({ caller, args, reply, audit }, deps) =>
    proposePlan(withDefaults(args, deps), caller, reply, deps, audit),
});

export const patch = defineCommand<BotDeps, typeof patchArgs>({
  name: 'patch',
  summary: 'plan a patch scan or install across the fleet (runs after approval)',
  usage: 'scan|install [targets] [--reboot if-needed|never] [--concurrency N|N%] [--max-errors N|N%]',
  args: patchArgs,
  requires: 'admin',
  run: ({ caller, args, reply, audit }, deps) =>
    proposePlan(withDefaults(args, deps), caller, reply, deps, audit),
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
    if (!liveJobStates.includes(state)) throw new UserError(`Job ${jobId} is already ${state}.`);
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
    const failed = found.state === 'failed';
    const lines = [
      `${found.id}: ${rolloutTitle(found.data.request)}, ${found.state}`,
      `Requested by ${found.data.requestedBy}, approved by ${found.data.approvedBy}, started ${formatUtc(new Date(found.data.startedAt))}`,
      // A failed job runs nothing: the text its message shows says what it did and did not do.
      failed
        ? rolloutFailureText({
            jobId: found.id,
            record: found.data,
            reason: failureReason(found.failedReason ?? ''),
          })
        : `Batches: ${batches.filter((b) => b.state === 'done').length} done, ${batches.filter((b) => b.state === 'sent').length} running, ${batches.filter((b) => b.state === 'planned').length} not started`,
      !failed && found.failedReason ? `Stopped: ${failureReason(found.failedReason)}` : '',
      ...(result?.failed ?? []).map(
        (f) => `• ${f.userId} ${f.instanceId} ${f.status}${f.output ? `: ${f.output}` : ''}`,
      ),
    ].filter(Boolean);
    await reply.send(lines.join('\n'));
  },
});
