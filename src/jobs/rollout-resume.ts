import type { FleetInstance, InstanceState } from '../core/ports/fleet.js';
import { planRollout, type RolloutPlan } from '../core/rollout.js';
import { matchesTargets, type Targets } from '../core/targets.js';
import { unreachableIn } from './reachability.js';
import { defaultPlanTtlMs, planClockMarginMs, type Run, unreachableRecord } from './rollout-run.js';
import { findSent } from './rollout-send.js';

const notRunning: InstanceState[] = ['stopping', 'stopped', 'shutting-down', 'terminated'];

/**
 * Where a rollout stands when an attempt starts: a first attempt plans its batches and records them
 * before anything is sent; a later one takes the batches and unreachable instances its record holds.
 * Returns the plan the rest of the attempt runs by, and each listed instance's owner.
 */
export async function resume(
  run: Run,
  targets: Targets,
): Promise<{ plan: RolloutPlan; owners: Map<string, string> }> {
  // One listing serves the plan (on a first run) and the owners named in the summary: on a large
  // fleet DescribeInstances is the slowest call a rollout makes.
  const fleet = await run.aws.run(() => run.deps.fleet.list());
  const owners = new Map(fleet.map((i) => [i.id, i.userId]));
  if (!run.record.batches) await planBatches(run, fleet, targets);
  run.batches = run.record.batches ?? [];
  run.total = run.batches.reduce((n, b) => n + b.instanceIds.length, 0);
  for (const [id, reason] of unreachableIn(run.record)) run.unreachable.set(id, reason);
  // The listing this attempt started with is as fresh as a check for a wave sent on its first tick.
  run.listed = new Map(fleet.map((i) => [i.id, i.state]));
  // The batches hold the plan's ids in its order, so planning them again gives back the same batches.
  const plan = planRollout(
    run.request,
    run.batches.flatMap((b) => b.instanceIds),
  );
  return { plan, owners };
}

async function planBatches(run: Run, fleet: FleetInstance[], targets: Targets): Promise<void> {
  const { record, settings } = run;
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
  const planned = planRollout(run.request, matched).batches.map((instanceIds) => ({
    instanceIds,
    state: 'planned' as const,
  }));
  await run.persist({
    ...record,
    batches: planned,
    ...unreachableRecord(new Map(gone.map((id) => [id, 'not running']))),
  });
}

/** A batch marked `sending` may or may not have reached SSM before the attempt before this one ended. */
export async function recoverSends(run: Run): Promise<void> {
  for (const [index, batch] of run.batches.entries()) {
    if (batch.state !== 'sending') continue;
    const found = await findSent(run, `${run.job.id}:${index}`, batch.sendingAt ?? 0, run.budgeted);
    batch.state = found ? 'sent' : 'planned';
    batch.commandId = found;
    run.log.info(
      { batch: index, commandId: found ?? null },
      found ? 'recovered an unrecorded send' : 'resending a batch that never left',
    );
    await run.save();
  }
}
