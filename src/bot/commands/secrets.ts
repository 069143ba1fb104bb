import { z } from 'zod';
import { formatUtc } from '../../core/durations.js';
import { findKind, type SecretKindName, secretKinds } from '../../core/secret-kinds.js';
import { kindArg, noArgs } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { kindList, takeSecret } from '../intake/intake.js';
import { createBotButton } from './assistant-bot.js';

// `/set <kind>` alone waits for the next message; `/set <kind> <value>` carries the value itself.
const setArgs = z
  .string()
  .trim()
  .transform((text, ctx) => {
    const [kind = '', ...rest] = text.split(/\s+/);
    if (!findKind(kind)) {
      ctx.addIssue({ code: 'custom', message: `Name one of the kinds:\n${kindList}` });
      return z.NEVER;
    }
    return { kind: kind as SecretKindName, value: rest.join(' ') };
  });

export const set = defineCommand<BotDeps, typeof setArgs>({
  name: 'set',
  summary: 'store a secret; send the value as your next message',
  usage: '<kind>',
  args: setArgs,
  requires: 'user',
  limit: 'command',
  deletesMessage: true,
  async run({ caller, args: { kind, value }, reply, original }, deps) {
    if (value !== '') {
      await takeSecret({ caller, value, kind, original, reply }, deps.intake);
      return;
    }
    await deps.pending.expect(caller.userId, kind, deps.settings.setTimeoutMs);
    const minutes = Math.round(deps.settings.setTimeoutMs / 60_000);
    const paste = `Send your ${kind} (${findKind(kind)?.purpose}) as your next message, within ${minutes} minute${minutes === 1 ? '' : 's'}. I delete it as soon as it arrives.`;
    const oneTap =
      kind === 'telegram-bot-token' &&
      createBotButton(
        caller,
        deps,
        `Tap "Create my assistant bot" below: Telegram creates the bot with you and I fetch its token myself, so it never appears in this chat. Or: ${paste}`,
      );
    await reply.send(oneTap || paste);
  },
});

export const secrets = defineCommand<BotDeps, typeof noArgs>({
  name: 'secrets',
  readOnly: true,
  summary: 'list which secrets you have stored (never their values)',
  args: noArgs,
  requires: 'user',
  async run({ caller, reply }, deps) {
    const [stored, assistantBot] = await Promise.all([
      deps.secrets.list(caller.userId),
      deps.assistantBots.get(caller.userId),
    ]);
    const lines = secretKinds.map((kind) => {
      const s = stored.find((x) => x.kind === kind.name);
      const bot =
        kind.name === 'telegram-bot-token' && assistantBot
          ? ` (of @${assistantBot.username}, created here: /rotate replaces it)`
          : '';
      return s
        ? `• ${kind.name}: stored${bot}, last changed ${s.lastChanged ? formatUtc(s.lastChanged) : 'unknown'}`
        : `• ${kind.name}: not stored`;
    });
    await reply.send(['Your secrets:', ...lines].join('\n'));
  },
});

export const forget = defineCommand<BotDeps, typeof kindArg>({
  name: 'forget',
  summary: 'delete one of your stored secrets',
  usage: '<kind>',
  args: kindArg,
  requires: 'user',
  limit: 'command',
  async run({ caller, args: kind, reply }, deps) {
    const needed =
      deps.settings.requiredSecrets.includes(kind) && (await deps.fleet.findForUser(caller.userId));
    await reply.confirm(
      needed
        ? `Delete your stored ${kind}? Your assistant needs it: it keeps running until its next start (a /restart, a deploy, a reboot), then it stops until you send a new one.`
        : `Delete your stored ${kind}? Your assistant cannot use it any more until you send a new one.`,
      `/forget-confirmed ${kind}`,
      { confirm: 'Delete it' },
    );
  },
});

export const forgetConfirmed = defineCommand<BotDeps, typeof kindArg>({
  name: 'forget-confirmed',
  summary: 'delete a secret after confirmation',
  usage: '<kind>',
  args: kindArg,
  requires: 'user',
  limit: 'command',
  hidden: true,
  async run({ caller, args: kind, reply }, deps) {
    const removed = await deps.secrets.remove(caller.userId, kind);
    // The managed bot's token is stored again the next time Telegram reports it.
    if (kind === 'telegram-bot-token') await deps.assistantBots.forgetStoredToken(caller.userId);
    deps.intake.log.info({ user: caller.userId, kind, removed }, 'secret forgotten');
    await reply.send(removed ? `Deleted your ${kind}.` : `You had no ${kind} stored; nothing changed.`);
  },
});
