import { UserError } from '../../core/errors.js';
import { userIdArg } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { unbindAfterTerminate } from './server.js';

/** An admin terminates a member's server: asked first, then done by the hidden confirmed command. */
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

async function memberInstance(userId: string, deps: BotDeps) {
  const instance = await deps.fleet.findForUser(userId);
  if (!instance) throw new UserError(`Telegram user ${userId} has no server.`);
  return instance;
}
