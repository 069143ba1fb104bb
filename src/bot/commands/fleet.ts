import { z } from 'zod';
import type { FleetInstance } from '../../aws/fleet.js';
import { formatElapsed } from '../../core/durations.js';
import { UserError } from '../../core/errors.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { requestProvision } from './provisioning.js';
import { unbindAfterTerminate } from './server.js';

/** Admin views and actions on members' servers. */

const filterArg = z
  .string()
  .trim()
  .regex(
    /^[a-z0-9.-]{0,32}$/i,
    'A filter is a state, a Telegram user id, an instance id or a version (letters, digits, . and -).',
  );

export const fleet = defineCommand<BotDeps, typeof filterArg>({
  name: 'fleet',
  readOnly: true,
  summary: 'list fleet instances with state, version, age and SSM agent',
  usage: '[state | user id | instance id | version]',
  args: filterArg,
  requires: 'admin',
  async run({ args: filter, reply }, deps) {
    const { instances, agentsOnline: online } = await deps.fleetView.snapshot();
    const shown = instances.filter(
      (i) => !filter || i.state === filter || i.userId === filter || i.id === filter || i.version === filter,
    );
    if (shown.length === 0) {
      await reply.send(filter ? `No instance matches ${filter}.` : 'The fleet has no instances yet.');
      return;
    }
    const counts = new Map<string, number>();
    for (const i of shown) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
    const now = deps.now().getTime();
    const rows = shown
      .slice(0, 50)
      .map((i) =>
        [
          i.userId.padEnd(12),
          i.id.padEnd(20),
          i.state.padEnd(10),
          (i.version ?? '-').padEnd(10),
          (i.launchedAt ? formatElapsed(now - i.launchedAt.getTime()) : '-').padEnd(8),
          online.get(i.id) ? 'online' : 'offline',
        ].join(' '),
      );
    const summary = [...counts].map(([state, n]) => `${n} ${state}`).join(', ');
    const more = shown.length > 50 ? `\n… and ${shown.length - 50} more; narrow it with a filter.` : '';
    await reply.send(
      [
        `${shown.length} instance${shown.length === 1 ? '' : 's'}: ${summary}`,
        'user         instance             state      version    age      agent',
        ...rows,
      ].join('\n') + more,
    );
  },
});

const userIdArg = z
  .string()
  .trim()
  .regex(/^\d{1,16}$/, 'Give the numeric Telegram user id.');

export const provisionFor = defineCommand<BotDeps, typeof userIdArg>({
  name: 'provision-for',
  summary: "provision a member's server on their behalf",
  usage: '<telegram user id>',
  args: userIdArg,
  requires: 'admin',
  async run({ caller, args: userId, reply, audit }, deps) {
    if (!(await deps.isMember(userId))) throw new UserError(`Telegram user ${userId} is not a member.`);
    await requestProvision(userId, 'provision', caller, reply, deps, audit);
  },
});

export const destroyFor = defineCommand<BotDeps, typeof userIdArg>({
  name: 'destroy-for',
  summary: "terminate a member's server",
  usage: '<telegram user id>',
  args: userIdArg,
  requires: 'admin',
  async run({ args: userId, reply }, deps) {
    const instance = await memberInstance(userId, deps);
    await reply.confirm(
      `Terminate ${instance.id}, the server of Telegram user ${userId}?`,
      `/destroy-for-confirmed ${userId}`,
      {
        confirm: 'Terminate it',
      },
    );
  },
});

export const destroyForConfirmed = defineCommand<BotDeps, typeof userIdArg>({
  name: 'destroy-for-confirmed',
  summary: "terminate a member's server after confirmation",
  usage: '<telegram user id>',
  args: userIdArg,
  requires: 'admin',
  hidden: true,
  async run({ args: userId, reply, audit }, deps) {
    const instance = await memberInstance(userId, deps);
    await deps.fleet.terminate(instance.id);
    const unbindFailure = await unbindAfterTerminate(userId, deps);
    audit({
      outcome: `terminated ${instance.id}${unbindFailure ? `; unbind failed (${unbindFailure})` : ''}`,
    });
    await reply.send(
      `${instance.id} (Telegram user ${userId}) is being terminated.${
        unbindFailure
          ? ` Its parameters keep their InstanceArn tag (unbinding failed: ${unbindFailure}).`
          : ''
      }`,
    );
  },
});

const sessionArgs = z
  .string()
  .trim()
  .transform((text, ctx) => {
    const m = /^(\d{1,16}|i-[0-9a-f]{8,17})(?:\s+(\d{1,5}))?$/.exec(text);
    const port = m?.[2] ? Number(m[2]) : undefined;
    if (!m?.[1] || (port !== undefined && (port < 1 || port > 65535))) {
      ctx.addIssue({
        code: 'custom',
        message: 'Give a Telegram user id or an instance id, and optionally a port from 1 to 65535.',
      });
      return z.NEVER;
    }
    return { target: m[1], port };
  });

export const session = defineCommand<BotDeps, typeof sessionArgs>({
  name: 'session',
  summary: 'the command to open a shell or port forward on a server (no SSH needed)',
  usage: '<telegram user id | instance id> [port]',
  args: sessionArgs,
  requires: 'admin',
  async run({ args: { target, port }, reply, audit }, deps) {
    const instance = target.startsWith('i-')
      ? await deps.fleet.get(target)
      : await deps.fleet.findForUser(target);
    if (!instance) throw new UserError(`No fleet instance found for ${target}.`);
    const online = (await deps.runCommand.agentsOnline([instance.id])).get(instance.id) ?? false;
    audit({ outcome: `${online ? 'agent online' : 'agent offline'} on ${instance.id}` });
    if (!online)
      throw new UserError(
        `The SSM agent on ${instance.id} (${instance.state}) is not online, so no session can be opened now.`,
      );
    const region = deps.settings.region;
    const command = port
      ? `aws ssm start-session --region ${region} --target ${instance.id} --document-name AWS-StartPortForwardingSession --parameters '{"portNumber":["${port}"],"localPortNumber":["${port}"]}'`
      : // Named, not left to the default: the operator policy checks the session document explicitly.
        `aws ssm start-session --region ${region} --target ${instance.id} --document-name SSM-SessionManagerRunShell`;
    await reply.whisper(
      `${instance.id} (Telegram user ${instance.userId}) has its SSM agent online. Run:\n${command}\n` +
        `This needs the Session Manager plugin and the IAM managed policy ${deps.settings.sessionOperatorPolicy} ` +
        '(stack output SessionOperatorPolicyArn) on your AWS identity.',
    );
  },
});

async function memberInstance(userId: string, deps: BotDeps): Promise<FleetInstance> {
  const instance = await deps.fleet.findForUser(userId);
  if (!instance) throw new UserError(`Telegram user ${userId} has no server.`);
  return instance;
}
