import { setTimeout as sleep } from 'node:timers/promises';
import { AwsWaitExpired } from '../core/aws-wait.js';
import type { Fleet } from '../core/ports/fleet.js';
import type { InvocationEvents } from '../core/ports/invocation-events.js';
import type { InvocationStatus, RunCommand } from '../core/ports/run-command.js';
import { parseTargets } from '../core/targets.js';
import { isVersion } from '../core/version.js';
import type { Logger } from '../log.js';
import type { Pacer } from '../store/rate-limits.js';
import type { Outboxes } from './outboxes.js';
import type { Budget } from './progress.js';
import type { RolloutPayload } from './queues.js';
import type { Unreachable } from './reachability.js';
import { type Counts, countsOf } from './rollout-message.js';
import { recoverSends, resume } from './rollout-resume.js';
import { startRun } from './rollout-run.js';
import { gaveUp, summarize } from './rollout-summary.js';
import { startTicks, takeEvents, tick } from './rollout-tick.js';

export { LockLost } from './rollout-send.js';

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
  /**
   * With completion events, how often a running command is read all the same
   * (ROLLOUT_EVENTS_SAFETY_POLL_SECONDS): what a lost event can cost.
   */
  safetyPollMs?: number;
}

export interface RolloutDeps {
  fleet: Fleet;
  runCommand: RunCommand;
  /** Every SSM call of every rollout, in every worker, waits its turn here. */
  ssmPacer: Pacer;
  /** Workspace-wide chat.update budget; intermediate edits skip when it is spent. */
  editBudget: Budget;
  isCancelled(jobId: string): Promise<boolean>;
  /**
   * Run Command's completion events (ROLLOUT_EVENTS_QUEUE_URL): a finished instance frees its slot
   * as soon as its event arrives. Without them, each command is read when its instances are
   * expected to have finished.
   */
  events?: InvocationEvents;
  outboxes: Outboxes;
  settings: RolloutSettings;
  log: Logger;
  /** The job's clock in epoch ms (Date.now when left out): elapsed times, ETAs and every wait it measures. */
  now?: () => number;
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

/**
 * Runs one rollout across the fleet: batches of at most 50 ids, one SendCommand each, sent as
 * finished instances free their slots so no more than the requested concurrency is in flight
 * fleet-wide. An instance is known finished from its completion event, or from one
 * ListCommandInvocations of its command, read when the durations seen so far say enough of it has
 * finished (see completion-forecast.ts). Every batch's phase lives in the job, so a restarted job
 * resumes polling what was sent and never sends a batch twice.
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
  const run = startRun(job, deps);
  const { request } = run;
  run.log.info({ resumed: Boolean(job.data.batches) }, 'rollout started');

  if (request.operation === 'deploy' && !(request.version && isVersion(request.version)))
    throw new RolloutRejected('the version does not match the allowed pattern');
  const targets = parseTargets(request.targets);
  if (!targets) throw new RolloutRejected('the targets are not valid');

  let stopEvents: (() => void) | undefined;
  try {
    const { plan, owners } = await resume(run, targets);
    if (run.total === 0) {
      await run.progress.finish(`${run.title}: no running fleet instance matched, so nothing was sent.`);
      return { outcome: 'nothing-to-do', total: 0, counts: countsOf(new Map(), 0, 0), failed: [] };
    }
    await recoverSends(run);
    const ticks = startTicks(run, plan, Boolean(deps.events));
    const wake = createWake();
    stopEvents = deps.events?.subscribe((events) => {
      if (takeEvents(run, ticks, events)) wake.notify();
    });
    for (;;) {
      const tickedAt = run.now();
      if (await tick(run, ticks)) break;
      // Events arrive by the dozen: a tick gathers what came in since the last, at most this often.
      const gapMs = Math.min(minTickGapMs, run.settings.pollMs);
      await sleep(Math.max(0, tickedAt + gapMs - run.now()));
      await wake.wait(ticks.nextReadAt - run.now());
    }
    return await summarize(run, owners, plan.maxErrors);
  } catch (error) {
    if (!(error instanceof AwsWaitExpired)) {
      await run.stopEdits();
      throw error;
    }
    return await gaveUp(run, error);
  } finally {
    stopEvents?.();
  }
}

// How often a rollout acts on completion events, at most.
const minTickGapMs = 100;

/** A sleep that `notify` ends early; a notify while awake ends the next sleep at once. */
function createWake() {
  let pending = false;
  let cut: (() => void) | undefined;
  return {
    notify() {
      pending = true;
      cut?.();
    },
    async wait(ms: number) {
      if (pending || ms <= 0) {
        pending = false;
        return;
      }
      const controller = new AbortController();
      cut = () => controller.abort();
      await sleep(ms, undefined, { signal: controller.signal }).catch(() => undefined);
      cut = undefined;
      pending = false;
    },
  };
}
