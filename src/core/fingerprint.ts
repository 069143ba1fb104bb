import { createHash } from 'node:crypto';

/**
 * What replies and logs show instead of a secret: the end of its SHA-256, so a user can tell two
 * values apart without any character of the secret itself appearing anywhere.
 */
export function fingerprint(secret: string): string {
  return `…${createHash('sha256').update(secret).digest('hex').slice(-4)}`;
}
