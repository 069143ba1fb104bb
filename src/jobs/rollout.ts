import { setTimeout as sleep } from 'node:timers/promises';
import type { Fleet } from '../aws/fleet.js';
import type { InvocationStatus, RunCommand } from '../aws/run-command.js';
import { formatElapsed } from '../core/durations.js';
import { parseAmount, planBatches, resolveAmount } from '../core/rollout.js';
import { type RolloutRequest, rolloutTitle } from '../core/rollout-request.js';
import { looksSecret } from '../core/secret-kinds.js';
import { matchesTargets, parseTargets } from '../core/targets.js';
import { isVersion } from '../core/version.js';
import type { Logger } from '../log.js';
import type { Pacer } from '../store/rate-limits.js';
import { failureLine, failuresInSummary, failureThread } from './failure-list.js';
import { editMessage, type Outboxes, replyInThread } from './outboxes.js';
import { type Budget, createProgress } from './progress.js';
import type { RolloutPayload } from './queues.js';

export interface RolloutSettings {
  pollMs: number;
  commandTimeoutSeconds: number;
  deployDocument: string;
  editIntervalMs: number;
}

export interface RolloutDeps {
  fleet: Fleet;
  runCommand: RunCommand;
  /** Every SSM call of every rollout, in every worker, waits its turn here. */
  ssmBudget: Pacer;
  /** Workspace-wide chat.update budget; intermediate edits skip when it is spent. */
  editBudget: Budget;
  isCancelled(jobId: string): Promise<boolean>;
  outboxes: Outboxes;
  settings: RolloutSettings;
  log: Logger;
}

/** The job's data is the crash-safe record: updateData must persist it before returning. */
export interface RolloutJob {
  id: string;
  data: RolloutPayload;
  updateData(data: RolloutPayload): Promise<void>;
  /** False once another worker has taken the job over (this one stalled past its lock). */
  holdsLock?(): Promise<boolean>;
}

/** A rollout that must not run at all (bad version or targets reaching the worker). */
export class RolloutRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutRejected';
  }
}

export interface RolloutSummary {
  outcome: 'succeeded' | 'failed' | 'cancelled' | 'nothing-to-do';
  total: number;
  counts: Counts;
  failed: { instanceId: string; userId: string; status: InvocationStatus; output: string }[];
  compliance?: { missing: { instanceId: string; count: number }[]; pendingReboot: string[] };
}

type Counts = Record<'pending' | 'inProgress' | 'succeeded' | 'failed' | 'timedOut' | 'cancelled', number>;

const terminal: InvocationStatus[] = ['success', 'failed', 'timed-out', 'cancelled', 'undeliverable'];
const failing: InvocationStatus[] = ['failed', 'timed-out', 'undeliverable'];

/**
 * Runs one rollout across the fleet: batches of at most 50 ids, one SendCommand each, started in
 * waves so no more than the requested concurrency is in flight fleet-wide; results are read with
 * one ListCommandInvocations per running command per tick. Every batch's phase lives in the job,
 * so a restarted job resumes polling what was sent and never sends a batch twice.
 */
export async function processRollout(job: RolloutJob, deps: RolloutDeps): Promise<RolloutSummary> {
  const { runCommand, settings } = deps;
  let record: RolloutPayload = job.data;
  const persist = async (next: RolloutPayload) => {
    record = next;
    await job.updateData(next);
  };
  const request = record.request;
  const log = deps.log.child({ jobId: job.id, operation: request.operation });
  const budgeted = async <T>(call: () => Promise<T>): Promise<T> => {
    await deps.ssmBudget.wait();
    return call();
  };
  const progress = createProgress((text) => editMessage(deps.outboxes, record.message, { text }), {
    minIntervalMs: settings.editIntervalMs,
    log,
    budget: deps.editBudget,
  });
  const title = rolloutTitle(request);
  log.info({ resumed: Boolean(record.batches) }, 'rollout started');

  if (request.operation === 'deploy' && !(request.version && isVersion(request.version)))
    throw new RolloutRejected('the version does not match the allowed pattern');
  const targets = parseTargets(request.targets);
  if (!targets) throw new RolloutRejected('the targets are not valid');

  // One listing serves the plan (on a first run) and the owners named in the summary: on a large
  // fleet DescribeInstances is the slowest call a rollout makes.
  const fleet = await deps.fleet.list();
  const owners = new Map(fleet.map((i) => [i.id, i.userId]));
  if (!record.batches) {
    const matched = fleet
      .filter((i) => matchesTargets(i, targets))
      .map((i) => i.id)
      .sort();
    const concurrency = Math.max(
      1,
      resolveAmount(parseAmount(request.concurrency) ?? oneInstance, matched.length),
    );
    const batches = planBatches(matched, concurrency, request.canary).map((instanceIds) => ({
      instanceIds,
      state: 'planned' as const,
    }));
    await persist({ ...record, batches });
  }
  const batches = record.batches ?? [];
  const total = batches.reduce((n, b) => n + b.instanceIds.length, 0);
  if (total === 0) {
    await progress.finish(`${title}: no running fleet instance matched, so nothing was sent.`);
    return { outcome: 'nothing-to-do', total, counts: countsOf(new Map(), 0), failed: [] };
  }
  const concurrency = Math.max(1, resolveAmount(parseAmount(request.concurrency) ?? oneInstance, total));
  const maxErrors = resolveAmount(parseAmount(request.maxErrors) ?? noErrors, total);
  const canaryBatches =
    request.canary > 0 ? planBatches(Array(request.canary).fill(''), concurrency).length : 0;
  const statuses = new Map<string, InvocationStatus>();
  const save = () => persist({ ...record, batches });

  // Resume: a batch marked `sending` may or may not have reached SSM before the crash.
  for (const [index, batch] of batches.entries()) {
    if (batch.state !== 'sending') continue;
    const found = await budgeted(() =>
      // The comment is unique to this job; the margin covers a bot clock ahead of AWS's.
      runCommand.findByComment(`${job.id}:${index}`, new Date(record.startedAt - clockSkewMarginMs)),
    );
    batch.state = found ? 'sent' : 'planned';
    batch.commandId = found;
    log.info(
      { batch: index, commandId: found ?? null },
      found ? 'recovered an unrecorded send' : 'resending a batch that never left',
    );
    await save();
  }
  const cancelled = new Set<string>();
  let halted = record.halted;

  for (;;) {
    if (!halted && (await deps.isCancelled(job.id))) halted = 'cancelled';

    // One ListCommandInvocations per command that still has work (and once per finished one after a restart).
    for (const batch of batches) {
      if (!batch.commandId || (batch.state === 'done' && batch.instanceIds.every((id) => statuses.has(id))))
        continue;
      const commandId = batch.commandId;
      const invocations = await budgeted(() => runCommand.listInvocations(commandId));
      for (const inv of invocations) statuses.set(inv.instanceId, inv.status);
      if (
        batch.state === 'sent' &&
        batch.instanceIds.every((id) => terminal.includes(statuses.get(id) ?? 'pending'))
      ) {
        batch.state = 'done';
        await save();
      }
    }

    const failures = [...statuses.values()].filter((s) => failing.includes(s)).length;
    if (!halted && failures > maxErrors) halted = 'errors';
    if (halted) {
      if (record.halted !== halted) await persist({ ...record, batches, halted });
      for (const batch of batches)
        if (batch.state === 'sent' && batch.commandId && !cancelled.has(batch.commandId)) {
          const commandId = batch.commandId;
          cancelled.add(commandId);
          await budgeted(() => runCommand.cancel(commandId)).catch((err: unknown) =>
            log.warn({ commandId, err: String(err) }, 'cancel failed'),
          );
        }
    } else {
      let inFlight = batches.filter((b) => b.state === 'sent').reduce((n, b) => n + b.instanceIds.length, 0);
      const canaryOpen = batches.slice(0, canaryBatches).some((b) => b.state !== 'done');
      for (const [index, batch] of batches.entries()) {
        if (batch.state !== 'planned') continue;
        // The canary wave runs alone; the rest waits until it is done and healthy.
        if (index >= canaryBatches && canaryOpen) break;
        if (inFlight > 0 && inFlight + batch.instanceIds.length > concurrency) break;
        batch.state = 'sending';
        await save();
        batch.commandId = await budgeted(async () => {
          // Checked after the budget's wait, right before sending: a worker that lost the job
          // must not send a batch its successor may be sending too.
          if (job.holdsLock && !(await job.holdsLock())) throw new LockLost(job.id);
          return runCommand.sendBatch({
            instanceIds: batch.instanceIds,
            ...documentFor(request, settings),
            comment: `${job.id}:${index}`,
            timeoutSeconds: settings.commandTimeoutSeconds,
          });
        });
        batch.state = 'sent';
        await save();
        inFlight += batch.instanceIds.length;
      }
    }

    progress.update(render(title, job.id, batches, statuses, total, record.startedAt, halted));
    const running = batches.some((b) => b.state === 'sent');
    const waiting = batches.some((b) => b.state === 'planned');
    if (!running && (!waiting || halted)) break;
    await sleep(settings.pollMs);
  }

  const counts = countsOf(statuses, total);
  const failedIds = [...statuses].filter(([, s]) => failing.includes(s));
  const failed = [];
  // Full error output only for failed instances, and only as many as the summary shows.
  for (const [instanceId, status] of failedIds.slice(0, 20)) {
    const batch = batches.find((b) => b.instanceIds.includes(instanceId));
    const inv = batch?.commandId
      ? await budgeted(() => runCommand.invocation(batch.commandId ?? '', instanceId)).catch(() => undefined)
      : undefined;
    failed.push({
      instanceId,
      userId: owners.get(instanceId) ?? '?',
      status,
      output: firstLines(inv?.output ?? ''),
    });
  }
  const compliance =
    request.operation === 'deploy' ? undefined : await patchCompliance(batches, budgeted, runCommand);
  const outcome = halted === 'cancelled' ? 'cancelled' : failedIds.length > 0 ? 'failed' : 'succeeded';
  const summary: RolloutSummary = { outcome, total, counts, failed, compliance };
  await progress.finish(
    renderSummary(title, job.id, summary, failedIds.length, record.startedAt, halted, maxErrors),
  );
  if (failedIds.length > failuresInSummary)
    for (const text of failureThread(job.id, failedIds, failed, owners))
      await replyInThread(deps.outboxes, record.message, { text }).catch((err: unknown) =>
        log.warn({ err: String(err) }, 'could not post the failure list'),
      );
  log.info({ outcome, total, ...counts }, 'rollout finished');
  return summary;
}

/** This worker no longer owns the job; whoever does carries on from the saved record. */
export class LockLost extends Error {
  constructor(jobId: string) {
    super(`job ${jobId} was taken over by another worker`);
    this.name = 'LockLost';
  }
}

const oneInstance = { kind: 'count', value: 1 } as const;
const clockSkewMarginMs = 15 * 60_000;
const noErrors = { kind: 'count', value: 0 } as const;

function documentFor(
  request: RolloutRequest,
  settings: RolloutSettings,
): { document: string; parameters: Record<string, string[]> } {
  if (request.operation === 'deploy')
    // The version reaches instances only as a document parameter (allowedPattern, ENV_VAR interpolation).
    return { document: settings.deployDocument, parameters: { version: [request.version ?? ''] } };
  return {
    document: 'AWS-RunPatchBaseline',
    parameters: {
      Operation: [request.operation === 'patch-scan' ? 'Scan' : 'Install'],
      RebootOption: [
        request.operation === 'patch-install' && request.reboot === 'if-needed'
          ? 'RebootIfNeeded'
          : 'NoReboot',
      ],
    },
  };
}

function countsOf(statuses: Map<string, InvocationStatus>, total: number): Counts {
  const c: Counts = { pending: 0, inProgress: 0, succeeded: 0, failed: 0, timedOut: 0, cancelled: 0 };
  for (const s of statuses.values()) {
    if (s === 'success') c.succeeded++;
    else if (s === 'failed' || s === 'undeliverable') c.failed++;
    else if (s === 'timed-out') c.timedOut++;
    else if (s === 'cancelled') c.cancelled++;
    else if (s === 'running') c.inProgress++;
    else c.pending++;
  }
  c.pending += total - statuses.size;
  return c;
}

function render(
  title: string,
  jobId: string,
  batches: NonNullable<RolloutPayload['batches']>,
  statuses: Map<string, InvocationStatus>,
  total: number,
  startedAt: number,
  halted: RolloutPayload['halted'],
): string {
  const c = countsOf(statuses, total);
  const finished = c.succeeded + c.failed + c.timedOut + c.cancelled;
  const width = 20;
  const filled = Math.round((finished / total) * width);
  const elapsed = Date.now() - startedAt;
  const eta =
    finished > 0 && finished < total ? formatElapsed((elapsed / finished) * (total - finished)) : '…';
  const done = batches.filter((b) => b.state === 'done').length;
  return [
    `${title} (job ${jobId}): ${halted === 'errors' ? 'stopping, too many failures' : halted === 'cancelled' ? 'cancelling' : 'running'}`,
    `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${Math.floor((finished / total) * 100)}% of ${total}`,
    `succeeded ${c.succeeded} · failed ${c.failed} · timed out ${c.timedOut} · cancelled ${c.cancelled} · in progress ${c.inProgress} · pending ${c.pending}`,
    `batches ${done}/${batches.length} · elapsed ${formatElapsed(elapsed)} · ETA ${eta}`,
  ].join('\n');
}

function renderSummary(
  title: string,
  jobId: string,
  s: RolloutSummary,
  failedCount: number,
  startedAt: number,
  halted: RolloutPayload['halted'],
  maxErrors: number,
): string {
  const c = s.counts;
  const head =
    s.outcome === 'succeeded'
      ? `${title}: succeeded on all ${s.total} instances`
      : s.outcome === 'cancelled'
        ? `${title}: cancelled`
        : `${title}: failed${halted === 'errors' ? ` (stopped after ${failedCount} failures; the limit was ${maxErrors})` : ''}`;
  const lines = [
    `${head} (job ${jobId}, took ${formatElapsed(Date.now() - startedAt)}).`,
    `succeeded ${c.succeeded} · failed ${c.failed} · timed out ${c.timedOut} · cancelled ${c.cancelled} · not started ${c.pending}`,
  ];
  if (s.failed.length > 0) {
    lines.push('Failed instances:');
    for (const f of s.failed.slice(0, failuresInSummary)) lines.push(failureLine(f));
    if (failedCount > failuresInSummary)
      lines.push(
        `… and ${failedCount - failuresInSummary} more: all ${failedCount} are listed in the thread.`,
      );
  }
  if (s.compliance) {
    const missing = s.compliance.missing;
    lines.push(
      missing.length === 0
        ? 'Compliance: no instance reports missing patches.'
        : `Compliance: ${missing.length} instance${missing.length > 1 ? 's' : ''} missing patches (${missing
            .slice(0, 10)
            .map((m) => `${m.instanceId}: ${m.count}`)
            .join(', ')}${missing.length > 10 ? ', …' : ''}).`,
    );
    if (s.compliance.pendingReboot.length > 0)
      lines.push(
        `Pending a reboot: ${s.compliance.pendingReboot.slice(0, 10).join(', ')}${s.compliance.pendingReboot.length > 10 ? ', …' : ''}.`,
      );
  }
  return lines.join('\n');
}

/** The first lines of an error, with anything secret-shaped masked: outputs are not ours to trust. */
function firstLines(output: string): string {
  return output
    .trim()
    .split('\n')
    .slice(0, 3)
    .map((line) => (looksSecret(line) ? '[redacted]' : line))
    .join(' / ')
    .slice(0, 300);
}

/** From RunPatchBaseline's patch summary in each invocation's output: one call per command. */
async function patchCompliance(
  batches: NonNullable<RolloutPayload['batches']>,
  budgeted: <T>(call: () => Promise<T>) => Promise<T>,
  runCommand: RunCommand,
): Promise<NonNullable<RolloutSummary['compliance']>> {
  const missing: { instanceId: string; count: number }[] = [];
  const pendingReboot: string[] = [];
  for (const batch of batches) {
    if (!batch.commandId) continue;
    const commandId = batch.commandId;
    for (const inv of await budgeted(() => runCommand.listInvocations(commandId, true))) {
      const count = Number(/MissingCount\s*:\s*(\d+)/.exec(inv.output ?? '')?.[1] ?? 0);
      if (count > 0) missing.push({ instanceId: inv.instanceId, count });
      if (Number(/InstalledPendingRebootCount\s*:\s*(\d+)/.exec(inv.output ?? '')?.[1] ?? 0) > 0)
        pendingReboot.push(inv.instanceId);
    }
  }
  return { missing, pendingReboot };
}
