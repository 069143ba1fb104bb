import { UserError } from '../../core/errors.js';
import { userIdArg } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { requestProvision } from './provisioning.js';

/** An admin starts a member's server for them, as the member's own /provision would. */
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
