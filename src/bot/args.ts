import { z } from 'zod';
import { telegramUserIdPattern } from '../core/caller.js';
import { findKind, type SecretKindName, secretKindNames } from '../core/secret-kinds.js';

/** For commands that take nothing: anything typed after the name is a usage error, not ignored. */
export const noArgs = z.string().trim().max(0, 'This command takes no arguments.');

/** One secret kind by name, for the commands that act on one (/forget, /rotate). */
export const kindArg = z
  .string()
  .trim()
  .refine(
    (v): v is SecretKindName => findKind(v) !== undefined,
    `Name one of the kinds: ${secretKindNames.join(', ')}.`,
  );

/** The member an admin acts for (/provision-for, /destroy-for, /revoke): members are Telegram users. */
export const userIdArg = z.string().trim().regex(telegramUserIdPattern, 'Give the numeric Telegram user id.');
