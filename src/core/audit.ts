import { looksSecret } from './secret-kinds.js';

/** One decision about one chat action: who, what, when, allowed or not, and what came of it. */
export interface AuditRecord {
  at: string;
  platform: string;
  actor: string;
  command: string;
  args: string;
  decision: string;
  jobId?: string;
  commandIds?: string;
  outcome?: string;
}

/** Arguments as they may be stored: never a secret, never longer than a line. */
export function sanitizeArgs(args: string, carriesSecret = false): string {
  if (carriesSecret || looksSecret(args)) return '[redacted]';
  const oneLine = args.replace(/\s+/g, ' ').trim();
  return oneLine.length > 200 ? `${oneLine.slice(0, 200)}…` : oneLine;
}

export type AuditFilter =
  | { kind: 'user'; id: string }
  | { kind: 'instance'; id: string }
  | { kind: 'job'; id: string }
  | { kind: 'actor'; id: string };

export function matchesAudit(record: AuditRecord, filter: AuditFilter | undefined): boolean {
  if (!filter) return true;
  switch (filter.kind) {
    case 'actor':
      return record.actor === filter.id;
    case 'job':
      return record.jobId === filter.id;
    case 'user':
    case 'instance':
      return record.args.split(/[\s,:]+/).includes(filter.id) || record.actor === filter.id;
  }
}
