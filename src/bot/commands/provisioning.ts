import type { Caller } from '../../core/caller.js';
import type { Reply } from '../../core/chat.js';
import { formatElapsed, formatUtc } from '../../core/durations.js';
import { UserError } from '../../core/errors.js';
import type { FleetInstance } from '../../core/ports/fleet.js';
import { provisionStages, renderStages, startStages } from '../../core/provision-stages.js';
import type { AuditDetail } from '../command.js';
import type { BotDeps } from '../deps.js';

/** Describes one instance for its owner or an admin; one DescribeInstanceStatus call. */
export async function describeInstance(instance: FleetInstance, deps: BotDeps): Promise<string> {
  const health = (await deps.fleet.health([instance.id])).get(instance.id);
  const launched = instance.launchedAt;
  const lines = [
    `Server ${instance.id}: ${health?.state ?? instance.state}`,
    health && health.state === 'running'
      ? `Checks: system ${health.system}, instance ${health.instance}`
      : undefined,
    `Version: ${instance.version ?? 'not tagged'}`,
    launched ? `Launched: ${formatUtc(launched)}` : undefined,
    launched && (health?.state ?? instance.state) === 'running'
      ? `Up: ${formatElapsed(deps.now().getTime() - launched.getTime())}`
      : undefined,
  ];
  return lines.filter(Boolean).join('\n');
}

/**
 * Queues a provision (or a start) for a member and posts the message the worker edits. Shared by
 * the member's own /provision and an admin's /provision-for.
 */
export async function requestProvision(
  userId: string,
  mode: 'provision' | 'start',
  caller: Caller,
  reply: Reply,
  deps: BotDeps,
  audit: (detail: AuditDetail) => void,
  /** The member's own /provision: keeps their launch cooldown and daily quota charged once queued. */
  launched?: () => void,
): Promise<void> {
  await checkProvision(userId, mode, caller, deps);
  const stages = mode === 'start' ? startStages : provisionStages;
  const title = mode === 'start' ? 'Starting your server' : 'Setting up your server';
  const message = await reply.send(`${title}: ${renderStages(stages, stages[0])}`);
  if (!message) throw new UserError('This chat cannot show progress.');
  const { jobId, queued } = await deps.queues.provision({
    userId,
    mode,
    requestedBy: `${caller.platform}:${caller.userId}`,
    startedAt: deps.now().getTime(),
    message,
  });
  audit({ jobId, outcome: queued ? 'queued' : 'already in progress' });
  if (queued) launched?.();
  if (!queued) await reply.edit(message, 'Setting up this server is already in progress.');
}

/**
 * Why a provision (or start) cannot be queued now, as a UserError: read-only, so /provision runs it
 * before the member's launch limits too (see the command's `check`).
 */
export async function checkProvision(
  userId: string,
  mode: 'provision' | 'start',
  caller: Caller,
  deps: BotDeps,
): Promise<void> {
  const who = caller.platform === 'telegram' ? 'You' : `Telegram user ${userId}`;
  if (await deps.queues.provisionInProgress(userId))
    throw new UserError(`Setting up ${who === 'You' ? 'your' : `the`} server is already in progress.`);
  if (mode === 'provision') {
    const existing = await deps.fleet.findForUser(userId);
    if (existing)
      throw new UserError(
        `${who} already ${who === 'You' ? 'have' : 'has'} a server.\n${await describeInstance(existing, deps)}`,
      );
    const stored = new Set((await deps.secrets.list(userId)).map((s) => s.kind));
    const missing = deps.settings.requiredSecrets.filter((k) => !stored.has(k));
    if (missing.length > 0)
      throw new UserError(
        `${who} must store these secrets first: ${missing.join(', ')}. Paste each one into this chat.`,
      );
  }
}
