import { z } from 'zod';
import { UserError } from '../../core/errors.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';

/** An admin's way onto a server: the Session Manager command to run, given only when its agent is online. */

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
