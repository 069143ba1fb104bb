import { z } from 'zod';
import { noArgs } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';

export const members = defineCommand<BotDeps, typeof noArgs>({
  name: 'members',
  readOnly: true,
  summary: 'list Telegram members who joined with an invite',
  args: noArgs,
  requires: 'admin',
  async run({ reply }, deps) {
    const list = await deps.members.list();
    if (list.length === 0) {
      await reply.whisper(
        'No members joined by invite yet (members on TELEGRAM_ALLOWED_USER_IDS are not listed).',
      );
      return;
    }
    await reply.whisper(
      [
        `${list.length} member${list.length > 1 ? 's' : ''} by invite:`,
        ...list.map((m) => `• ${m.userId}, since ${m.since.slice(0, 10)}, invited by ${m.invitedBy}`),
      ].join('\n'),
    );
  },
});

const userIdArg = z
  .string()
  .trim()
  .regex(/^\d{1,16}$/, 'Give the numeric Telegram user id.');

export const revoke = defineCommand<BotDeps, typeof userIdArg>({
  name: 'revoke',
  summary: "end a member's membership",
  usage: '<telegram user id>',
  args: userIdArg,
  requires: 'admin',
  async run({ args: userId, reply }, deps) {
    const revoked = await deps.members.revoke(userId);
    if (revoked)
      await deps.telegram.menus
        ?.guest(userId)
        .catch((err: unknown) => deps.intake.log.warn({ err: String(err) }, 'could not reset the menu'));
    await reply.whisper(
      revoked
        ? `Telegram user ${userId} is no longer a member.`
        : `Telegram user ${userId} was not a member by invite (the config allow-list is changed in TELEGRAM_ALLOWED_USER_IDS).`,
    );
  },
});
