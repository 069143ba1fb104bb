import { UserError } from '../../core/errors.js';
import { noArgs, userIdArg } from '../args.js';
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

export const revoke = defineCommand<BotDeps, typeof userIdArg>({
  name: 'revoke',
  summary: "end a member's membership, stop their server and unlink their secrets",
  usage: '<telegram user id>',
  args: userIdArg,
  requires: 'admin',
  async run({ caller, args: userId, reply, audit }, deps) {
    const revoked = await deps.members.revoke(userId);
    if (revoked)
      await deps.telegram.menus
        ?.guest(userId)
        .catch((err: unknown) => deps.intake.log.warn({ err: String(err) }, 'could not reset the menu'));
    // Still a member through the config allow-list: their server stays as it is.
    if (await deps.isMember(userId)) {
      await reply.whisper(
        `Telegram user ${userId} was not a member by invite (the config allow-list is changed in TELEGRAM_ALLOWED_USER_IDS).`,
      );
      return;
    }
    await reply.whisper(
      revoked
        ? `Telegram user ${userId} is no longer a member.`
        : `Telegram user ${userId} was not a member by invite; looking for a server of theirs to stop.`,
    );
    // Stopping and unbinding are AWS calls that may have to wait out throttling: a worker does them
    // and edits this message, which then asks whether to terminate the server.
    const message = await reply.send(
      `Stopping the server of Telegram user ${userId} and unlinking their secrets from it…`,
    );
    if (!message) throw new UserError('This chat cannot show progress: stop their server with /destroy-for.');
    const jobId = await deps.queues.revokeServer({ userId, requestedBy: caller.userId, message });
    audit({ jobId, outcome: `${revoked ? 'revoked' : 'not a member'}; stopping their server` });
  },
});
