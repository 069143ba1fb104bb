import { setTimeout as sleep } from 'node:timers/promises';
import type { Fleet, FleetInstance, InstanceState } from '../aws/fleet.js';
import {
  type AgentPing,
  InstancesRejected,
  type InvocationStatus,
  type RunCommand,
} from '../aws/run-command.js';
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
import { describeUnreachable, type Unreachable, unreachableAmong, unreachableIn } from './reachability.js';

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
   * the plan the admin approved, so the summary names it as not reachable.
   */
  planTtlMs?: number;
  /**
   * How long an invocation may stay Delayed (SSM cannot deliver it; ROLLOUT_DELIVERY_WAIT_SECONDS)
   * before its instance counts as not reachable and its invocation is cancelled.
   */
  deliveryWaitMs?: number;
  /** How long ListCommands may lag behind SendCommand (SSM_LISTING_LAG_SECONDS). */
  listingLagMs?: number;
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
  compliance?: {
    missing: { instanceId: string; count: number }[];
    failed: { instanceId: string; count: number }[];
    pendingReboot: string[];
    /** Sent the patch command, yet no patch state from this run: their compliance is unknown. */
    unreported: string[];
  };
  /** Planned instances a command could not reach (see reachability.ts), so never run anything, and why. */
  unreachable?: Record<string, Unreachable>;
  /** Set when the rollout stopped because AWS kept failing past its limit: what it failed with. */
  awsGaveUp?: string;
}

type Counts = Record<
  'pending' | 'inProgress' | 'succeeded' | 'failed' | 'timedOut' | 'cancelled' | 'unreachable',
  number
>;

const terminal: InvocationStatus[] = ['success', 'failed', 'timed-out', 'cancelled', 'undeliverable'];
const failing: InvocationStatus[] = ['failed', 'timed-out', 'undeliverable'];
// Undeliverable is terminal but says nothing about why: worth one look at EC2.
const unexplained: (InvocationStatus | undefined)[] = [
  undefined,
  'pending',
  'delayed',
  'running',
  'undeliverable',
];
const notRunning: InstanceState[] = ['stopping', 'stopped', 'shutting-down', 'terminated'];
const lostReasons = {
  terminated: 'terminated during the deploy',
  stopped: 'stopped while its command ran',
} as const;

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
 * (the job's own fleet listing, for its first wave) and one DescribeInstanceInformation per 50 find
 * planned instances that are no longer running or whose SSM agent is not online: they are left out
 * and reported not reachable, since SSM would reject the whole batch over one of them. While
 * commands run, one DescribeInstances over the ids still open (at most every 15 s, and at once
 * when SSM calls one Undeliverable or Delayed) finds instances terminated or stopped under them:
 * they count as failed then (not reachable, if their command never started), whether or not SSM
 * has noticed yet.
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
  // Planned instances never sent anything (or whose command never reached them), and why.
  const unreachable = new Map<string, Unreachable>();
  try {
    // One listing serves the plan (on a first run) and the owners named in the summary: on a large
    // fleet DescribeInstances is the slowest call a rollout makes.
    const fleet = await aws.run(() => deps.fleet.list());
    const owners = new Map(fleet.map((i) => [i.id, i.userId]));
    if (!record.batches) {
      // The plan the admin approved counted instances that were running then. One stopped or
      // terminated since is planned and left out at once, so the summary says what became of it.
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
      await persist({
        ...record,
        batches: planned,
        ...unreachableRecord(new Map(gone.map((id) => [id, 'not running']))),
      });
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
    for (const [id, reason] of unreachableIn(record)) unreachable.set(id, reason);
    // The comment is unique to this job; the margin covers a bot clock ahead of AWS's.
    const sentAfter = new Date(record.startedAt - clockSkewMarginMs);
    const sendable = (batch: { instanceIds: string[] }) =>
      batch.instanceIds.filter((id) => !unreachable.has(id));
    const save = () => persist({ ...record, batches, ...unreachableRecord(unreachable) });
    const markUnreachable = (found: ReadonlyMap<string, Unreachable>) => {
      for (const [id, reason] of found) {
        unreachable.set(id, reason);
        statuses.delete(id);
      }
      if (found.size > 0)
        log.info({ instances: Object.fromEntries(found) }, 'planned instances a command cannot reach');
    };
    // The listing this attempt started with is as fresh as a check for a wave sent on its first tick.
    let listed: Map<string, InstanceState> | undefined = new Map(fleet.map((i) => [i.id, i.state]));
    /**
     * Right before a wave goes out: one DescribeInstances (per 200 ids) and one
     * DescribeInstanceInformation per 50 running ids. Returns how many it found unreachable.
     */
    const skipUnreachable = async (ids: string[]) => {
      const states = listed ?? (await aws.run(() => deps.fleet.states(ids)));
      listed = undefined;
      const running = ids.filter((id) => states.get(id) === 'running');
      const agents = new Map<string, AgentPing>();
      for (let i = 0; i < running.length; i += 50) {
        const chunk = running.slice(i, i + 50);
        for (const [id, ping] of await budgeted(() => runCommand.agents(chunk))) agents.set(id, ping);
      }
      const found = unreachableAmong(ids, states, agents);
      markUnreachable(found);
      return found.size;
    };
    const listingLagMs = settings.listingLagMs ?? defaultListingLagMs;
    const paced = async <T>(call: () => Promise<T>): Promise<T> => {
      await deps.ssmBudget.wait();
      return call();
    };
    /**
     * The command sent with this comment, if any. Right after SendCommand, ListCommands may not show
     * it yet (SSM is eventually consistent), so "not found" counts only once the listing lag has
     * passed since the send was tried: a batch is never resent just because the listing lagged.
     */
    const findSent = async (comment: string, triedAt: number, via: typeof paced) => {
      const found = await via(() => runCommand.findByComment(comment, sentAfter));
      const lagLeft = triedAt + listingLagMs - Date.now();
      if (found || lagLeft <= 0) return found;
      log.info(
        { comment, waitMs: lagLeft },
        'send not listed yet; looking again once the listing lag has passed',
      );
      await sleep(lagLeft);
      return via(() => runCommand.findByComment(comment, sentAfter));
    };
    // SendCommand takes no idempotency token. A throttled send never ran and is simply sent again;
    // after a 5xx or a network error it may have run, so its Comment is looked up first.
    const sendOnce = (batch: (typeof batches)[number], comment: string) => {
      let maybeSentAt: number | undefined;
      return aws.run(async () => {
        if (maybeSentAt !== undefined) {
          const found = await findSent(comment, maybeSentAt, paced);
          if (found) return found;
          maybeSentAt = undefined;
        }
        await deps.ssmBudget.wait();
        // Checked after the budget's wait, right before sending: a worker that lost the job
        // must not send a batch its successor may be sending too.
        if (job.holdsLock && !(await job.holdsLock())) throw new LockLost(job.id);
        const triedAt = Date.now();
        try {
          const { document, parameters } = documentFor(request, settings);
          return await runCommand.sendBatch({
            instanceIds: sendable(batch),
            document,
            parameters,
            comment,
            timeoutSeconds: settings.commandTimeoutSeconds,
          });
        } catch (error) {
          if (!isThrottlingAwsError(error)) maybeSentAt = triedAt;
          throw error;
        }
      });
    };

    // Resume: a batch marked `sending` may or may not have reached SSM before the crash.
    for (const [index, batch] of batches.entries()) {
      if (batch.state !== 'sending') continue;
      const found = await findSent(`${job.id}:${index}`, batch.sendingAt ?? 0, budgeted);
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
    // Instances terminated or stopped under their running command: failed, whatever SSM still
    // says. Not stored: a restarted job finds them again with its first look at EC2.
    const lost = new Map<string, keyof typeof lostReasons>();
    const details = new Map<string, string>();
    // Undeliverable or Delayed ids that EC2 still lists as running: looked up once, not on every tick.
    const checkedRunning = new Set<string>();
    // When each Delayed invocation was first seen so; past the delivery wait it is given up.
    const delayedSince = new Map<string, number>();
    const deliveryWaitMs = settings.deliveryWaitMs ?? defaultDeliveryWaitMs;
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
          if (unreachable.has(inv.instanceId)) continue;
          const gone = lost.has(inv.instanceId) && inv.status !== 'success';
          statuses.set(inv.instanceId, gone ? 'failed' : inv.status);
          if (inv.details) details.set(inv.instanceId, inv.details);
          if (inv.status === 'delayed' && !delayedSince.has(inv.instanceId))
            delayedSince.set(inv.instanceId, Date.now());
        }
      }

      // SSM may take a while to notice an instance terminated under its command (and a restarted
      // job may find it InProgress still), and keeps a command for a stopped one Delayed until it
      // expires: EC2 knows at once.
      const open = batches
        .filter((b) => b.commandId)
        .flatMap(sendable)
        .filter((id) => !lost.has(id) && unexplained.includes(statuses.get(id)));
      const newlyStuck = open.some(
        (id) => !checkedRunning.has(id) && ['undeliverable', 'delayed'].includes(statuses.get(id) ?? ''),
      );
      const toCancel = new Map<string, Unreachable>();
      if (open.length > 0 && (newlyStuck || Date.now() - lastGoneCheck >= goneCheckMs)) {
        lastGoneCheck = Date.now();
        const states = await aws.run(() => deps.fleet.states(open));
        for (const id of open) {
          const state = states.get(id);
          const status = statuses.get(id);
          if (state === 'running') {
            if (status === 'undeliverable' || status === 'delayed') checkedRunning.add(id);
          } else if (state === undefined || state === 'shutting-down' || state === 'terminated') {
            lost.set(id, 'terminated');
            statuses.set(id, 'failed');
          } else if (status === undefined || status === 'pending' || status === 'delayed') {
            // Stopped before its command started: it never ran anything, and must not wait out the timeout.
            toCancel.set(id, 'not running');
          } else {
            lost.set(id, 'stopped');
            statuses.set(id, 'failed');
          }
        }
        if (lost.size > 0)
          log.info({ instances: Object.fromEntries(lost) }, 'instances lost under their command');
      }
      for (const [id, since] of delayedSince)
        if (statuses.get(id) === 'delayed' && Date.now() - since >= deliveryWaitMs && !toCancel.has(id))
          toCancel.set(id, 'delivery delayed');
      if (toCancel.size > 0) {
        // SSM would deliver it whenever the instance comes back, long after this rollout ended.
        for (const batch of batches) {
          const ids = batch.instanceIds.filter((id) => toCancel.has(id));
          const commandId = batch.commandId;
          if (ids.length === 0 || !commandId) continue;
          await budgeted(() => runCommand.cancel(commandId, ids)).catch((err: unknown) =>
            log.warn({ commandId, err: String(err) }, 'cancel of undelivered invocations failed'),
          );
        }
        markUnreachable(toCancel);
        await save();
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
        if (waveIds.length > 0) await skipUnreachable(waveIds);
        for (const { index, batch } of wave) {
          if (sendable(batch).length === 0) {
            batch.state = 'done';
            await save();
            continue;
          }
          batch.state = 'sending';
          // A crash after this write is found by its comment; a resumed job comes back long after
          // (a worker's lock outlives the listing lag), and this mark tells it how long ago it was.
          batch.sendingAt = Date.now();
          await save();
          const comment = `${job.id}:${index}`;
          for (;;) {
            try {
              batch.commandId = await sendOnce(batch, comment);
              break;
            } catch (error) {
              if (!(error instanceof InstancesRejected)) throw error;
              // One id that became unreachable between the wave's check and this send fails the
              // whole batch in SSM: the rest goes without it. A fresh look says why; where it finds
              // nothing (SSM's own view lags), the ids SSM named in its refusal are left out.
              listed = undefined;
              if ((await skipUnreachable(sendable(batch))) === 0) {
                const named = error.instanceIds.filter((id) => sendable(batch).includes(id));
                if (named.length === 0) throw error;
                markUnreachable(new Map(named.map((id) => [id, 'refused by SSM'])));
              }
              await save();
              if (sendable(batch).length === 0) break;
            }
          }
          batch.state = batch.commandId ? 'sent' : 'done';
          await save();
        }
      }

      current = render(title, job.id, batches, statuses, total, unreachable.size, record.startedAt, halted);
      show();
      // From the next tick on, the listing is too old to stand for a check.
      listed = undefined;
      const running = batches.some((b) => b.state === 'sent');
      const waiting = batches.some((b) => b.state === 'planned');
      if (!running && (!waiting || halted)) break;
      await sleep(settings.pollMs);
    }

    const counts = countsOf(statuses, total, unreachable.size);
    const failedIds = [...statuses].filter(([, s]) => failing.includes(s));
    // What a person needs to hear where SSM has no output to show: such instances never reported.
    const lostReason = (instanceId: string) => {
      const how = lost.get(instanceId);
      return how && lostReasons[how];
    };
    const reasonOf = (instanceId: string, status: InvocationStatus): string | undefined =>
      lostReason(instanceId) ??
      (details.get(instanceId) === 'DeliveryTimedOut'
        ? `no answer from its SSM agent within the command timeout (${formatElapsed(settings.commandTimeoutSeconds * 1000)})`
        : status === 'undeliverable'
          ? 'SSM could not reach its agent'
          : undefined);
    const failed = [];
    // Full error output only for failed instances, and only as many as the summary shows.
    for (const [instanceId, status] of failedIds.slice(0, 20)) {
      const reason = reasonOf(instanceId, status);
      const batch = batches.find((b) => b.instanceIds.includes(instanceId));
      const inv =
        reason === undefined && batch?.commandId
          ? await budgeted(() =>
              runCommand.invocation(batch.commandId ?? '', instanceId, documentFor(request, settings).step),
            ).catch(() => undefined)
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
      request.operation === 'deploy'
        ? undefined
        : await patchCompliance(
            batches.filter((b) => b.commandId).flatMap(sendable),
            record.startedAt,
            budgeted,
            runCommand,
          );
    const outcome =
      halted === 'cancelled'
        ? 'cancelled'
        : failedIds.length > 0
          ? 'failed'
          : unreachable.size === total
            ? 'nothing-to-do'
            : 'succeeded';
    const summary: RolloutSummary = {
      outcome,
      total,
      counts,
      failed,
      compliance,
      ...unreachableRecord(unreachable),
    };
    await progress.finish(
      renderSummary(
        title,
        job.id,
        summary,
        failedIds.length,
        record.startedAt,
        halted,
        maxErrors,
        deliveryWaitMs,
      ),
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
    const counts = countsOf(statuses, total, unreachable.size);
    const notSent = batches
      .filter((b) => b.state === 'planned' || b.state === 'sending')
      .reduce((n, b) => n + b.instanceIds.filter((id) => !unreachable.has(id)).length, 0);
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
// ROLLOUT_DELIVERY_WAIT_SECONDS' and SSM_LISTING_LAG_SECONDS' defaults, for callers that leave them out.
const defaultDeliveryWaitMs = 120_000;
const defaultListingLagMs = 10_000;
const noErrors = { kind: 'count', value: 0 } as const;

function documentFor(
  request: RolloutRequest,
  settings: RolloutSettings,
): { document: string; parameters: Record<string, string[]>; step?: string } {
  if (request.operation === 'deploy')
    // The version reaches instances only as a document parameter (allowedPattern, ENV_VAR interpolation).
    return { document: settings.deployDocument, parameters: { version: [request.version ?? ''] } };
  return {
    document: 'AWS-RunPatchBaseline',
    // The document has a step per platform (PatchWindows, PatchLinux, PatchMacOS); the fleet runs Linux.
    step: 'PatchLinux',
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

/** Unreachable instances have no status of their own: the rest of the total is pending. */
function countsOf(statuses: Map<string, InvocationStatus>, total: number, unreachable: number): Counts {
  const c: Counts = {
    pending: 0,
    inProgress: 0,
    succeeded: 0,
    failed: 0,
    timedOut: 0,
    cancelled: 0,
    unreachable,
  };
  for (const s of statuses.values()) {
    if (s === 'success') c.succeeded++;
    else if (s === 'failed' || s === 'undeliverable') c.failed++;
    else if (s === 'timed-out') c.timedOut++;
    else if (s === 'cancelled') c.cancelled++;
    else if (s === 'running') c.inProgress++;
    else c.pending++;
  }
  c.pending += total - statuses.size - unreachable;
  return c;
}

function render(
  title: string,
  jobId: string,
  batches: NonNullable<RolloutPayload['batches']>,
  statuses: Map<string, InvocationStatus>,
  total: number,
  unreachable: number,
  startedAt: number,
  halted: RolloutPayload['halted'],
): string {
  const c = countsOf(statuses, total, unreachable);
  const finished = c.succeeded + c.failed + c.timedOut + c.cancelled + c.unreachable;
  const width = 20;
  const filled = Math.round((finished / total) * width);
  const elapsed = Date.now() - startedAt;
  const eta =
    finished > 0 && finished < total ? formatElapsed((elapsed / finished) * (total - finished)) : '…';
  const done = batches.filter((b) => b.state === 'done').length;
  return [
    `${title} (job ${jobId}): ${halted === 'errors' ? 'stopping, too many failures' : halted === 'cancelled' ? 'cancelling' : 'running'}`,
    `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${Math.floor((finished / total) * 100)}% of ${total}`,
    `succeeded ${c.succeeded} · failed ${c.failed} · timed out ${c.timedOut} · cancelled ${c.cancelled} · not reachable ${c.unreachable} · in progress ${c.inProgress} · pending ${c.pending}`,
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
  deliveryWaitMs: number,
): string {
  const c = s.counts;
  const head =
    s.outcome === 'succeeded'
      ? c.unreachable > 0
        ? `${title}: succeeded on all ${s.total - c.unreachable} instances it could reach`
        : `${title}: succeeded on all ${s.total} instances`
      : s.outcome === 'nothing-to-do'
        ? `${title}: nothing was run, as no planned instance could be reached`
        : s.outcome === 'cancelled'
          ? `${title}: cancelled`
          : `${title}: failed${halted === 'errors' ? ` (stopped after ${failedCount} failures; the limit was ${maxErrors})` : ''}`;
  const lines = [
    `${head} (job ${jobId}, took ${formatElapsed(Date.now() - startedAt)}).`,
    `succeeded ${c.succeeded} · failed ${c.failed} · timed out ${c.timedOut} · cancelled ${c.cancelled} · not reachable ${c.unreachable} · not started ${c.pending}`,
  ];
  const unreachable = describeUnreachable(new Map(Object.entries(s.unreachable ?? {})), deliveryWaitMs);
  if (unreachable) lines.push(unreachable);
  if (s.failed.length > 0) {
    lines.push('Failed instances:');
    for (const f of s.failed.slice(0, failuresInSummary)) lines.push(failureLine(f));
    if (failedCount > failuresInSummary)
      lines.push(
        `… and ${failedCount - failuresInSummary} more: all ${failedCount} are listed in the thread.`,
      );
  }
  if (s.compliance) {
    const { missing, failed, pendingReboot, unreported } = s.compliance;
    const counted = (list: { instanceId: string; count: number }[]) =>
      idList(list.map((m) => `${m.instanceId}: ${m.count}`));
    const reported = s.total - s.counts.unreachable - unreported.length;
    lines.push(
      reported === 0
        ? 'Compliance: no instance reported a patch state from this run.'
        : missing.length === 0
          ? `Compliance: none of the ${reported} instances reporting a patch state misses patches.`
          : `Compliance: ${plural(missing.length, 'instance')} missing patches (${counted(missing)}).`,
    );
    if (failed.length > 0) lines.push(`Patches that failed to install: ${counted(failed)}.`);
    if (pendingReboot.length > 0) lines.push(`Pending a reboot: ${idList(pendingReboot)}.`);
    if (unreported.length > 0 && reported > 0)
      lines.push(`No patch state from this run (compliance unknown): ${idList(unreported)}.`);
  }
  return lines.join('\n');
}

/** How the job's record (and its summary) keeps unreachable instances, by id; nothing when there are none. */
function unreachableRecord(unreachable: ReadonlyMap<string, Unreachable>) {
  if (unreachable.size === 0) return {};
  const byId = [...unreachable].sort(([a], [b]) => (a < b ? -1 : 1));
  return { unreachable: Object.fromEntries(byId) as Record<string, Unreachable> };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const idList = (items: readonly string[]) =>
  `${items.slice(0, 10).join(', ')}${items.length > 10 ? ', …' : ''}`;

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
      `succeeded ${c.succeeded} · failed ${c.failed} · timed out ${c.timedOut} · cancelled ${c.cancelled} · not reachable ${c.unreachable} · in progress or unknown ${c.inProgress + c.pending - s.notSent} · never sent ${s.notSent}`,
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

/**
 * Compliance as SSM records it per instance (DescribeInstancePatchStates, 50 ids a call), never
 * from command output: ListCommandInvocations cuts output at 2,500 characters and RunPatchBaseline's
 * Linux output may not carry the counts at all. A state that ended before this rollout started is
 * an older scan's, so the instance is named as having reported nothing fresh.
 */
async function patchCompliance(
  instanceIds: readonly string[],
  startedAt: number,
  budgeted: <T>(call: () => Promise<T>) => Promise<T>,
  runCommand: RunCommand,
): Promise<NonNullable<RolloutSummary['compliance']>> {
  const compliance: NonNullable<RolloutSummary['compliance']> = {
    missing: [],
    failed: [],
    pendingReboot: [],
    unreported: [],
  };
  for (let i = 0; i < instanceIds.length; i += 50) {
    const chunk = instanceIds.slice(i, i + 50);
    const states = await budgeted(() => runCommand.patchStates(chunk));
    for (const instanceId of chunk) {
      const state = states.get(instanceId);
      if (!state || state.endedAt.getTime() < startedAt - planClockMarginMs) {
        compliance.unreported.push(instanceId);
        continue;
      }
      if (state.missing > 0) compliance.missing.push({ instanceId, count: state.missing });
      if (state.failed > 0) compliance.failed.push({ instanceId, count: state.failed });
      if (state.installedPendingReboot > 0) compliance.pendingReboot.push(instanceId);
    }
  }
  return compliance;
}
