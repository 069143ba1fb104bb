import { UserError } from '../../core/errors.js';
import { noArgs } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';

export const ping = defineCommand<BotDeps, typeof noArgs>({
  name: 'ping',
  summary: 'check that a worker picks up jobs and reaches AWS',
  args: noArgs,
  requires: 'admin',
  async run({ caller, reply }, { queues, now }) {
    const message = await reply.send('Ping queued; waiting for a worker…');
    if (!message) throw new UserError('This chat cannot show progress, so /ping has nothing to report into.');
    // No edit after enqueueing: the worker may already have written its answer into this message.
    await queues.ping({ requestedBy: caller.userId, requestedAt: now().getTime(), message });
  },
});
