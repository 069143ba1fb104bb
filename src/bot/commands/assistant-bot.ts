import { z } from 'zod';
import { type Caller, telegramUserIdPattern } from '../../core/caller.js';
import type { OutgoingMessage } from '../../core/chat.js';
import { UserError } from '../../core/errors.js';
import { type ManagedBots, maxAddedUsers, suggestBot } from '../../core/managed-bots.js';
import { findKind } from '../../core/secret-kinds.js';
import { kindArg } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { restrict, rotateAssistantBot } from '../intake/assistant-bot.js';
import { restartAssistant } from './server.js';

/** Commands about the member's assistant bot when fleetbot created it (Telegram managed bots). */

function managedBotsOf(deps: BotDeps): ManagedBots | undefined {
  return deps.telegram.managedBots;
}

/** The one-tap button that creates the member's assistant bot, where Telegram offers it. */
export function createBotButton(caller: Caller, deps: BotDeps, text: string): OutgoingMessage | undefined {
  if (!managedBotsOf(deps) || caller.platform !== 'telegram') return undefined;
  return { text, createBot: { label: 'Create my assistant bot', suggestion: suggestBot(caller) } };
}

export const rotate = defineCommand<BotDeps, typeof kindArg>({
  name: 'rotate',
  summary: 'replace one of your secrets with a new one, and restart your assistant with it',
  usage: '<kind>',
  args: kindArg,
  requires: 'user',
  // Asks Telegram for a new token and may restart the assistant through Run Command.
  limit: 'server',
  async run({ caller, args: kind, reply, audit }, deps) {
    const managedBots = managedBotsOf(deps);
    if (kind === 'telegram-bot-token' && managedBots && (await deps.assistantBots.get(caller.userId))) {
      const rotated = await rotateAssistantBot(caller, { ...deps, managedBots });
      const running = rotated.server?.state === 'running';
      await reply.send(
        `Replaced the token of @${rotated.bot.username}: the old one no longer works, the new one is stored (${rotated.fingerprint}).${
          rotated.server && !running ? ' Your server reads it when it next starts.' : ''
        }`,
      );
      if (rotated.server && running) {
        const commandId = await restartAssistant(rotated.server, caller.userId, reply, deps);
        audit({ commandIds: commandId, outcome: `rotated; restart on ${rotated.server.id}` });
      } else audit({ outcome: 'rotated' });
      return;
    }
    await deps.pending.expect(caller.userId, kind, deps.settings.setTimeoutMs);
    audit({ outcome: 'waiting for the new value' });
    await reply.send(
      `Make a new ${kind} (${findKind(kind)?.purpose}) and send it as your next message; I delete it as soon as it arrives and offer to restart your assistant with it. Revoke the old one where you made it once your assistant runs with the new one.`,
    );
  },
});

const userId = z
  .string()
  .regex(telegramUserIdPattern, 'Give the numeric Telegram user id (the person can see theirs with /whoami).')
  .transform(Number);
const accessArgs = z
  .string()
  .trim()
  .transform((text) => text.split(/\s+/).filter(Boolean))
  .pipe(
    z.union(
      [
        z.tuple([]).transform(() => ({ action: 'show' as const })),
        z.tuple([z.enum(['add', 'remove']), userId]).transform(([action, id]) => ({ action, id })),
      ],
      { error: 'Send /access, /access add <telegram user id> or /access remove <telegram user id>.' },
    ),
  );

export const access = defineCommand<BotDeps, typeof accessArgs>({
  name: 'access',
  summary: 'show or change who besides you may talk to your assistant bot',
  usage: '[add|remove <telegram user id>]',
  args: accessArgs,
  requires: 'user',
  limit: 'command',
  async run({ caller, args, reply, audit }, deps) {
    const managedBots = managedBotsOf(deps);
    const record = await deps.assistantBots.get(caller.userId);
    if (!managedBots || !record)
      throw new UserError(
        'I did not create your assistant bot, so I cannot change who may use it. Set that in your assistant itself.',
      );
    let added = record.addedUserIds;
    if (args.action === 'add') {
      if (args.id === Number(caller.userId)) throw new UserError('You can always talk to your own bot.');
      if (!added.includes(args.id)) {
        if (added.length >= maxAddedUsers)
          throw new UserError(`At most ${maxAddedUsers} people can be added. Remove someone first.`);
        added = [...added, args.id];
      }
    } else if (args.action === 'remove') {
      added = added.filter((id) => id !== args.id);
    }
    const log = deps.intake.log.child({ user: caller.userId });
    // Applied on every call, so a restriction that failed once is retried by a plain /access.
    if (!(await restrict({ ...deps, managedBots }, record.botId, added, log)))
      throw new UserError('Telegram did not take the change, so nothing changed. Try again in a minute.');
    if (added !== record.addedUserIds) await deps.assistantBots.setAddedUsers(caller.userId, added);
    if (args.action !== 'show') audit({ outcome: `${args.action} ${args.id}` });
    await reply.send(
      added.length === 0
        ? `Only you can talk to @${record.username}.`
        : `You and ${added.length === 1 ? 'this person' : `these ${added.length} people`} can talk to @${record.username}: ${added.join(', ')}.`,
    );
  },
});
