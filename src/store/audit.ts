import type { Redis } from 'ioredis';
import { type AuditFilter, type AuditRecord, matchesAudit } from '../core/audit.js';

export interface AuditTrail {
  record(entry: Omit<AuditRecord, 'at'>): Promise<void>;
  /** Newest first. */
  recent(limit: number, filter?: AuditFilter): Promise<AuditRecord[]>;
}

/**
 * The audit trail is a Redis stream: append-only, ordered, trimmed to a retention count, and
 * readable from any process (the dashboard shows it, /audit queries it).
 */
export function createAuditTrail(redis: Redis, prefix: string, retention: number): AuditTrail {
  const key = `${prefix}:audit`;
  return {
    async record(entry) {
      const fields = Object.entries({ ...entry, at: new Date().toISOString() }).flatMap(([k, v]) =>
        v === undefined ? [] : [k, String(v)],
      );
      await redis.xadd(key, 'MAXLEN', '~', retention, '*', ...fields);
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
