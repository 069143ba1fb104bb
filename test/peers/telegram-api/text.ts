import type { Params } from './params.js';
import { badRequest } from './responses.js';

/** The formatting parameters of sendMessage and editMessageText. */
const formatting = ['parse_mode', 'entities'];

/**
 * Message text as the fake stores it: plain, outer whitespace trimmed as Telegram does. fleetbot sends
 * plain text only, so formatting is refused with a 400 rather than accepted unparsed: a fake that echoed
 * markup back as it came would let broken HTML or MarkdownV2 pass a test and fail on the real server.
 */
export function plainText(params: Params, raw: string): string {
  for (const name of formatting) {
    const value = params[name];
    if (value !== undefined && value !== null && value !== '')
      throw badRequest(`${name} is not supported by this test peer`);
  }
  return raw.trim();
}

/** Telegram's limits count characters, not UTF-16 units, so an emoji counts once. */
export function textLength(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}
