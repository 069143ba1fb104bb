import { z } from 'zod';
import type { AuditFilter } from '../../core/audit.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';

const args = z
  .string()
  .trim()
  .transform((text, ctx) => {
    const m = /^(?:(user|instance|job|actor):([A-Za-z0-9-]{1,40}))?\s*(\d{1,3})?$/.exec(text);
    const limit = m?.[3] ? Number(m[3]) : 20;
    if (!m || limit < 1 || limit > 100) {
      ctx.addIssue({
        code: 'custom',
        message: 'Filter by user:<id>, instance:<id>, job:<id> or actor:<id>, and give at most 100.',
      });
      return z.NEVER;
    }
    const filter = m[1] && m[2] ? ({ kind: m[1], id: m[2] } as AuditFilter) : undefined;
    return { filter, limit };
  });

export const audit = defineCommand<BotDeps, typeof args>({
  name: 'audit',
  summary: 'who did what, when, and what came of it',
  usage: '[user:<id>|instance:<id>|job:<id>|actor:<id>] [limit]',
  args,
  requires: 'admin',
  readOnly: true,
  async run({ args: { filter, limit }, reply }, deps) {
    const records = await deps.auditTrail.recent(limit, filter);
    if (records.length === 0) {
      await reply.whisper('No audit records match.');
      return;
    }
    const lines = records.map(
      (r) =>
        `${r.at.slice(0, 19).replace('T', ' ')} ${r.platform} ${r.actor} /${r.command}${r.args ? ` ${r.args}` : ''} → ${r.decision}${
          r.jobId ? ` job ${r.jobId}` : ''
        }${r.commandIds ? ` commands ${r.commandIds}` : ''}${r.outcome ? ` (${r.outcome})` : ''}`,
    );
    await reply.whisper([`Audit, newest first (${records.length}):`, ...lines].join('\n'));
  },
});
