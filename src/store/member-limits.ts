import { randomBytes } from 'node:crypto';
import type { LimitClass, LimitReason, LimitRefusal, LimitSettings } from '../core/command-limits.js';
import type { RedisClient } from './redis.js';

/**
 * Members' command limits, shared by every bot process through Redis. Each window is a key whose
 * TTL Redis runs down, so no process clock is involved; the daily quota ends at 00:00 UTC by Redis
 * TIME. One script checks and charges atomically, so two processes cannot both spend the last unit.
 */

export type LimitCharge =
  | {
      ok: true;
      /**
       * Keeps a launch charged (cooldown and daily quota). Without it, `settle()` gives them back:
       * a /provision the command itself refused (already has a server, secrets missing) costs no launch.
       */
      launched(): void;
      /** Called once the command ended, however it ended. */
      settle(): Promise<void>;
    }
  | { ok: false; refusal: LimitRefusal };

export interface MemberLimits {
  /** Checks every limit of the class and charges them all, or charges nothing and says why not. */
  take(member: string, limit: LimitClass): Promise<LimitCharge>;
  /** What `take` would refuse, charging nothing. */
  peek(member: string, limit: LimitClass): Promise<LimitRefusal | undefined>;
}

// KEYS: minute, hour, cooldown, day. ARGV: class, per minute, per hour, cooldown ms, per day, token,
// and 'peek' to only look.
// Every limit that refuses is looked at, and the longest wait is told, so "try again in" is true.
const takeScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local class = ARGV[1]
local function used(key) return tonumber(redis.call('GET', key) or '0') end
local function left(key, fallback)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then return fallback end
  return ttl
end
local reason, wait = nil, -1
local function refuse(r, ms) if ms > wait then reason, wait = r, ms end end
if used(KEYS[1]) >= tonumber(ARGV[2]) then refuse('commands_per_minute', left(KEYS[1], 60000)) end
if class ~= 'command' and used(KEYS[2]) >= tonumber(ARGV[3]) then
  refuse('server_actions_per_hour', left(KEYS[2], 3600000))
end
local untilMidnight = 86400000 - (now % 86400000)
if class == 'launch' then
  local cooling = redis.call('PTTL', KEYS[3])
  if cooling > 0 then refuse('launch_cooldown', cooling) end
  if used(KEYS[4]) >= tonumber(ARGV[5]) then refuse('launch_daily_quota', untilMidnight) end
end
if reason then return {reason, wait} end
if ARGV[7] == 'peek' then return {'ok', 0} end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], 60000) end
if class ~= 'command' then
  if redis.call('INCR', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], 3600000) end
end
if class == 'launch' then
  if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[4]) end
  redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], untilMidnight)
end
return {'ok', 0}
`;

// Gives a launch back: the day's count, and the cooldown only if it is still the one this launch set.
const refundScript = `
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`;

/** Key names of one member's limits, under `<prefix>:limits:`; tests end windows by expiring them. */
export function memberLimitKeys(prefix: string, member: string) {
  const base = `${prefix}:limits:${member}`;
  return {
    minute: `${base}:minute`,
    hour: `${base}:hour`,
    cooldown: `${base}:launch-cooldown`,
    day: `${base}:launches-today`,
  };
}

export function createMemberLimits(
  redis: RedisClient,
  prefix: string,
  settings: LimitSettings,
): MemberLimits {
  const run = async (member: string, limit: LimitClass, token: string, mode: 'take' | 'peek') => {
    const keys = memberLimitKeys(prefix, member);
    const [verdict, wait] = (await redis.eval(
      takeScript,
      4,
      keys.minute,
      keys.hour,
      keys.cooldown,
      keys.day,
      limit,
      settings.commandsPerMinute,
      settings.serverActionsPerHour,
      settings.provisionCooldownMs,
      settings.launchesPerDay,
      token,
      mode,
    )) as [string, number];
    return verdict === 'ok' ? undefined : { reason: verdict as LimitReason, retryInMs: wait };
  };
  return {
    peek: (member, limit) => run(member, limit, '', 'peek'),
    async take(member, limit) {
      const keys = memberLimitKeys(prefix, member);
      const token = randomBytes(8).toString('hex');
      const refusal = await run(member, limit, token, 'take');
      if (refusal) return { ok: false, refusal };
      let keep = limit !== 'launch';
      return {
        ok: true,
        launched() {
          keep = true;
        },
        async settle() {
          if (keep) return;
          keep = true;
          await redis.eval(refundScript, 2, keys.cooldown, keys.day, token);
        },
      };
    },
  };
}
