import { telegramUserIdPattern } from './caller.js';
import type { SecretKindName } from './secret-kinds.js';

/** The configured prefix: one path segment (SSM reserves names starting with aws or ssm; config checks that). */
export const parameterPrefixPattern = /^[A-Za-z0-9_.-]{1,40}$/;

function checkUserId(userId: string): void {
  if (!telegramUserIdPattern.test(userId)) throw new Error('user id must be numeric');
}

/**
 * Parameter names are built only from the configured prefix, a numeric Telegram user id and a
 * known kind: text a user typed never becomes part of a path.
 */
export function userParameterName(prefix: string, userId: string, kind: SecretKindName): string {
  checkUserId(userId);
  return `/${prefix}/users/${userId}/${kind}`;
}

export function userParameterPath(prefix: string, userId: string): string {
  checkUserId(userId);
  return `/${prefix}/users/${userId}`;
}
