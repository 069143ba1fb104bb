import type { InvocationStatus } from '../core/ports/run-command.js';
import type { RolloutPlan } from '../core/rollout.js';
import type { Unreachable } from './reachability.js';
import { render } from './rollout-message.js';
import { type Batch, failing, type Run } from './rollout-run.js';
import { sendBatch, skipUnreachable } from './rollout-send.js';

const terminal: InvocationStatus[] = ['success', 'failed', 'timed-out', 'cancelled', 'undeliverable'];
// Undeliverable is terminal but says nothing about why: worth one look at EC2.
const unexplained: (InvocationStatus | undefined)[] = [
  undefined,
  'pending',
  'delayed',
  'running',
  'undeliverable',
];
// EC2 is asked about instances under running commands at most this often (every poll when that is
// slower): a terminated one is noticed within seconds of it, against a command timeout of minutes.
const minGoneCheckMs = 15_000;

/** What one attempt's ticks carry from one to the next, beside the run itself. */
export interface Ticks {
  readonly plan: Pick<RolloutPlan, 'concurrency' | 'maxErrors' | 'canaryBatches'>;
  readonly goneCheckMs: number;
  /** Commands already cancelled after the rollout halted. */
  readonly cancelled: Set<string>;
  /** Undeliverable or Delayed ids that EC2 still lists as running: looked up once, not on every tick. */
  readonly checkedRunning: Set<string>;
  /** When each Delayed invocation was first seen so; past the delivery wait it is given up. */
  readonly delayedSince: Map<string, number>;
  lastGoneCheck: number;
}

export function startTicks(run: Run, plan: Ticks['plan']): Ticks {
  return {
    plan,
    goneCheckMs: Math.max(run.settings.pollMs, minGoneCheckMs),
    cancelled: new Set(),
    checkedRunning: new Set(),
    delayedSince: new Map(),
    // The listing has just seen them all: the first look is due one interval from now.
    lastGoneCheck: run.now(),
  };
}

/**
 * One round of a rollout: read every running command's results, look at EC2 for instances gone
 * under them, then either stop (cancelled, or past the error limit) or send the next wave, and show
 * where it stands. True once nothing runs and nothing more will be sent.
 */
export async function tick(run: Run, ticks: Ticks): Promise<boolean> {
  const { batches } = run;
  if (!run.halted && (await run.deps.isCancelled(run.job.id))) run.halted = 'cancelled';
  await readResults(run, ticks);
  await cancelUndelivered(run, await findUnreachable(run, ticks));
  for (const batch of batches)
    if (
      batch.state === 'sent' &&
      run.sendable(batch).every((id) => terminal.includes(run.statuses.get(id) ?? 'pending'))
    ) {
      batch.state = 'done';
      await run.save();
    }
  const failures = [...run.statuses.values()].filter((s) => failing.includes(s)).length;
  if (!run.halted && failures > ticks.plan.maxErrors) run.halted = 'errors';
  if (run.halted) await halt(run, ticks);
  else await sendWave(run, ticks);

  const { title, job, statuses, total, unreachable, record, halted } = run;
  run.current = render(
    title,
    job.id,
    batches,
    statuses,
    total,
    unreachable.size,
    record.startedAt,
    halted,
    run.now(),
  );
  run.show();
  // From the next tick on, the listing is too old to stand for a check.
  run.listed = undefined;
  const running = batches.some((b) => b.state === 'sent');
  const waiting = batches.some((b) => b.state === 'planned');
  return !running && (!waiting || Boolean(halted));
}

/** One ListCommandInvocations per command that still has work (and once per finished one after a restart). */
async function readResults(run: Run, ticks: Ticks): Promise<void> {
  for (const batch of run.batches) {
    if (batch.state === 'done' && run.sendable(batch).every((id) => run.statuses.has(id))) continue;
    const commandId = batch.commandId;
    if (!commandId) continue;
    const invocations = await run.budgeted(() => run.deps.runCommand.listInvocations(commandId));
    for (const inv of invocations) {
      if (run.unreachable.has(inv.instanceId)) continue;
      const gone = run.lost.has(inv.instanceId) && inv.status !== 'success';
      run.statuses.set(inv.instanceId, gone ? 'failed' : inv.status);
      if (inv.details) run.details.set(inv.instanceId, inv.details);
      if (inv.status === 'delayed' && !ticks.delayedSince.has(inv.instanceId))
        ticks.delayedSince.set(inv.instanceId, run.now());
    }
  }
}

/**
 * SSM may take a while to notice an instance terminated under its command (and a restarted job
 * may find it InProgress still), and keeps a command for a stopped one Delayed until it expires:
 * EC2 knows at once. Terminated or stopped under a running command counts as failed; stopped before
 * its command started, or Delayed past the delivery wait, is returned: never reached, to cancel.
 */
async function findUnreachable(run: Run, ticks: Ticks): Promise<Map<string, Unreachable>> {
  const { statuses, lost } = run;
  const open = run.batches
    .filter((b) => b.commandId)
    .flatMap((b) => run.sendable(b))
    .filter((id) => !lost.has(id) && unexplained.includes(statuses.get(id)));
  const newlyStuck = open.some(
    (id) => !ticks.checkedRunning.has(id) && ['undeliverable', 'delayed'].includes(statuses.get(id) ?? ''),
  );
  const toCancel = new Map<string, Unreachable>();
  if (open.length > 0 && (newlyStuck || run.now() - ticks.lastGoneCheck >= ticks.goneCheckMs)) {
    ticks.lastGoneCheck = run.now();
    const states = await run.aws.run(() => run.deps.fleet.states(open));
    for (const id of open) {
      const state = states.get(id);
      const status = statuses.get(id);
      if (state === 'running') {
        if (status === 'undeliverable' || status === 'delayed') ticks.checkedRunning.add(id);
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
      run.log.info({ instances: Object.fromEntries(lost) }, 'instances lost under their command');
  }
  for (const [id, since] of ticks.delayedSince)
    if (statuses.get(id) === 'delayed' && run.now() - since >= run.deliveryWaitMs && !toCancel.has(id))
      toCancel.set(id, 'delivery delayed');
  return toCancel;
}

async function cancelUndelivered(run: Run, toCancel: ReadonlyMap<string, Unreachable>): Promise<void> {
  if (toCancel.size === 0) return;
  // SSM would deliver it whenever the instance comes back, long after this rollout ended.
  for (const batch of run.batches) {
    const ids = batch.instanceIds.filter((id) => toCancel.has(id));
    const commandId = batch.commandId;
    if (ids.length === 0 || !commandId) continue;
    await run
      .budgeted(() => run.deps.runCommand.cancel(commandId, ids))
      .catch((err: unknown) =>
        run.log.warn({ commandId, err: String(err) }, 'cancel of undelivered invocations failed'),
      );
  }
  run.markUnreachable(toCancel);
  await run.save();
}

/** Records why the rollout stopped, then cancels every command still running, once each. */
async function halt(run: Run, ticks: Ticks): Promise<void> {
  if (run.record.halted !== run.halted)
    await run.persist({ ...run.record, batches: run.batches, halted: run.halted });
  for (const batch of run.batches)
    if (batch.state === 'sent' && batch.commandId && !ticks.cancelled.has(batch.commandId)) {
      const commandId = batch.commandId;
      ticks.cancelled.add(commandId);
      await run
        .budgeted(() => run.deps.runCommand.cancel(commandId))
        .catch((err: unknown) => run.log.warn({ commandId, err: String(err) }, 'cancel failed'));
    }
}

/**
 * Starts the batches that fit: no more than the concurrency in flight (one batch always may go
 * when none is), and nothing past the canary batches until they are all done.
 */
async function sendWave(run: Run, ticks: Ticks): Promise<void> {
  const { batches } = run;
  const { concurrency, canaryBatches } = ticks.plan;
  let inFlight = batches.filter((b) => b.state === 'sent').reduce((n, b) => n + run.sendable(b).length, 0);
  const canaryOpen = batches.slice(0, canaryBatches).some((b) => b.state !== 'done');
  const wave: { index: number; batch: Batch }[] = [];
  for (const [index, batch] of batches.entries()) {
    if (batch.state !== 'planned') continue;
    // The canary wave runs alone; the rest waits until it is done and healthy.
    if (index >= canaryBatches && canaryOpen) break;
    const size = run.sendable(batch).length;
    if (inFlight > 0 && inFlight + size > concurrency) break;
    wave.push({ index, batch });
    inFlight += size;
  }
  // Stored with the next batch's `sending` mark, so a resumed job sends the same ids.
  const waveIds = wave.flatMap(({ batch }) => run.sendable(batch));
  if (waveIds.length > 0) await skipUnreachable(run, waveIds);
  for (const { index, batch } of wave) {
    if (run.sendable(batch).length === 0) {
      batch.state = 'done';
      await run.save();
      continue;
    }
    await sendBatch(run, index, batch);
  }
}
