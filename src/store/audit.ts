import { type AuditFilter, type AuditRecord, matchesAudit } from '../core/audit.js';
import type { RedisClient } from './redis.js';

export interface AuditTrail {
  record(entry: Omit<AuditRecord, 'at'>): Promise<void>;
  /**
   * A refused command from someone who is not an admin. Counted per sender and window, and kept as
   * at most one record per sender and window: each refusal replaces the window's record with one
   * that carries the count so far, so a flood of refusals cannot push other records out of the
   * capped stream. The first refusal of a window is recorded exactly as `record` would.
   */
  recordRefusal(entry: Omit<AuditRecord, 'at' | 'outcome'>, refusals: RefusalWindow): Promise<RefusalCount>;
  /** Newest first. */
  recent(limit: number, filter?: AuditFilter): Promise<AuditRecord[]>;
}

export interface RefusalWindow {
  /** How the sender is named in the record, e.g. `guest 123`. */
  sender: string;
  /** What was refused as people read it (`/provision`, `unknown commands`); a bounded set. */
  what: string;
  windowMs: number;
}

export interface RefusalCount {
  /** Refusals of this sender in the current window, this one included. */
  count: number;
  windowEndsInMs: number;
}

// KEYS: the sender's window (a hash), the stream. ARGV: window ms, retention, since (for people),
// what was refused (e.g. `/provision`), sender, then the record's fields. One script, so concurrent refusals from several bot processes neither
// lose a count nor leave two records for one window.
const refusalScript = `
local n = redis.call('HINCRBY', KEYS[1], 'count', 1)
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[1], 'since', ARGV[3])
end
redis.call('HINCRBY', KEYS[1], 'cmd:' .. ARGV[4], 1)
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
if n > 1 then
  local all = redis.call('HGETALL', KEYS[1])
  local since, parts = '', {}
  for i = 1, #all, 2 do
    if all[i] == 'since' then since = all[i + 1] end
    if string.sub(all[i], 1, 4) == 'cmd:' then
      parts[#parts + 1] = string.sub(all[i], 5) .. ' x' .. all[i + 1]
    end
  end
  table.sort(parts)
  fields[#fields + 1] = 'outcome'
  fields[#fields + 1] = 'refused ' .. n .. ' commands from ' .. ARGV[5] .. ' since ' .. since ..
    ' (' .. table.concat(parts, ', ') .. ')'
  local previous = redis.call('HGET', KEYS[1], 'entry')
  if previous then redis.call('XDEL', KEYS[2], previous) end
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
redis.call('HSET', KEYS[1], 'entry', id)
return {n, redis.call('PTTL', KEYS[1])}
`;

/**
 * The audit trail is a Redis stream: ordered, trimmed to a retention count, and readable from any
 * process (the dashboard shows it, /audit queries it). It is append-only but for refusal records,
 * which stand for a whole window of one sender's refusals and are replaced as the count grows.
 */
export function createAuditTrail(redis: RedisClient, prefix: string, retention: number): AuditTrail {
  const key = `${prefix}:audit`;
  return {
    async record(entry) {
      await redis.xadd(key, 'MAXLEN', '~', retention, '*', ...streamFields(entry, new Date().toISOString()));
    },
    async recordRefusal(entry, { sender, what, windowMs }) {
      const at = new Date().toISOString();
      const fields = streamFields(entry, at);
      const [count, ttl] = (await redis.eval(
        refusalScript,
        2,
        `${key}:refusals:${entry.platform}:${entry.actor}`,
        key,
        windowMs,
        retention,
        at.replace('T', ' ').slice(0, 19).concat(' UTC'),
        what,
        sender,
        ...fields,
      )) as [number, number];
      return { count, windowEndsInMs: ttl > 0 ? ttl : windowMs };
    },
    async recent(limit, filter) {
      const out: AuditRecord[] = [];
      let end = '+';
      // Reads back in pages until enough records match the filter or the stream is exhausted.
      for (let page = 0; page < 20 && out.length < limit; page++) {
        const entries = await redis.xrevrange(key, end, '-', 'COUNT', 500);
        if (entries.length === 0) break;
        for (const [, fields] of entries) {
          const record = Object.fromEntries(
            fields.flatMap((v, i, all) => (i % 2 === 0 ? [[v, all[i + 1] ?? '']] : [])),
          ) as unknown as AuditRecord;
          if (matchesAudit(record, filter)) out.push(record);
          if (out.length >= limit) break;
        }
        const last = entries.at(-1)?.[0];
        if (!last) break;
        end = `(${last}`;
      }
      return out;
    },
  };
}

/** A record as a stream entry's field list; fields left undefined are not written. */
function streamFields(entry: Omit<AuditRecord, 'at'>, at: string): string[] {
  return Object.entries({ ...entry, at }).flatMap(([k, v]) => (v === undefined ? [] : [k, String(v)]));
}
