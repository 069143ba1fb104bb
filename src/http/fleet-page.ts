import { createHash } from 'node:crypto';
import htmlEscape from 'escape-html';
import type { AuditRecord } from '../core/audit.js';
import type { FleetInstance } from '../core/ports/fleet.js';

/** One audited chat command, as the audit store returns it (newest first). */
export type { AuditRecord };

export interface FleetJob {
  queue: string;
  id: string;
  name: string;
  state: string;
  progress: unknown;
  /** When the job was added, epoch milliseconds. */
  addedAt?: number;
}

/** Each source may fail on its own; the page still shows the others. */
export interface FleetPageData {
  instances: readonly FleetInstance[] | 'unavailable';
  jobs: readonly FleetJob[] | 'unavailable';
  audit: readonly AuditRecord[] | 'unavailable';
  generatedAt: Date;
}

export const auditRows = 50;
const instanceRows = 500;

const style = [
  'body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1f24}',
  'table{border-collapse:collapse;margin:.5rem 0 1.5rem}',
  'th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}',
  'th{background:#f6f8fa}',
  'td{white-space:pre-wrap;word-break:break-word;max-width:40rem}',
  '.note{color:#57606a}',
].join('');

/**
 * No script may run on this page at all, and the one style block is allowed by its hash: an
 * escaping mistake then still cannot execute anything.
 */
export const fleetPageCsp = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(style).digest('base64')}'`,
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The only way a value reaches the page: job names, chat text and tags are all user input. */
export function escapeHtml(value: unknown): string {
  return htmlEscape(String(value ?? ''));
}

export function renderFleetPage(data: FleetPageData): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="30">
<title>fleetbot fleet</title>
<style>${style}</style>
</head>
<body>
<h1>Fleet</h1>
<p class="note">Generated ${escapeHtml(data.generatedAt.toISOString())}. <a href="jobs/">Job dashboard</a> · <a href="metrics">Metrics</a></p>
${instancesSection(data.instances)}
${jobsSection(data.jobs)}
${auditSection(data.audit)}
</body>
</html>
`;
}

function instancesSection(instances: FleetPageData['instances']): string {
  if (instances === 'unavailable') return '<h2>Instances</h2>\n<p class="note">EC2 could not be read.</p>';
  const byState = countBy(instances, (i) => i.state);
  const byVersion = countBy(instances, (i) => i.version ?? '(none)');
  const shown = [...instances].sort((a, b) => a.userId.localeCompare(b.userId)).slice(0, instanceRows);
  const more =
    instances.length > shown.length
      ? `<p class="note">${instances.length - shown.length} more not shown.</p>`
      : '';
  return `<h2>Instances (${instances.length})</h2>
<h3>By state</h3>
${table(['state', 'instances'], byState)}
<h3>By version</h3>
${table(['version', 'instances'], byVersion)}
<h3>All</h3>
${table(
  ['instance', 'user', 'state', 'version', 'launched'],
  shown.map((i) => [i.id, i.userId, i.state, i.version ?? '', i.launchedAt?.toISOString() ?? '']),
)}${more}`;
}

function jobsSection(jobs: FleetPageData['jobs']): string {
  if (jobs === 'unavailable') return '<h2>Running jobs</h2>\n<p class="note">Redis could not be read.</p>';
  return `<h2>Running jobs (${jobs.length})</h2>
${table(
  ['queue', 'id', 'name', 'state', 'progress', 'added'],
  jobs.map((j) => [
    j.queue,
    j.id,
    j.name,
    j.state,
    formatProgress(j.progress),
    j.addedAt ? new Date(j.addedAt).toISOString() : '',
  ]),
)}`;
}

function auditSection(audit: FleetPageData['audit']): string {
  if (audit === 'unavailable') return '<h2>Audit</h2>\n<p class="note">The audit log could not be read.</p>';
  return `<h2>Audit (last ${auditRows})</h2>
${table(
  ['at', 'platform', 'actor', 'command', 'args', 'decision', 'job', 'outcome'],
  audit
    .slice(0, auditRows)
    .map((a) => [a.at, a.platform, a.actor, a.command, a.args, a.decision, a.jobId ?? '', a.outcome ?? '']),
)}`;
}

function table(head: readonly string[], rows: readonly (readonly unknown[])[]): string {
  if (rows.length === 0) return '<p class="note">None.</p>';
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table>\n<thead><tr>${th}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): [string, number][] {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

/** BullMQ progress is whatever the processor reported: a percentage, or an object of its own. */
function formatProgress(progress: unknown): string {
  if (typeof progress === 'number') return `${progress}%`;
  if (typeof progress === 'string') return progress;
  if (progress && typeof progress === 'object') {
    const p = progress as Record<string, unknown>;
    if (typeof p.done === 'number' && typeof p.total === 'number') return `${p.done}/${p.total}`;
    const text = JSON.stringify(progress);
    return text.length > 200 ? `${text.slice(0, 199)}…` : text;
  }
  return '';
}
