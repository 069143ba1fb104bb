import { setTimeout as sleep } from 'node:timers/promises';
import type { Fleet, FleetInstance, InstanceState } from '../aws/fleet.js';
import { InstancesRejected, type InvocationStatus, type RunCommand } from '../aws/run-command.js';
import { isThrottlingAwsError, transientAwsError } from '../aws/transient.js';
import {
  AwsWaitExpired,
  createAwsWait,
  defaultRolloutAwsWaitSeconds,
  describeTrouble,
  waitingLine,
} from '../core/aws-wait.js';
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
import { type Budget, createProgress, stoppableEdit } from './progress.js';
import type { RolloutPayload } from './queues.js';

export interface RolloutSettings {
  pollMs: number;
  commandTimeoutSeconds: number;
  deployDocument: string;
  editIntervalMs: number;
  /**
   * How long one stretch of AWS throttling, 5xx or network errors may last before the rollout gives
   * up (ROLLOUT_AWS_WAIT_SECONDS); the configured default when left out.
   */
  awsWaitMs?: number;
  /**
   * How long a plan waits for approval (ROLLOUT_PLAN_TTL_MINUTES), the configured default when left
   * out: an instance that stopped running within that long before the approval may have been in
   * the plan the admin approved, so the summary names it as skipped.
   */
  planTtlMs?: number;
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
  /** Planned instances that were no longer running when their turn came, so never sent anything. */
  skipped?: string[];
  /** Set when the rollout stopped because AWS kept failing past its limit: what it failed with. */
  awsGaveUp?: string;
}

type Counts = Record<
  'pending' | 'inProgress' | 'succeeded' | 'failed' | 'timedOut' | 'cancelled' | 'skipped',
  number
>;

const terminal: InvocationStatus[] = ['success', 'failed', 'timed-out', 'cancelled', 'undeliverable'];
const failing: InvocationStatus[] = ['failed', 'timed-out', 'undeliverable'];
// Undeliverable is terminal but says nothing about why: worth one look at EC2.
const unexplained: (InvocationStatus | undefined)[] = [undefined, 'pending', 'running', 'undeliverable'];
const notRunning: InstanceState[] = ['stopping', 'stopped', 'shutting-down', 'terminated'];
const terminatedReason = 'terminated during the deploy';

/**
 * Runs one rollout across the fleet: batches of at most 50 ids, one SendCommand each, started in
 * waves so no more than the requested concurrency is in flight fleet-wide; results are read with
 * one ListCommandInvocations per running command per tick. Every batch's phase lives in the job,
 * so a restarted job resumes polling what was sent and never sends a batch twice.
 *
 * AWS throttling, 5xx and network errors never fail it: each call is retried with backoff (every
 * attempt waiting its turn at the SSM budget) while the message says it is waiting on AWS, for up
 * to `awsWaitMs` of unbroken trouble. Past that it gives up and its last edit says why.
 *
 * The fleet changes under a rollout. Before each wave is sent, one DescribeInstances over its ids
 * (the job's own fleet listing, for its first wave) finds planned instances that are no longer
 * running: they are skipped, since SSM would reject the whole batch over one of them. While
 * commands run, one DescribeInstances over the ids still open (at most every 15 s, and at once
 * when SSM calls one Undeliverable) finds instances terminated under them: they count as failed
 * then, whether or not SSM has noticed yet.
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
  // A thrown error ends this attempt's edits, so the worker's word on the failure stays the last.
  const edits = stoppableEdit((text) => editMessage(deps.outboxes, record.message, { text }));
  const progress = createProgress(edits.edit, {
    minIntervalMs: settings.editIntervalMs,
    log,
    budget: deps.editBudget,
  });
  const title = rolloutTitle(request);
  const awsWaitMs = settings.awsWaitMs ?? defaultRolloutAwsWaitSeconds * 1000;
  // The progress text without the AWS line: trouble adds the line, the next answered call removes it.
  let current = `${title} (job ${job.id}): starting`;
  const aws = createAwsWait({
    classify: transientAwsError,
    maxWaitMs: awsWaitMs,
    onChange(trouble, waitedMs) {
      if (trouble) log.warn({ aws: trouble.code, kind: trouble.kind, waitedMs }, 'waiting on AWS');
      else log.info({ waitedMs }, 'AWS answers again');
      show();
    },
  });
  const show = () => {
    const trouble = aws.trouble();
    progress.update(trouble ? `${current}\n${waitingLine(trouble)}` : current);
  };
  // Retries are SSM calls too: each attempt waits its turn, so a storm never spends more than the budget.
  const budgeted = <T>(call: () => Promise<T>): Promise<T> =>
    aws.run(async () => {
      await deps.ssmBudget.wait();
      return call();
    });
  log.info({ resumed: Boolean(record.batches) }, 'rollout started');

  if (request.operation === 'deploy' && !(request.version && isVersion(request.version)))
    throw new RolloutRejected('the version does not match the allowed pattern');
  const targets = parseTargets(request.targets);
  if (!targets) throw new RolloutRejected('the targets are not valid');

  let batches: NonNullable<RolloutPayload['batches']> = record.batches ?? [];
  let total = 0;
  const statuses = new Map<string, InvocationStatus>();
  const skipped = new Set<string>();
  try {
    // One listing serves the plan (on a first run) and the owners named in the summary: on a large
    // fleet DescribeInstances is the slowest call a rollout makes.
    const fleet = await aws.run(() => deps.fleet.list());
    const owners = new Map(fleet.map((i) => [i.id, i.userId]));
    if (!record.batches) {
      // The plan the admin approved counted instances that were running then. One stopped or
      // terminated since is planned and skipped at once, so the summary says what became of it.
      const approvedPlan = !record.requestedBy.startsWith('schedule:');
      const planPosted = record.startedAt - (settings.planTtlMs ?? defaultPlanTtlMs) - planClockMarginMs;
      const goneSincePlan = (i: FleetInstance) =>
        approvedPlan &&
        notRunning.includes(i.state) &&
        (i.stateChangedAt?.getTime() ?? 0) >= planPosted &&
        matchesTargets({ ...i, state: 'running' }, targets);
      const inPlan = fleet.filter((i) => matchesTargets(i, targets) || goneSincePlan(i));
      const matched = inPlan.map((i) => i.id).sort();
      const gone = inPlan.filter((i) => i.state !== 'running').map((i) => i.id);
      const concurrency = Math.max(
        1,
        resolveAmount(parseAmount(request.concurrency) ?? oneInstance, matched.length),
      );
      const planned = planBatches(matched, concurrency, request.canary).map((instanceIds) => ({
        instanceIds,
        state: 'planned' as const,
      }));
      await persist({ ...record, batches: planned, ...(gone.length > 0 ? { skipped: gone.sort() } : {}) });
    }
    batches = record.batches ?? [];
    total = batches.reduce((n, b) => n + b.instanceIds.length, 0);
    if (total === 0) {
      await progress.finish(`${title}: no running fleet instance matched, so nothing was sent.`);
      return { outcome: 'nothing-to-do', total, counts: countsOf(new Map(), 0, 0), failed: [] };
    }
    const concurrency = Math.max(1, resolveAmount(parseAmount(request.concurrency) ?? oneInstance, total));
    const maxErrors = resolveAmount(parseAmount(request.maxErrors) ?? noErrors, total);
    const canaryBatches =
      request.canary > 0 ? planBatches(Array(request.canary).fill(''), concurrency).length : 0;
    for (const id of record.skipped ?? []) skipped.add(id);
    // The comment is unique to this job; the margin covers a bot clock ahead of AWS's.
    const sentAfter = new Date(record.startedAt - clockSkewMarginMs);
    const sendable = (batch: { instanceIds: string[] }) => batch.instanceIds.filter((id) => !skipped.has(id));
    const save = () =>
      persist({ ...record, batches, ...(skipped.size > 0 ? { skipped: [...skipped].sort() } : {}) });
    // The listing this attempt started with is as fresh as a check for a wave sent on its first tick.
    let listed: Map<string, InstanceState> | undefined = new Map(fleet.map((i) => [i.id, i.state]));
    /** One DescribeInstances (per 200 ids) for the lot; returns how many it skipped. */
    const skipNotRunning = async (ids: string[]) => {
      const states = listed ?? (await aws.run(() => deps.fleet.states(ids)));
      listed = undefined;
      const gone = ids.filter((id) => states.get(id) !== 'running');
      for (const id of gone) skipped.add(id);
      if (gone.length > 0)
        log.info({ instanceIds: gone }, 'skipped planned instances that are no longer running');
      return gone.length;
    };
    // SendCommand takes no idempotency token. A throttled send never ran and is simply sent again;
    // after a 5xx or a network error it may have run, so its Comment is looked up first.
    const sendOnce = (instanceIds: string[], comment: string) => {
      let maybeSent = false;
      return aws.run(async () => {
        if (maybeSent) {
          await deps.ssmBudget.wait();
          const found = await runCommand.findByComment(comment, sentAfter);
          if (found) return found;
          maybeSent = false;
        }
        await deps.ssmBudget.wait();
        // Checked after the budget's wait, right before sending: a worker that lost the job
        // must not send a batch its successor may be sending too.
        if (job.holdsLock && !(await job.holdsLock())) throw new LockLost(job.id);
        try {
          return await runCommand.sendBatch({
            instanceIds,
            ...documentFor(request, settings),
            comment,
            timeoutSeconds: settings.commandTimeoutSeconds,
          });
        } catch (error) {
          maybeSent = !isThrottlingAwsError(error);
          throw error;
        }
      });
    };

    // Resume: a batch marked `sending` may or may not have reached SSM before the crash.
    for (const [index, batch] of batches.entries()) {
      if (batch.state !== 'sending') continue;
      const found = await budgeted(() => runCommand.findByComment(`${job.id}:${index}`, sentAfter));
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
    // Instances terminated under their command: failed, whatever SSM still says. Not stored: a
    // restarted job finds them again with its first look at EC2.
    const terminated = new Set<string>();
    const details = new Map<string, string>();
    // Undeliverable ids that EC2 still lists as running: looked up once, not on every tick.
    const undeliverableRunning = new Set<string>();
    const goneCheckMs = Math.max(settings.pollMs, minGoneCheckMs);
    // The listing has just seen them all: the first look is due one interval from now.
    let lastGoneCheck = Date.now();

    for (;;) {
      if (!halted && (await deps.isCancelled(job.id))) halted = 'cancelled';

      // One ListCommandInvocations per command that still has work (and once per finished one after a restart).
      for (const batch of batches) {
        if (batch.state === 'done' && sendable(batch).every((id) => statuses.has(id))) continue;
        const commandId = batch.commandId;
        if (!commandId) continue;
        const invocations = await budgeted(() => runCommand.listInvocations(commandId));
        for (const inv of invocations) {
          const gone = terminated.has(inv.instanceId) && inv.status !== 'success';
          statuses.set(inv.instanceId, gone ? 'failed' : inv.status);
          if (inv.details) details.set(inv.instanceId, inv.details);
        }
      }

      // SSM may take a while to notice an instance terminated under its command (and a restarted
      // job may find it InProgress still): EC2 knows at once.
      const open = batches
        .filter((b) => b.commandId)
        .flatMap(sendable)
        .filter(
          (id) =>
            !terminated.has(id) && !undeliverableRunning.has(id) && unexplained.includes(statuses.get(id)),
        );
      const newlyUndeliverable = open.some((id) => statuses.get(id) === 'undeliverable');
      if (open.length > 0 && (newlyUndeliverable || Date.now() - lastGoneCheck >= goneCheckMs)) {
        lastGoneCheck = Date.now();
        const states = await aws.run(() => deps.fleet.states(open));
        const gone = open.filter((id) => {
          const state = states.get(id);
          return state === undefined || state === 'shutting-down' || state === 'terminated';
        });
        for (const id of gone) {
          terminated.add(id);
          statuses.set(id, 'failed');
        }
        for (const id of open)
          if (!terminated.has(id) && statuses.get(id) === 'undeliverable') undeliverableRunning.add(id);
        if (gone.length > 0) log.info({ instanceIds: gone }, 'instances terminated under their command');
      }

      for (const batch of batches)
        if (
          batch.state === 'sent' &&
          sendable(batch).every((id) => terminal.includes(statuses.get(id) ?? 'pending'))
        ) {
          batch.state = 'done';
          await save();
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
        let inFlight = batches.filter((b) => b.state === 'sent').reduce((n, b) => n + sendable(b).length, 0);
        const canaryOpen = batches.slice(0, canaryBatches).some((b) => b.state !== 'done');
        const wave: { index: number; batch: (typeof batches)[number] }[] = [];
        for (const [index, batch] of batches.entries()) {
          if (batch.state !== 'planned') continue;
          // The canary wave runs alone; the rest waits until it is done and healthy.
          if (index >= canaryBatches && canaryOpen) break;
          const size = sendable(batch).length;
          if (inFlight > 0 && inFlight + size > concurrency) break;
          wave.push({ index, batch });
          inFlight += size;
        }
        // Stored with the next batch's `sending` mark, so a resumed job sends the same ids.
        const waveIds = wave.flatMap(({ batch }) => sendable(batch));
        if (waveIds.length > 0) await skipNotRunning(waveIds);
        for (const { index, batch } of wave) {
          if (sendable(batch).length === 0) {
            batch.state = 'done';
            await save();
            continue;
          }
          batch.state = 'sending';
          await save();
          const comment = `${job.id}:${index}`;
          for (;;) {
            try {
              batch.commandId = await sendOnce(sendable(batch), comment);
              break;
            } catch (error) {
              if (!(error instanceof InstancesRejected)) throw error;
              // One id gone between the wave's check and this send fails the whole batch in SSM:
              // the rest goes without it. An id SSM rejects while it runs is not ours to drop.
              listed = undefined;
              if ((await skipNotRunning(sendable(batch))) === 0) throw error;
              await save();
              if (sendable(batch).length === 0) break;
            }
          }
          batch.state = batch.commandId ? 'sent' : 'done';
          await save();
        }
      }

      current = render(title, job.id, batches, statuses, total, skipped.size, record.startedAt, halted);
      show();
      // From the next tick on, the listing is too old to stand for a check.
      listed = undefined;
      const running = batches.some((b) => b.state === 'sent');
      const waiting = batches.some((b) => b.state === 'planned');
      if (!running && (!waiting || halted)) break;
      await sleep(settings.pollMs);
    }

    const counts = countsOf(statuses, total, skipped.size);
    const failedIds = [...statuses].filter(([, s]) => failing.includes(s));
    // What a person needs to hear where SSM has no output to show: such instances never reported.
    const reasonOf = (instanceId: string, status: InvocationStatus): string | undefined =>
      terminated.has(instanceId)
        ? terminatedReason
        : details.get(instanceId) === 'DeliveryTimedOut'
          ? `no answer from its SSM agent within the command timeout (${formatElapsed(settings.commandTimeoutSeconds * 1000)})`
          : status === 'undeliverable'
            ? 'SSM could not reach its agent'
            : undefined;
    const failed = [];
    // Full error output only for failed instances, and only as many as the summary shows.
    for (const [instanceId, status] of failedIds.slice(0, 20)) {
      const reason = reasonOf(instanceId, status);
      const batch = batches.find((b) => b.instanceIds.includes(instanceId));
      const inv =
        reason === undefined && batch?.commandId
          ? await budgeted(() => runCommand.invocation(batch.commandId ?? '', instanceId)).catch(
              () => undefined,
            )
          : undefined;
      failed.push({
        instanceId,
        userId: owners.get(instanceId) ?? '?',
        status,
        output: reason ?? firstLines(inv?.output ?? ''),
      });
    }
    // Reasons cost no call, so the thread gives them for every failed instance.
    const explained = failedIds.slice(20).flatMap(([instanceId, status]) => {
      const output = reasonOf(instanceId, status);
      return output ? [{ instanceId, userId: owners.get(instanceId) ?? '?', status, output }] : [];
    });
    const compliance =
      request.operation === 'deploy' ? undefined : await patchCompliance(batches, budgeted, runCommand);
    const outcome =
      halted === 'cancelled'
        ? 'cancelled'
        : failedIds.length > 0
          ? 'failed'
          : skipped.size === total
            ? 'nothing-to-do'
            : 'succeeded';
    const summary: RolloutSummary = {
      outcome,
      total,
      counts,
      failed,
      compliance,
      skipped: [...skipped].sort(),
    };
    await progress.finish(
      renderSummary(title, job.id, summary, failedIds.length, record.startedAt, halted, maxErrors),
    );
    if (failedIds.length > failuresInSummary)
      for (const text of failureThread(job.id, failedIds, [...failed, ...explained], owners))
        await replyInThread(deps.outboxes, record.message, { text }).catch((err: unknown) =>
          log.warn({ err: String(err) }, 'could not post the failure list'),
        );
    log.info({ outcome, total, ...counts }, 'rollout finished');
    return summary;
  } catch (error) {
    if (!(error instanceof AwsWaitExpired)) {
      await edits.stop();
      throw error;
    }
    // Retrying the job would only wait again: it ends here, and says so where it was asked for.
    const counts = countsOf(statuses, total, skipped.size);
    const notSent = batches
      .filter((b) => b.state === 'planned' || b.state === 'sending')
      .reduce((n, b) => n + b.instanceIds.filter((id) => !skipped.has(id)).length, 0);
    log.warn({ aws: error.trouble.code, waitedMs: error.waitedMs, total, notSent }, 'rollout gave up on AWS');
    await progress.finish(
      renderGaveUp(title, job.id, error, { total, notSent, counts, awsWaitMs, startedAt: record.startedAt }),
    );
    return { outcome: 'failed', total, counts, failed: [], awsGaveUp: error.message };
  }
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
// ROLLOUT_PLAN_TTL_MINUTES' default, for callers that leave planTtlMs out; the margin covers EC2's
// clock (its transition times are whole seconds) against ours.
const defaultPlanTtlMs = 15 * 60_000;
const planClockMarginMs = 60_000;
// EC2 is asked about instances under running commands at most this often (every poll when that is
// slower): a terminated one is noticed within seconds of it, against a command timeout of minutes.
const minGoneCheckMs = 15_000;
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

/** Skipped instances are never sent anything, so none has a status: the rest of the total is pending. */
function countsOf(statuses: Map<string, InvocationStatus>, total: number, skipped: number): Counts {
  const c: Counts = {
    pending: 0,
    inProgress: 0,
    succeeded: 0,
    failed: 0,
    timedOut: 0,
    cancelled: 0,
    skipped,
  };
  for (const s of statuses.values()) {
    if (s === 'success') c.succeeded++;
    else if (s === 'failed' || s === 'undeliverable') c.failed++;
    else if (s === 'timed-out') c.timedOut++;
    else if (s === 'cancelled') c.cancelled++;
    else if (s === 'running') c.inProgress++;
    else c.pending++;
  }
  c.pending += total - statuses.size - skipped;
  return c;
}

function render(
  title: string,
  jobId: string,
  batches: NonNullable<RolloutPayload['batches']>,
  statuses: Map<string, InvocationStatus>,
  total: number,
  skipped: number,
  startedAt: number,
  halted: RolloutPayload['halted'],
): string {
  const c = countsOf(statuses, total, skipped);
  const finished = c.succeeded + c.failed + c.timedOut + c.cancelled + c.skipped;
  const width = 20;
  const filled = Math.round((finished / total) * width);
  const elapsed = Date.now() - startedAt;
  const eta =
    finished > 0 && finished < total ? formatElapsed((elapsed / finished) * (total - finished)) : '…';
  const done = batches.filter((b) => b.state === 'done').length;
  return [
    `${title} (job ${jobId}): ${halted === 'errors' ? 'stopping, too many failures' : halted === 'cancelled' ? 'cancelling' : 'running'}`,
    `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${Math.floor((finished / total) * 100)}% of ${total}`,
    `succeeded ${c.succeeded} · failed ${c.failed} · timed out ${c.timedOut} · cancelled ${c.cancelled} · skipped ${c.skipped} · in progress ${c.inProgress} · pending ${c.pending}`,
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
      ? c.skipped > 0
        ? `${title}: succeeded on all ${s.total - c.skipped} instances still running`
        : `${title}: succeeded on all ${s.total} instances`
      : s.outcome === 'nothing-to-do'
        ? `${title}: nothing was sent, as no planned instance is running any more`
        : s.outcome === 'cancelled'
          ? `${title}: cancelled`
          : `${title}: failed${halted === 'errors' ? ` (stopped after ${failedCount} failures; the limit was ${maxErrors})` : ''}`;
  const lines = [
    `${head} (job ${jobId}, took ${formatElapsed(Date.now() - startedAt)}).`,
    `succeeded ${c.succeeded} · failed ${c.failed} · timed out ${c.timedOut} · cancelled ${c.cancelled} · skipped ${c.skipped} · not started ${c.pending}`,
  ];
  const skipped = s.skipped ?? [];
  if (skipped.length > 0)
    lines.push(
      `skipped: ${skipped.length} instance${skipped.length > 1 ? 's' : ''} no longer running (${skipped.slice(0, 10).join(', ')}${skipped.length > 10 ? ', …' : ''})`,
    );
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

function renderGaveUp(
  title: string,
  jobId: string,
  error: AwsWaitExpired,
  s: { total: number; notSent: number; counts: Counts; awsWaitMs: number; startedAt: number },
): string {
  const c = s.counts;
  const lines = [
    `${title}: gave up waiting on AWS (job ${jobId}, took ${formatElapsed(Date.now() - s.startedAt)}).`,
    `${describeTrouble(error.trouble, error.waitedMs)}; a rollout waits at most ${formatElapsed(s.awsWaitMs)} (ROLLOUT_AWS_WAIT_SECONDS).`,
  ];
  if (s.total > 0)
    lines.push(
      `succeeded ${c.succeeded} · failed ${c.failed} · timed out ${c.timedOut} · cancelled ${c.cancelled} · skipped ${c.skipped} · in progress or unknown ${c.inProgress + c.pending - s.notSent} · never sent ${s.notSent}`,
    );
  if (s.notSent < s.total)
    lines.push('Commands already sent keep running on their instances; run it again for the rest.');
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
