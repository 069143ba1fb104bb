import type { Caller } from '../../core/caller.js';
import { noArgs } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import type { Registry } from '../registry.js';

export function helpText(caller: Caller, registry: Registry<BotDeps>): string {
  const lines = registry
    .visibleTo(caller)
    .map((c) => `/${c.name}${c.usage ? ` ${c.usage}` : ''} - ${c.summary}`);
  const intro =
    caller.role === 'guest'
      ? 'fleetbot runs private servers for its members. You are not a member yet; ask an admin for an invite.'
      : 'Commands you can run:';
  return [intro, ...lines].join('\n');
}

export const help = defineCommand<BotDeps, typeof noArgs>({
  name: 'help',
  readOnly: true,
  summary: 'list the commands you can run',
  args: noArgs,
  requires: 'anyone',
  async run({ caller, reply }, { registry }) {
    await reply.whisper(helpText(caller, registry));
  },
});
