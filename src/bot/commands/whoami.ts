import { roleLabels } from '../../core/caller.js';
import { noArgs } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';

export const whoami = defineCommand<BotDeps, typeof noArgs>({
  name: 'whoami',
  readOnly: true,
  summary: 'show who fleetbot thinks you are',
  args: noArgs,
  requires: 'anyone',
  async run({ caller, reply }) {
    const platform = caller.platform === 'telegram' ? 'Telegram' : 'Slack';
    const via = caller.viaConsole ? ' (via the local console)' : '';
    await reply.whisper(
      `You are ${platform} user ${caller.userId} (${caller.displayName}), role: ${roleLabels[caller.role]}${via}.`,
    );
  },
});
