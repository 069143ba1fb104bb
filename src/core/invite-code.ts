import { createHash, randomInt } from 'node:crypto';

// No 0/O, 1/I/L: codes are read aloud and typed on phones.
const alphabet = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';
export const inviteCodeLength = 12;
export const inviteCodePattern = new RegExp(`^[${alphabet}]{${inviteCodeLength}}$`);

export function newInviteCode(): string {
  let code = '';
  for (let i = 0; i < inviteCodeLength; i++) code += alphabet[randomInt(alphabet.length)];
  return code;
}

/** Codes are stored hashed, so a Redis dump does not hand out memberships. */
export function hashInviteCode(code: string): string {
  return createHash('sha256').update(code.toUpperCase()).digest('hex');
}
