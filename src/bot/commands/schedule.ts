import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import { formatUtc } from '../../core/durations.js';
import { UserError } from '../../core/errors.js';
import { type RolloutRequest, rolloutTitle } from '../../core/rollout-request.js';
import { parseTargets } from '../../core/targets.js';
import { noArgs } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { proposePlan, startSchedule } from './plan.js';
import { echo } from './rollout-args.js';

/**
 * A cron of 5 or 6 fields (seconds first), in UTC, that the parser BullMQ's job schedulers use
 * accepts, so a plan never promises a schedule it cannot run. `H` is refused: BullMQ gives the
 * parser no seed, so each run would land at a different random time.
 */
function runsOnCron(fields: readonly string[]): boolean {
  if (fields.length !== 5 && fields.length !== 6) return false;
  if (fields.some((f) => f.includes('H'))) return false;
  try {
    CronExpressionParser.parse(fields.join(' '), { tz: 'UTC' });
    return true;
  } catch {
    return false;
  }
}

const scheduleArgs = z.string().transform((text, ctx) => {
  const m = /^patch\s+(scan|install)\s+"([^"]{1,100})"(?:\s+(\S+))?$/.exec(text.trim());
  const fields = m?.[2]?.trim().split(/\s+/) ?? [];
  if (!m?.[1] || !runsOnCron(fields)) {
    ctx.addIssue({
      code: 'custom',
      message: `${echo(text)} is not a schedule. Example: /schedule patch scan "0 3 * * 1" all`,
    });
    return z.NEVER;
  }
  const targets = m[3] ?? 'all';
  if (!parseTargets(targets)) {
    ctx.addIssue({ code: 'custom', message: `${echo(targets)} is not a target.` });
    return z.NEVER;
  }
  return {
    operation: m[1] === 'scan' ? ('patch-scan' as const) : ('patch-install' as const),
    cron: fields.join(' '),
    targets,
  };
});

export const schedule = defineCommand<BotDeps, typeof scheduleArgs>({
  name: 'schedule',
  summary:
    'plan a patch scan (or install) on a cron schedule (runs after approval); results go to the report channel',
  usage: 'patch scan|install "<cron>" [targets]',
  args: scheduleArgs,
  requires: 'admin',
  async run({ caller, args, reply, audit }, deps) {
    const channel = deps.settings.reportChannelId;
    if (!channel)
      throw new UserError('Set SLACK_ALERT_CHANNEL_ID first: scheduled results are posted there.');
    const request: RolloutRequest = {
      operation: args.operation,
      reboot: 'never',
      targets: args.targets,
      concurrency: deps.settings.rollout.defaultConcurrency,
      maxErrors: deps.settings.rollout.defaultMaxErrors,
      canary: 0,
    };
    const plan = { cron: args.cron, channel };
    // An install changes every server it reaches, run after run: it is approved like /patch install.
    if (args.operation === 'patch-install' || deps.settings.rollout.scanSchedulesNeedApproval) {
      await proposePlan(request, caller, reply, deps, audit, plan);
      return;
    }
    const id = await startSchedule(request, plan, caller.userId, caller.userId, deps);
    audit({ outcome: `schedule ${id}` });
    await reply.send(
      `Scheduled ${rolloutTitle(request)} at "${args.cron}" (UTC) as ${id}. /unschedule ${id} removes it.`,
    );
  },
});

export const schedules = defineCommand<BotDeps, typeof noArgs>({
  name: 'schedules',
  summary: 'list scheduled maintenance',
  args: noArgs,
  requires: 'admin',
  readOnly: true,
  async run({ reply }, deps) {
    const all = await deps.queues.schedules();
    if (all.length === 0) {
      await reply.send('Nothing is scheduled.');
      return;
    }
    await reply.send(
      [
        'Scheduled:',
        ...all.map(
          (s) =>
            `${s.id}  "${s.pattern}"  ${rolloutTitle(s.data.request)}  by ${s.data.createdBy}${s.data.approvedBy && s.data.approvedBy !== s.data.createdBy ? `, approved by ${s.data.approvedBy}` : ''}${s.next ? `  next ${formatUtc(s.next)}` : ''}`,
        ),
      ].join('\n'),
    );
  },
});

const scheduleIdArg = z
  .string()
  .trim()
  .regex(/^sched-[a-f0-9]{6}$/, 'Give the schedule id (sched-…); /schedules lists them.');

export const unschedule = defineCommand<BotDeps, typeof scheduleIdArg>({
  name: 'unschedule',
  summary: 'remove scheduled maintenance',
  usage: '<schedule id>',
  args: scheduleIdArg,
  requires: 'admin',
  async run({ args: id, reply }, deps) {
    if (!(await deps.queues.removeSchedule(id))) throw new UserError(`There is no schedule ${id}.`);
    await reply.send(`Removed schedule ${id}. Runs already started finish on their own.`);
  },
});
