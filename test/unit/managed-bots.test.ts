import { describe, expect, it } from 'vitest';
import { suggestBot } from '../../src/core/managed-bots.js';

/** Telegram's rule for a bot username: 5-32 letters, digits and underscores, ending in "bot". */
const botUsername = /^[A-Za-z][A-Za-z0-9_]{4,31}$/;

describe('suggestBot', () => {
  it('when the member has a username, then the bot is named after it', () => {
    expect(suggestBot({ userId: '42', displayName: '@mia' })).toEqual({
      name: 'mia assistant',
      username: 'mia_assistant_bot',
    });
  });

  it('when the name holds characters a username cannot, then they are dropped and the user id stands in', () => {
    const s = suggestBot({ userId: '9001', displayName: 'Zoë 🚀' });
    expect(s).toEqual({ name: 'Zoë 🚀 assistant', username: 'Zo_assistant_bot' });
    const digitsFirst = suggestBot({ userId: '9001', displayName: '2fast' });
    expect(digitsFirst.username).toBe('u9001_assistant_bot');
    const nothingLeft = suggestBot({ userId: '9001', displayName: 'Жанна' });
    expect(nothingLeft.username).toBe('u9001_assistant_bot');
  });

  it('when the handle is long, then the username still fits 32 characters and ends in bot', () => {
    for (const displayName of ['@a_very_long_telegram_handle_of_32', 'x'.repeat(80), '@ab']) {
      const { name, username } = suggestBot({ userId: '1234567890123456', displayName });
      expect(username).toMatch(botUsername);
      expect(username.toLowerCase().endsWith('bot')).toBe(true);
      expect(name.length).toBeLessThanOrEqual(64);
    }
  });
});
