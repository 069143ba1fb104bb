import { type AwsWaitExpired, describeTrouble } from '../core/aws-wait.js';
import { formatElapsed } from '../core/durations.js';
import { type InvocationStatus, invocationStatuses } from '../core/ports/run-command.js';
import { looksSecret } from '../core/secret-kinds.js';
import { failureLine, failuresInSummary } from './failure-list.js';
import type { RolloutPayload } from './queues.js';
import { describeUnreachable } from './reachability.js';
import type { RolloutSummary } from './rollout.js';

/**
 * What a rollout's chat message says: its progress while it runs, then its summary (or why it gave
 * up on AWS). Each takes the time to measure against, so the job's own clock decides elapsed and ETA.
 */

export type Counts = Record<
  'pending' | 'inProgress' | 'succeeded' | 'failed' | 'timedOut' | 'cancelled' | 'unreachable',
  number
>;

/**
 * Each instance's last known status, which also keeps how many instances hold each status as
 * statuses change. A rollout renders its progress and checks its error limit on every tick (every
 * 100 ms with completion events): with these counts a tick costs the same on 10,000 instances as on
 * 100, instead of walking every status each time.
 */
export class StatusMap extends Map<string, InvocationStatus> {
  readonly #held = new Map<InvocationStatus, number>(invocationStatuses.map((s) => [s, 0]));

  /** How many instances hold this status now. */
  holding(status: InvocationStatus): number {
    return this.#held.get(status) ?? 0;
  }

  override set(instanceId: string, status: InvocationStatus): this {
    this.#forget(instanceId);
    this.#held.set(status, this.holding(status) + 1);
    return super.set(instanceId, status);
  }

  override delete(instanceId: string): boolean {
    this.#forget(instanceId);
    return super.delete(instanceId);
  }

  override clear(): void {
    for (const status of invocationStatuses) this.#held.set(status, 0);
    super.clear();
  }

  #forget(instanceId: string): void {
    const before = super.get(instanceId);
    if (before !== undefined) this.#held.set(before, this.holding(before) - 1);
  }
}

/** Unreachable instances have no status of their own: the rest of the total is pending. */
export function countsOf(
  statuses: ReadonlyMap<string, InvocationStatus>,
  total: number,
  unreachable: number,
): Counts {
  const held = statuses instanceof StatusMap ? statuses : tally(statuses);
  const c: Counts = {
    pending: held.holding('pending') + held.holding('delayed'),
    inProgress: held.holding('running'),
    succeeded: held.holding('success'),
    failed: held.holding('failed') + held.holding('undeliverable'),
    timedOut: held.holding('timed-out'),
    cancelled: held.holding('cancelled'),
    unreachable,
  };
  c.pending += total - statuses.size - unreachable;
  return c;
}

function tally(statuses: ReadonlyMap<string, InvocationStatus>): StatusMap {
  const held = new StatusMap();
  for (const [id, status] of statuses) held.set(id, status);
  return held;
}

export function render(
  title: string,
  jobId: string,
  batches: NonNullable<RolloutPayload['batches']>,
  statuses: ReadonlyMap<string, InvocationStatus>,
  total: number,
  unreachable: number,
  startedAt: number,
  halted: RolloutPayload['halted'],
  now: number,
): string {
  const c = countsOf(statuses, total, unreachable);
  const finished = c.succeeded + c.failed + c.timedOut + c.cancelled + c.unreachable;
  const width = 20;
  const filled = Math.round((finished / total) * width);
  const elapsed = now - startedAt;
  const eta =
    finished > 0 && finished < total ? formatElapsed((elapsed / finished) * (total - finished)) : '…';
  // Rendered on every tick: counted in place rather than through a filtered copy of the batches.
  let done = 0;
  for (const batch of batches) if (batch.state === 'done') done++;
  return [
    `${title} (job ${jobId}): ${halted === 'errors' ? 'stopping, too many failures' : halted === 'cancelled' ? 'cancelling' : 'running'}`,
    `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${Math.floor((finished / total) * 100)}% of ${total}`,
    `succeeded ${c.succeeded} · failed ${c.failed} · timed out ${c.timedOut} · cancelled ${c.cancelled} · not reachable ${c.unreachable} · in progress ${c.inProgress} · pending ${c.pending}`,
    `batches ${done}/${batches.length} · elapsed ${formatElapsed(elapsed)} · ETA ${eta}`,
  ].join('\n');
}

export function renderSummary(
  title: string,
  jobId: string,
  s: RolloutSummary,
  failedCount: number,
  startedAt: number,
  halted: RolloutPayload['halted'],
  maxErrors: number,
  deliveryWaitMs: number,
  now: number,
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
    `${head} (job ${jobId}, took ${formatElapsed(now - startedAt)}).`,
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

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const idList = (items: readonly string[]) =>
  `${items.slice(0, 10).join(', ')}${items.length > 10 ? ', …' : ''}`;

export function renderGaveUp(
  title: string,
  jobId: string,
  error: AwsWaitExpired,
  s: { total: number; notSent: number; counts: Counts; awsWaitMs: number; startedAt: number },
  now: number,
): string {
  const c = s.counts;
  const lines = [
    `${title}: gave up waiting on AWS (job ${jobId}, took ${formatElapsed(now - s.startedAt)}).`,
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
export function firstLines(output: string): string {
  return output
    .trim()
    .split('\n')
    .slice(0, 3)
    .map((line) => (looksSecret(line) ? '[redacted]' : line))
    .join(' / ')
    .slice(0, 300);
}
