/**
 * The secrets a user's assistant needs. Adding a kind is one entry here; every command, the
 * parameter naming and the recognizer read this list.
 */

export interface SecretKind {
  name: string;
  /** What it is for, in words a user understands. */
  purpose: string;
  shape: RegExp;
  maxLength: number;
  /** Which live check can prove the value works; none means the shape is all we can check. */
  liveCheck?: 'telegram-getme' | 'openai-models';
  /** Where its owner revokes a leaked value, in words a user can follow. */
  revokeAt: string;
}

/** A Telegram bot token as @BotFather issues it: the bot's numeric id, a colon, 35 characters. */
export const telegramBotTokenPattern = /^\d{5,16}:[A-Za-z0-9_-]{35}$/;

export const secretKinds = [
  {
    name: 'telegram-bot-token',
    purpose: "the token of your assistant's own Telegram bot (from @BotFather)",
    shape: telegramBotTokenPattern,
    maxLength: 64,
    liveCheck: 'telegram-getme',
    revokeAt: '@BotFather (/revoke, then pick the bot)',
  },
  {
    name: 'openai-api-key',
    purpose: 'your OpenAI API key',
    shape: /^sk-[A-Za-z0-9_-]{20,300}$/,
    maxLength: 310,
    liveCheck: 'openai-models',
    revokeAt: 'https://platform.openai.com/api-keys',
  },
] as const satisfies readonly SecretKind[];

export type SecretKindName = (typeof secretKinds)[number]['name'];

export const secretKindNames = secretKinds.map((k) => k.name) as [SecretKindName, ...SecretKindName[]];

export function findKind(name: string): SecretKind | undefined {
  return secretKinds.find((k) => k.name === name);
}

/** The kind whose shape matches, if exactly one does. */
export function recognizeKind(value: string): SecretKind | undefined {
  const matches = secretKinds.filter((k) => k.shape.test(value));
  return matches.length === 1 ? matches[0] : undefined;
}

/** Parameter Store's standard tier holds at most 4 KB per value. */
export const maxParameterBytes = 4096;

/** Looks like some secret even if it is no kind we know: never echo it, never store it in a group. */
export function looksSecret(text: string): boolean {
  return (
    secretKinds.some((k) => k.shape.test(text.trim())) ||
    /\b\d{5,16}:[A-Za-z0-9_-]{30,}\b/.test(text) ||
    /\bsk-[A-Za-z0-9_-]{16,}/.test(text)
  );
}
