/**
 * Who is talking to fleetbot. A command sees a Caller, never a platform event: the adapter
 * that received the message resolves the role through the access policy below.
 */

/**
 * The platforms whose user ids identify a person and carry access rules. The local console is a
 * place to chat (ChatPlatform) but has no people of its own: it acts as a Telegram user or a Slack
 * admin (Caller.viaConsole), so it is never an identity platform.
 */
export type IdentityPlatform = 'telegram' | 'slack';

/** A Telegram user id: the number Telegram gives every account (a private chat's id is the same). */
export const telegramUserIdPattern = /^\d{1,16}$/;
/** A Slack user id: `U…`, or `W…` on Enterprise Grid. */
export const slackUserIdPattern = /^[UW][A-Z0-9]{2,20}$/;
/** A Slack conversation id: a public channel `C…`, a private one `G…`, a direct message `D…`. */
export const slackChannelIdPattern = /^[CGD][A-Z0-9]{2,20}$/;

/** `user` = an end user who owns one instance; `admin` = an ops person; `guest` = anyone else. */
export type Role = 'guest' | 'user' | 'admin';

export interface Caller {
  platform: IdentityPlatform;
  /** The platform's user id: numeric for Telegram, `U…` for Slack. */
  userId: string;
  displayName: string;
  role: Role;
  /** Set when the message arrived through the local console rather than the platform itself. */
  viaConsole?: boolean;
  /** A Slack admin writing outside the channels where admin rights count: those channels. */
  adminChannels?: readonly string[];
}

export interface AccessPolicy {
  telegramUserIds: readonly string[];
  slackAdminIds: readonly string[];
  /** Empty means every channel; otherwise admin rights only count inside these channels. */
  slackChannelIds: readonly string[];
}

/**
 * Closed by default: an empty allow-list allows nobody. Telegram identities can only ever be
 * users (on the static list, or invited); Slack identities can only be admins.
 */
export function resolveRole(
  policy: AccessPolicy,
  who: { platform: IdentityPlatform; userId: string; channelId?: string; invited?: boolean },
): Role {
  if (who.platform === 'telegram')
    return who.invited || policy.telegramUserIds.includes(who.userId) ? 'user' : 'guest';
  if (!policy.slackAdminIds.includes(who.userId)) return 'guest';
  if (policy.slackChannelIds.length > 0 && !policy.slackChannelIds.includes(who.channelId ?? ''))
    return 'guest';
  return 'admin';
}

/** The channels where this Slack admin's rights count, when they wrote from another one. */
export function adminChannelsElsewhere(policy: AccessPolicy, who: Who): readonly string[] | undefined {
  if (who.platform !== 'slack' || !policy.slackAdminIds.includes(who.userId)) return undefined;
  if (policy.slackChannelIds.length === 0 || policy.slackChannelIds.includes(who.channelId ?? ''))
    return undefined;
  return policy.slackChannelIds;
}

export interface Who {
  platform: IdentityPlatform;
  userId: string;
  channelId?: string;
}

/** How adapters learn a caller's role; membership by invite lives in a store, hence async. */
export type RoleOf = (who: Who) => Promise<Role>;

export function createRoleOf(policy: AccessPolicy, isInvited: (userId: string) => Promise<boolean>): RoleOf {
  return async (who) =>
    resolveRole(policy, {
      ...who,
      invited: who.platform === 'telegram' && (await isInvited(who.userId)),
    });
}

/** How roles are named to people. */
export const roleLabels: Record<Role, string> = {
  guest: 'not a member',
  user: 'member',
  admin: 'fleet admin',
};
