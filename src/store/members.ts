import { hashInviteCode, newInviteCode } from '../core/invite-code.js';
import type { RedisClient } from './redis.js';

export interface Member {
  userId: string;
  since: string;
  invitedBy: string;
}

export interface Invite {
  code: string;
  expiresAt: Date;
}

export interface Members {
  createInvites(count: number, ttlMs: number, createdBy: string, now: Date): Promise<Invite[]>;
  /** Single use: the code is gone once redeemed, and an expired code is simply not there. */
  redeem(code: string, userId: string, now: Date): Promise<'joined' | 'already-member' | 'invalid'>;
  isMember(userId: string): Promise<boolean>;
  list(): Promise<Member[]>;
  revoke(userId: string): Promise<boolean>;
}

/** Membership lives in Redis: a hash of members, and one expiring key per (hashed) invite code. */
export function createMembers(redis: RedisClient, prefix: string): Members {
  const membersKey = `${prefix}:members`;
  const inviteKey = (code: string) => `${prefix}:invite:${hashInviteCode(code)}`;
  return {
    async createInvites(count, ttlMs, createdBy, now) {
      const expiresAt = new Date(now.getTime() + ttlMs);
      const invites = Array.from({ length: count }, () => ({ code: newInviteCode(), expiresAt }));
      const tx = redis.multi();
      for (const invite of invites)
        tx.set(inviteKey(invite.code), JSON.stringify({ createdBy, expiresAt }), 'PX', ttlMs, 'NX');
      await tx.exec();
      return invites;
    },
    async redeem(code, userId, now) {
      if (await redis.hexists(membersKey, userId)) return 'already-member';
      const raw = await redis.getdel(inviteKey(code));
      if (!raw) return 'invalid';
      const invite = JSON.parse(raw) as { createdBy: string };
      await redis.hset(
        membersKey,
        userId,
        JSON.stringify({ since: now.toISOString(), invitedBy: invite.createdBy }),
      );
      return 'joined';
    },
    async isMember(userId) {
      return (await redis.hexists(membersKey, userId)) === 1;
    },
    async list() {
      const all = await redis.hgetall(membersKey);
      return Object.entries(all)
        .map(([userId, raw]) => ({ userId, ...(JSON.parse(raw) as Omit<Member, 'userId'>) }))
        .sort((a, b) => a.since.localeCompare(b.since));
    },
    async revoke(userId) {
      return (await redis.hdel(membersKey, userId)) === 1;
    },
  };
}
