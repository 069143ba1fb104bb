import { type CompletionForecast, createCompletionForecast } from '../core/completion-forecast.js';
import type { InvocationEvent } from '../core/ports/invocation-events.js';
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
// No command is read more often than this, however fast its instances seem to finish.
const minReadGapMs = 1000;
// ROLLOUT_EVENTS_SAFETY_POLL_SECONDS' default, for callers that leave it out.
const defaultSafetyPollMs = 60_000;

/** What one attempt's ticks carry from one to the next, beside the run itself. */
export interface Ticks {
  readonly plan: Pick<RolloutPlan, 'concurrency' | 'maxErrors' | 'canary' | 'minRefill'>;
  readonly goneCheckMs: number;
  /** Commands already cancelled after the rollout halted. */
  readonly cancelled: Set<string>;
  /** Undeliverable or Delayed ids that EC2 still lists as running: looked up once, not on every tick. */
  readonly checkedRunning: Set<string>;
  /** When each Delayed invocation was first seen so; past the delivery wait it is given up. */
  readonly delayedSince: Map<string, number>;
  /**
   * Each command's batch, and when this attempt sent and last read it (absent: read it now), while
   * any of its instances has not finished.
   */
  readonly commands: Map<string, { batch: Batch; sentAt: number; lastReadAt?: number }>;
  /**
   * Batches under a command with an instance SSM has not explained yet (no final status, or
   * Undeliverable): what the look at EC2 walks. A batch leaves once all its instances are explained,
   * which nothing undoes, so a tick late in a large rollout walks the batches in flight, not all of them.
   */
  readonly watched: Set<Batch>;
  /** How long this rollout's instances take: when a command is worth reading again. */
  readonly forecast: CompletionForecast;
  /**
   * With completion events, commands are read only this often (a lost event costs this much time,
   * never an instance); without them, the forecast decides.
   */
  readonly safetyReadMs: number | undefined;
  /** The soonest read due after this tick (epoch ms): the loop sleeps until then at most. */
  nextReadAt: number;
  lastGoneCheck: number;
}

export function startTicks(run: Run, rollout: RolloutPlan, events: boolean): Ticks {
  const { pollMs } = run.settings;
  // Polled, slots free up a read at a time, and reads share the SSM budget with sends: refills
  // twice the size keep the budget for the reads.
  const plan = {
    ...rollout,
    minRefill: events ? rollout.minRefill : Math.min(rollout.batchSize, 2 * rollout.minRefill),
  };
  const commands: Ticks['commands'] = new Map();
  const watched = new Set<Batch>();
  // Sent before this attempt: their results are read on the first tick.
  for (const batch of run.batches)
    if (batch.commandId) {
      commands.set(batch.commandId, { batch, sentAt: batch.sendingAt ?? run.now() });
      watched.add(batch);
    }
  return {
    plan,
    goneCheckMs: Math.max(pollMs, minGoneCheckMs),
    cancelled: new Set(),
    checkedRunning: new Set(),
    delayedSince: new Map(),
    commands,
    watched,
    forecast: createCompletionForecast({ minGapMs: Math.min(pollMs, minReadGapMs), maxGapMs: pollMs }),
    safetyReadMs: events ? Math.max(pollMs, run.settings.safetyPollMs ?? defaultSafetyPollMs) : undefined,
    nextReadAt: run.now() + pollMs,
    // The listing has just seen them all: the first look is due one interval from now.
    lastGoneCheck: run.now(),
  };
}

export const isTerminal = (status: InvocationStatus | undefined) => terminal.includes(status ?? 'pending');

/** What SSM (or its event) says of an instance, unless it was lost under its command: then it failed. */
const statusSeen = (run: Run, instanceId: string, status: InvocationStatus): InvocationStatus =>
  run.lost.has(instanceId) && status !== 'success' ? 'failed' : status;

/**
 * One round of a rollout: read the running commands that are due, look at EC2 for instances gone
 * under them, then either stop (cancelled, or past the error limit) or refill the slots that freed
 * up, and show where it stands. True once nothing runs and nothing more will be sent.
 */
export async function tick(run: Run, ticks: Ticks): Promise<boolean> {
  const { batches } = run;
  if (!run.halted && (await run.deps.isCancelled(run.job.id))) run.halted = 'cancelled';
  await readResults(run, ticks);
  await cancelUndelivered(run, await findUnreachable(run, ticks));
  for (const batch of batches)
    if (batch.state === 'sent' && openIn(run, batch) === 0) {
      batch.state = 'done';
      await run.save();
    }
  const failures = failing.reduce((n, status) => n + run.statuses.holding(status), 0);
  if (!run.halted && failures > ticks.plan.maxErrors) run.halted = 'errors';
  if (run.halted) await halt(run, ticks);
  else await refill(run, ticks);

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

/**
 * How many of a batch's sendable instances have not finished (no status yet counts as not
 * finished). Ticks come every 100 ms with completion events and a fleet of 10,000 has hundreds of
 * batches: counted in place, never through a copy of the ids, so a tick allocates nothing per
 * instance.
 */
function openIn(run: Run, batch: Batch): number {
  let open = 0;
  for (const id of batch.instanceIds)
    if (!run.unreachable.has(id) && !isTerminal(run.statuses.get(id))) open++;
  return open;
}

/**
 * One ListCommandInvocations per command whose read is due (and once per finished one after a
 * restart); works out when each command still running is due next. A command whose instances have
 * all finished is dropped from `ticks.commands`: it is never read again and no event replaces a
 * final status, so nothing reopens it, and a tick walks the commands in flight rather than every
 * command the rollout has sent.
 */
async function readResults(run: Run, ticks: Ticks): Promise<void> {
  ticks.nextReadAt = run.now() + run.settings.pollMs;
  for (const [commandId, sent] of ticks.commands) {
    const { batch } = sent;
    const open = openIn(run, batch);
    if (open === 0) {
      ticks.commands.delete(commandId);
      continue;
    }
    const dueAt = sent.lastReadAt === undefined ? 0 : readDueAt(ticks, sent, open);
    if (dueAt > run.now()) {
      ticks.nextReadAt = Math.min(ticks.nextReadAt, dueAt);
      continue;
    }
    const invocations = await run.budgeted(() => run.deps.runCommand.listInvocations(commandId));
    const readAt = run.now();
    // The first read after a restart says nothing of how long its instances took.
    const previousRead = sent.lastReadAt;
    sent.lastReadAt = readAt;
    let stillOpen = 0;
    for (const inv of invocations) {
      if (run.unreachable.has(inv.instanceId)) continue;
      const status = statusSeen(run, inv.instanceId, inv.status);
      if (previousRead !== undefined && isTerminal(status) && !isTerminal(run.statuses.get(inv.instanceId)))
        ticks.forecast.observe(previousRead - sent.sentAt, readAt - sent.sentAt);
      if (!isTerminal(status)) stillOpen++;
      run.statuses.set(inv.instanceId, status);
      if (inv.details) run.details.set(inv.instanceId, inv.details);
      if (inv.status === 'delayed' && !ticks.delayedSince.has(inv.instanceId))
        ticks.delayedSince.set(inv.instanceId, run.now());
    }
    if (stillOpen > 0) ticks.nextReadAt = Math.min(ticks.nextReadAt, readDueAt(ticks, sent, stillOpen));
  }
}

function readDueAt(ticks: Ticks, sent: { sentAt: number; lastReadAt?: number }, open: number): number {
  const lastReadAt = sent.lastReadAt ?? sent.sentAt;
  if (ticks.safetyReadMs !== undefined) return lastReadAt + ticks.safetyReadMs;
  return ticks.forecast.nextReadAt({
    sentAt: sent.sentAt,
    lastReadAt,
    open,
    // Half a refill's worth: reads cost less than slots left idle while the next one waits.
    worthReading: Math.ceil(ticks.plan.minRefill / 2),
  });
}

/**
 * What a completion event says, taken in: a terminal status for an instance of one of this
 * attempt's commands, unless one is known already (events repeat, and arrive out of order).
 * Events of other rollouts' commands are not ours; one that beats its own SendCommand's answer is
 * dropped too, and the command's safety read finds what it said. True when it changed anything.
 */
export function takeEvents(run: Run, ticks: Ticks, events: readonly InvocationEvent[]): boolean {
  let changed = false;
  for (const event of events) {
    const sent = ticks.commands.get(event.commandId);
    if (!sent || !isTerminal(event.status) || run.unreachable.has(event.instanceId)) continue;
    if (!sent.batch.instanceIds.includes(event.instanceId)) continue;
    if (isTerminal(run.statuses.get(event.instanceId))) continue;
    run.statuses.set(event.instanceId, statusSeen(run, event.instanceId, event.status));
    changed = true;
  }
  return changed;
}

/**
 * SSM may take a while to notice an instance terminated under its command (and a restarted job
 * may find it InProgress still), and keeps a command for a stopped one Delayed until it expires:
 * EC2 knows at once. Terminated or stopped under a running command counts as failed; stopped before
 * its command started, or Delayed past the delivery wait, is returned: never reached, to cancel.
 */
async function findUnreachable(run: Run, ticks: Ticks): Promise<Map<string, Unreachable>> {
  const { statuses, lost } = run;
  const open: string[] = [];
  let newlyStuck = false;
  for (const batch of ticks.watched) {
    const before = open.length;
    for (const id of batch.instanceIds) {
      if (run.unreachable.has(id) || lost.has(id)) continue;
      const status = statuses.get(id);
      if (!unexplained.includes(status)) continue;
      open.push(id);
      if ((status === 'undeliverable' || status === 'delayed') && !ticks.checkedRunning.has(id))
        newlyStuck = true;
    }
    if (open.length === before) ticks.watched.delete(batch);
  }
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
 * Refills the slots that finished instances freed, in plan order: a planned batch that fits goes
 * whole; one that does not is split, and its head goes when it fills at least `minRefill` slots
 * (or anything, when nothing runs). Nothing past the canary instances goes until they are all done.
 */
async function refill(run: Run, ticks: Ticks): Promise<void> {
  const { batches } = run;
  const { concurrency, canary, minRefill } = ticks.plan;
  let inFlight = openInstances(run);
  const wave: { index: number; batch: Batch }[] = [];
  let planned = 0;
  let canaryOpen = false;
  for (let index = 0; index < batches.length; index++) {
    const batch = batches[index] as Batch;
    const start = planned;
    planned += batch.instanceIds.length;
    if (start < canary && batch.state !== 'done') canaryOpen = true;
    if (batch.state !== 'planned') continue;
    // The canary wave runs alone; the rest waits until it is done and healthy.
    if (start >= canary && canaryOpen) break;
    const size = run.sendable(batch).length;
    const free = concurrency - inFlight;
    if (size > free) {
      if (free < minRefill && inFlight > 0) break;
      splitBatch(run, index, Math.max(1, free));
    }
    wave.push({ index, batch });
    inFlight += run.sendable(batch).length;
    if (inFlight >= concurrency) break;
  }
  // Stored with the next batch's `sending` mark, so a resumed job sends the same ids.
  const waveIds = wave.flatMap(({ batch }) => run.sendable(batch));
  if (waveIds.length > 0) {
    const lookahead: string[] = [];
    let ahead = 0;
    for (let i = (wave.at(-1)?.index ?? 0) + 1; i < batches.length && ahead < 2; i++) {
      const next = batches[i] as Batch;
      if (next.state !== 'planned') continue;
      lookahead.push(...run.sendable(next));
      ahead++;
    }
    await skipUnreachable(run, waveIds, { lookahead });
  }
  for (const { index, batch } of wave) {
    if (run.sendable(batch).length === 0) {
      batch.state = 'done';
      await run.save();
      continue;
    }
    await sendBatch(run, index, batch);
    if (!batch.commandId) continue;
    const sent = { batch, sentAt: run.now(), lastReadAt: run.now() };
    ticks.commands.set(batch.commandId, sent);
    ticks.watched.add(batch);
    ticks.nextReadAt = Math.min(ticks.nextReadAt, readDueAt(ticks, sent, run.sendable(batch).length));
  }
}

/** Instances sent a command that has not finished: the slots in use. */
function openInstances(run: Run): number {
  let open = 0;
  for (const batch of run.batches)
    if (batch.state === 'sent' || batch.state === 'sending') open += openIn(run, batch);
  return open;
}

/**
 * Splits a planned batch so its first `take` sendable ids stay at `index` and the rest follow as a
 * planned batch of their own. Only planned batches follow a planned one, and none of them has been
 * sent under its `<job>:<index>` comment yet, so moving them up an index loses no send.
 */
function splitBatch(run: Run, index: number, take: number): void {
  const batch = run.batches[index];
  if (!batch) return;
  let kept = 0;
  let cut = 0;
  while (cut < batch.instanceIds.length && kept < take) {
    if (!run.unreachable.has(batch.instanceIds[cut] ?? '')) kept++;
    cut++;
  }
  const rest = batch.instanceIds.slice(cut);
  if (rest.length === 0) return;
  batch.instanceIds = batch.instanceIds.slice(0, cut);
  run.batches.splice(index + 1, 0, { instanceIds: rest, state: 'planned' });
}
