/**
 * Who is talking to fleetbot. A command sees a Caller, never a platform event: the adapter
 * that received the message resolves the role through the access policy below.
 */

export type Platform = 'telegram' | 'slack';

/** `user` = an end user who owns one instance; `admin` = an ops person; `guest` = anyone else. */
export type Role = 'guest' | 'user' | 'admin';

export interface Caller {
  platform: Platform;
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
  who: { platform: Platform; userId: string; channelId?: string; invited?: boolean },
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
  platform: Platform;
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
