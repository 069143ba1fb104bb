import type { SecretKindName } from './secret-kinds.js';

/**
 * Parameter names are built only from the configured prefix, a numeric Telegram user id and a
 * known kind: text a user typed never becomes part of a path.
 */
export function userParameterName(prefix: string, userId: string, kind: SecretKindName): string {
  if (!/^\d{1,16}$/.test(userId)) throw new Error('user id must be numeric');
  return `/${prefix}/users/${userId}/${kind}`;
}

export function userParameterPath(prefix: string, userId: string): string {
  if (!/^\d{1,16}$/.test(userId)) throw new Error('user id must be numeric');
  return `/${prefix}/users/${userId}`;
}
