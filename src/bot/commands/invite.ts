import { z } from 'zod';
import { formatUtc, parseDuration } from '../../core/durations.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';

const maxTtlMs = 30 * 86_400_000;

const args = z
  .string()
  .trim()
  .transform((text, ctx) => {
    const words = text === '' ? [] : text.split(/\s+/);
    let count = 1;
    let ttlMs: number | undefined;
    for (const word of words) {
      if (/^\d{1,2}$/.test(word) && Number(word) >= 1 && Number(word) <= 20) count = Number(word);
      else if (parseDuration(word) !== undefined) ttlMs = parseDuration(word);
      else {
        ctx.addIssue({
          code: 'custom',
          message: 'Give a count from 1 to 20 and an expiry such as 30m, 12h or 7d.',
        });
        return z.NEVER;
      }
    }
    if (words.length > 2 || (ttlMs !== undefined && (ttlMs < 60_000 || ttlMs > maxTtlMs))) {
      ctx.addIssue({
        code: 'custom',
        message: 'Give a count from 1 to 20 and an expiry between 1m and 30d.',
      });
      return z.NEVER;
    }
    return { count, ttlMs };
  });

export const invite = defineCommand<BotDeps, typeof args>({
  name: 'invite',
  summary: 'create one-time invite codes for the Telegram bot',
  usage: '[count 1-20] [expiry, e.g. 7d]',
  args,
  requires: 'admin',
  async run({ caller, args: { count, ttlMs }, reply }, { members, settings, now }) {
    const invites = await members.createInvites(count, ttlMs ?? settings.inviteTtlMs, caller.userId, now());
    const link = (code: string) =>
      settings.botUsername ? `https://t.me/${settings.botUsername}?start=${code}` : `/start ${code}`;
    const expires = invites[0] ? formatUtc(invites[0].expiresAt) : '';
    await reply.whisper(
      [
        `${count} invite${count > 1 ? 's' : ''}, each usable once, valid until ${expires}:`,
        ...invites.map((i) => link(i.code)),
      ].join('\n'),
    );
  },
});
