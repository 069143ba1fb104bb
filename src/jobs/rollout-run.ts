import { transientAwsError } from '../core/aws-errors.js';
import { type AwsWait, createAwsWait, defaultRolloutAwsWaitSeconds, waitingLine } from '../core/aws-wait.js';
import type { InstanceState } from '../core/ports/fleet.js';
import type { AgentPing, InvocationStatus } from '../core/ports/run-command.js';
import { type RolloutRequest, rolloutTitle } from '../core/rollout-request.js';
import type { Logger } from '../log.js';
import { editMessage } from './outboxes.js';
import { createProgress, type Progress, stoppableEdit } from './progress.js';
import type { RolloutPayload } from './queues.js';
import type { Unreachable } from './reachability.js';
import type { RolloutDeps, RolloutJob, RolloutSettings } from './rollout.js';
import { StatusMap } from './rollout-message.js';

export type Batch = NonNullable<RolloutPayload['batches']>[number];

/** An SSM call that waits its turn at the SSM budget first. */
export type SsmCall = <T>(call: () => Promise<T>) => Promise<T>;

export const failing: InvocationStatus[] = ['failed', 'timed-out', 'undeliverable'];
export const lostReasons = {
  terminated: 'terminated during the deploy',
  stopped: 'stopped while its command ran',
} as const;

// ROLLOUT_PLAN_TTL_MINUTES' default, for callers that leave planTtlMs out; the margin covers EC2's
// clock (its transition times are whole seconds) against ours.
export const defaultPlanTtlMs = 15 * 60_000;
export const planClockMarginMs = 60_000;
// ROLLOUT_DELIVERY_WAIT_SECONDS' and SSM_LISTING_LAG_SECONDS' defaults, for callers that leave them out.
const defaultDeliveryWaitMs = 120_000;
export const defaultListingLagMs = 10_000;

/**
 * One attempt at a rollout: what it knows while it runs. Only `record` outlives it (the job's data);
 * everything else a restarted attempt finds again from SSM and EC2.
 */
export interface Run {
  readonly job: RolloutJob;
  readonly deps: RolloutDeps;
  readonly settings: RolloutSettings;
  readonly request: RolloutRequest;
  readonly log: Logger;
  /** The job's clock, in epoch ms. */
  readonly now: () => number;
  readonly title: string;
  readonly awsWaitMs: number;
  readonly deliveryWaitMs: number;
  readonly aws: AwsWait;
  readonly progress: Progress;
  /** Ends this attempt's edits, so the worker's word on a failure stays the last. */
  stopEdits(): Promise<void>;
  /** The job's record as last written. */
  record: RolloutPayload;
  /** Writes the record; updateData persists it before returning. */
  persist(next: RolloutPayload): Promise<void>;
  /** Writes the batches and unreachable instances as they are now. */
  save(): Promise<void>;
  /** The progress text without the AWS line: trouble adds the line, the next answered call removes it. */
  current: string;
  /** Shows `current`, with the AWS line while AWS is in trouble. */
  show(): void;
  /** Retries are SSM calls too: each attempt waits its turn, so a storm never spends more than the budget. */
  budgeted: SsmCall;
  /** One SSM call, within a retry loop of its own. */
  paced: SsmCall;
  /** The batches of the record (the same objects), changed in place and then saved. */
  batches: Batch[];
  /** How many instances the plan holds, unreachable ones included. */
  total: number;
  statuses: StatusMap;
  /** Planned instances never sent anything (or whose command never reached them), and why. */
  unreachable: Map<string, Unreachable>;
  /**
   * Instances terminated or stopped under their running command: failed, whatever SSM still says.
   * Not stored: a restarted job finds them again with its first look at EC2.
   */
  lost: Map<string, keyof typeof lostReasons>;
  /** SSM's status details per instance (DeliveryTimedOut, say). */
  details: Map<string, string>;
  halted: RolloutPayload['halted'];
  /** What SSM last said of each instance's agent (absent: SSM did not know it), and when. */
  agentsSeen: Map<string, { ping: AgentPing | undefined; at: number }>;
  /** The fleet's states from this attempt's listing, while it is fresh enough to stand for a check. */
  listed: Map<string, InstanceState> | undefined;
  /** The ids of a batch still to send: its unreachable ones left out. */
  sendable(batch: { instanceIds: string[] }): string[];
  markUnreachable(found: ReadonlyMap<string, Unreachable>): void;
}

export function startRun(job: RolloutJob, deps: RolloutDeps): Run {
  const { settings } = deps;
  const request = job.data.request;
  const log = deps.log.child({ jobId: job.id, operation: request.operation });
  const now = deps.now ?? Date.now;
  const title = rolloutTitle(request);
  const awsWaitMs = settings.awsWaitMs ?? defaultRolloutAwsWaitSeconds * 1000;
  const edits = stoppableEdit((text) => editMessage(deps.outboxes, run.record.message, { text }));
  const aws = createAwsWait({
    classify: transientAwsError,
    maxWaitMs: awsWaitMs,
    // The same clock as the job's: the give-up message sets the wait beside the time the job took.
    now,
    onChange(trouble, waitedMs) {
      if (trouble) log.warn({ aws: trouble.code, kind: trouble.kind, waitedMs }, 'waiting on AWS');
      else log.info({ waitedMs }, 'AWS answers again');
      run.show();
    },
  });
  const run: Run = {
    job,
    deps,
    settings,
    request,
    log,
    now,
    title,
    awsWaitMs,
    deliveryWaitMs: settings.deliveryWaitMs ?? defaultDeliveryWaitMs,
    aws,
    progress: createProgress(edits.edit, {
      minIntervalMs: settings.editIntervalMs,
      log,
      budget: deps.editBudget,
    }),
    stopEdits: () => edits.stop(),
    record: job.data,
    async persist(next) {
      run.record = next;
      await job.updateData(next);
    },
    save: () => run.persist({ ...run.record, batches: run.batches, ...unreachableRecord(run.unreachable) }),
    current: `${title} (job ${job.id}): starting`,
    show() {
      const trouble = aws.trouble();
      run.progress.update(trouble ? `${run.current}\n${waitingLine(trouble)}` : run.current);
    },
    budgeted: (call) =>
      aws.run(async () => {
        await deps.ssmPacer.wait();
        return call();
      }),
    async paced(call) {
      await deps.ssmPacer.wait();
      return call();
    },
    batches: job.data.batches ?? [],
    total: 0,
    statuses: new StatusMap(),
    unreachable: new Map(),
    lost: new Map(),
    details: new Map(),
    agentsSeen: new Map(),
    halted: job.data.halted,
    listed: undefined,
    sendable: (batch) => batch.instanceIds.filter((id) => !run.unreachable.has(id)),
    markUnreachable(found) {
      for (const [id, reason] of found) {
        run.unreachable.set(id, reason);
        run.statuses.delete(id);
      }
      if (found.size > 0)
        log.info({ instances: Object.fromEntries(found) }, 'planned instances a command cannot reach');
    },
  };
  return run;
}

/** How the job's record (and its summary) keeps unreachable instances, by id; nothing when there are none. */
export function unreachableRecord(unreachable: ReadonlyMap<string, Unreachable>) {
  if (unreachable.size === 0) return {};
  const byId = [...unreachable].sort(([a], [b]) => (a < b ? -1 : 1));
  return { unreachable: Object.fromEntries(byId) as Record<string, Unreachable> };
}

export function documentFor(
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
