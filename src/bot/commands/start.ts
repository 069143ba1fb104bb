import { z } from 'zod';
import { inviteCodePattern } from '../../core/invite-code.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { createBotButton } from './assistant-bot.js';
import { helpText } from './help.js';
import { requestProvision } from './provisioning.js';
import { stoppedServer } from './server.js';

const args = z
  .string()
  .trim()
  .transform((v) => v.toUpperCase())
  .refine(
    (v) => v === '' || inviteCodePattern.test(v),
    'That invite code is not valid. Check it and try again.',
  );

/** Telegram sends /start when a chat opens; a deep link t.me/<bot>?start=<code> adds an invite code. */
export const start = defineCommand<BotDeps, typeof args>({
  name: 'start',
  summary: 'start here, join with an invite code, or start your stopped server',
  usage: '[invite code]',
  args,
  requires: 'anyone',
  // Members only (guests are never limited): a member's /start may start a stopped server.
  limit: 'server',
  async run({ caller, args: code, reply, audit }, deps) {
    const { members, registry, now } = deps;
    if (code === '') {
      // A member with a stopped server means "start it"; anyone else gets the greeting.
      if (caller.role === 'user' && (await stoppedServer(caller.userId, deps))) {
        await requestProvision(caller.userId, 'start', caller, reply, deps, audit);
        return;
      }
      await reply.whisper(helpText(caller, registry));
      return;
    }
    if (caller.platform !== 'telegram') {
      await reply.whisper('Invite codes are redeemed in the Telegram bot.');
      return;
    }
    const outcome = await members.redeem(code, caller.userId, now());
    if (outcome === 'invalid') {
      await reply.whisper(
        'This invite code is not valid: it is unknown, already used or expired. Ask an admin for a new one.',
      );
      return;
    }
    const welcome = outcome === 'joined' ? 'Welcome, you are a member now.' : 'You are already a member.';
    if (outcome === 'joined')
      await deps.telegram.menus
        ?.member(caller.userId)
        .catch((err: unknown) => deps.intake.log.warn({ err: String(err) }, 'could not set the member menu'));
    const hasBotToken = (await deps.secrets.list(caller.userId)).some((s) => s.kind === 'telegram-bot-token');
    const oneTap =
      !hasBotToken &&
      createBotButton(
        caller,
        deps,
        `${welcome} First, tap "Create my assistant bot" below: Telegram creates your assistant's own bot with you, and I fetch its token myself. Then send your other secrets here (I delete them at once), or /help to see what you can do.`,
      );
    await reply.whisper(
      oneTap || `${welcome} Send your secrets here (I delete them at once), or /help to see what you can do.`,
    );
  },
});
