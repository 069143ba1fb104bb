import { noArgs } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';

/** The target of every Cancel button: it changes nothing and says so. */
export const cancelled = defineCommand<BotDeps, typeof noArgs>({
  name: 'cancelled',
  readOnly: true,
  summary: 'answer a Cancel button',
  args: noArgs,
  requires: 'anyone',
  hidden: true,
  async run({ reply }) {
    await reply.whisper('Cancelled. Nothing was changed.');
  },
});
