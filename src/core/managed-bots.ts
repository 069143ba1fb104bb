/**
 * Telegram's managed bots (Bot API 9.6): when fleetbot's own bot may manage bots, a member creates
 * their assistant's bot with one tap and fleetbot fetches its token itself, so no bot token is ever
 * pasted into a chat. The chat adapter implements this; commands and the bot only see this port.
 */
export interface ManagedBots {
  /** The bot's current token. Passed to the secret store only; never to a log, a reply or Redis. */
  token(botId: number): Promise<string>;
  /** Revokes the current token and returns the new one. */
  replaceToken(botId: number): Promise<string>;
  /** Only the owner and these users (at most `maxAddedUsers`) may talk to the bot. */
  restrictAccess(botId: number, addedUserIds: readonly number[]): Promise<void>;
}

/** The Bot API's limit on `added_user_ids` of setManagedBotAccessSettings. */
export const maxAddedUsers = 10;

/** The assistant bot fleetbot created for a member. */
export interface AssistantBot {
  botId: number;
  username: string;
}

/** Telegram reports a creation twice: as the creator's service message and as a `managed_bot` update. */
export interface ManagedBotReport {
  bot: AssistantBot;
  /** `created`: the service message; `updated`: the update, for a creation or a new token alike. */
  report: 'created' | 'updated';
}

/** What a button tap creates: the member may edit both names in Telegram before confirming. */
export interface BotSuggestion {
  name: string;
  username: string;
}

const usernameSuffix = '_assistant_bot';

/**
 * A name and username derived from the member. Telegram wants a username of 5-32 letters, digits and
 * underscores ending in "bot"; it must also be free, which only Telegram knows, so the member can
 * change it in the creation dialog.
 */
export function suggestBot(member: { userId: string; displayName: string }): BotSuggestion {
  const handle = member.displayName.replace(/^@/, '');
  const base = handle.replace(/[^A-Za-z0-9_]/g, '').slice(0, 32 - usernameSuffix.length);
  const start = /^[A-Za-z]/.test(base) ? base : `u${member.userId}`.slice(0, 32 - usernameSuffix.length);
  const name = `${handle || 'My'} assistant`.slice(0, 64);
  return { name, username: `${start}${usernameSuffix}` };
}
