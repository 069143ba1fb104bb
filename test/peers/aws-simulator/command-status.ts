/**
 * Run Command state is never stored as it changes: an invocation's status is derived from the
 * outcome fixed at send time and the clock, and a command's status from its invocations. A command
 * with more targets than its MaxConcurrency also has a schedule (when each target is sent, see
 * rate-control.ts), derived from the same records and kept until one of them changes.
 */
import { allowedErrors, concurrencyLimit, listSchedule } from './rate-control.js';
import type { CommandRecord, InvocationRecord } from './state.js';

export interface InvocationView {
  status: string;
  statusDetails: string;
  responseCode: number;
  terminal: boolean;
  startedAt: number | undefined;
  endedAt: number | undefined;
  stdout: string;
  stderr: string;
}

/**
 * One invocation's status at `now`. Besides Pending -> InProgress -> the scripted end:
 *
 * - Delayed, for an invocation accepted while its instance was not running: "The system attempted
 *   to send the command to the managed node but wasn't successful. The system retries again."
 *   (StatusDetails of CommandInvocation,
 *   https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandInvocation.html).
 *   Not terminal; the script runs from when the agent picks it up, or it times out undelivered.
 * - Cancelling, for a delivered invocation that CancelCommand reached: CancelCommand "Attempts to
 *   cancel the command [...]. There is no guarantee that the command will be terminated and the
 *   underlying process stopped."
 *   (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CancelCommand.html), and
 *   Cancelling is one of CommandInvocation's Status values ("Pending | InProgress | Delayed |
 *   Success | Cancelled | TimedOut | Failed | Cancelling"). So a script that ends before the cancel
 *   takes effect (`cancelDelayMs`) reports its own outcome; otherwise it ends Cancelled.
 */
export function invocationView(
  command: CommandRecord,
  invocation: InvocationRecord,
  now: number,
): InvocationView {
  return viewFrom(invocation, timeline(command, invocation, slotOf(command, invocation)), now);
}

/** Every invocation of the command at `now`, in target order, its schedule read once. */
export function invocationViews(command: CommandRecord, now: number): InvocationView[] {
  const slots = scheduleOf(command);
  return command.invocations.map((invocation) =>
    viewFrom(invocation, timeline(command, invocation, slots?.get(invocation) ?? unqueued(command)), now),
  );
}

/** When rate control sends an invocation, and when MaxErrors ended it unsent (see rate-control.ts). */
interface Slot {
  /** Infinite while nothing frees a slot for it. */
  sentAt: number;
  terminatedAt: number | undefined;
}

/** The moments an invocation's status is derived from, for one slot. */
interface Timeline {
  sentAt: number;
  /** When the agent picks the command up; infinite when it never does before the command expires. */
  delivered: number;
  startAt: number;
  finishAt: number;
  cut: CutOff | undefined;
  /** When the script's end is reported: never when the agent was cut off before it. */
  reportsEnd: number;
}

function timeline(command: CommandRecord, invocation: InvocationRecord, slot: Slot): Timeline {
  const { outcome } = invocation;
  const expires = expiresAt(command);
  // The script's timeline starts when the agent picks the command up: when it is sent, or for a
  // Delayed one when its instance runs again, if later. One not picked up before the command
  // expires never starts.
  const origin = invocation.delayed
    ? invocation.pickedUpAt === undefined
      ? undefined
      : Math.max(invocation.pickedUpAt, slot.sentAt)
    : slot.sentAt;
  const delivered = origin !== undefined && origin < expires ? origin : Number.POSITIVE_INFINITY;
  const startAt = delivered + (outcome.pendingMs ?? 0);
  const finishAt =
    outcome.status === 'InProgress'
      ? Number.POSITIVE_INFINITY
      : Math.max(startAt, delivered + (outcome.afterMs ?? 0));
  const cut = cutOff(command, invocation, startAt, slot.terminatedAt);
  // An agent cut off before the script's end never reports that end: only the cancel can end it.
  const reportsEnd = cut && cut.at < finishAt ? Number.POSITIVE_INFINITY : finishAt;
  return { sentAt: slot.sentAt, delivered, startAt, finishAt, cut, reportsEnd };
}

function viewFrom(invocation: InvocationRecord, line: Timeline, now: number): InvocationView {
  const { outcome } = invocation;
  const { sentAt, delivered, startAt, finishAt, cut, reportsEnd } = line;
  const base = { stdout: '', stderr: '', startedAt: undefined, endedAt: undefined };
  const { cancelledAt } = invocation;
  if (cancelledAt !== undefined) {
    // A script that ends before the cancel takes effect reports its own outcome.
    if (reportsEnd > cancelledAt && now >= cancelledAt) {
      return {
        ...base,
        status: 'Cancelled',
        statusDetails: 'Cancelled',
        responseCode: -1,
        terminal: true,
        startedAt: cancelledAt >= startAt ? startAt : undefined,
        endedAt: cancelledAt,
      };
    }
    const requestedAt = invocation.cancelRequestedAt ?? cancelledAt;
    if (now >= requestedAt && now < Math.min(reportsEnd, cancelledAt)) {
      return {
        ...base,
        status: 'Cancelling',
        statusDetails: 'Cancelling',
        responseCode: -1,
        terminal: false,
        startedAt: now >= startAt ? startAt : undefined,
      };
    }
  }
  if (cut && now >= cut.endsAt) {
    return {
      ...base,
      status: cut.status,
      statusDetails: cut.statusDetails,
      responseCode: -1,
      terminal: true,
      startedAt: cut.at >= startAt ? startAt : undefined,
      endedAt: cut.endsAt,
    };
  }
  // Cut off, the invocation shows what it showed at that moment: nothing reports any progress.
  const at = cut ? Math.min(now, cut.at) : now;
  // Not sent yet (rate control holds it back): "The command hasn't been sent to the managed node."
  if (at < sentAt)
    return { ...base, status: 'Pending', statusDetails: 'Pending', responseCode: -1, terminal: false };
  // An agent lost by the moment it would pick the command up (started with its agent offline) never does.
  const neverPickedUp = invocation.delayed === true && cut !== undefined && cut.at <= delivered;
  if (at < delivered || neverPickedUp)
    return { ...base, status: 'Delayed', statusDetails: 'Delayed', responseCode: -1, terminal: false };
  if (at < startAt)
    return { ...base, status: 'Pending', statusDetails: 'Pending', responseCode: -1, terminal: false };
  if (at < finishAt) {
    return {
      ...base,
      status: 'InProgress',
      statusDetails: 'InProgress',
      responseCode: -1,
      terminal: false,
      startedAt: startAt,
    };
  }
  const finished = { ...base, terminal: true, startedAt: startAt, endedAt: finishAt };
  const stdout = outcome.output ?? '';
  const stderr = outcome.errorOutput ?? '';
  switch (outcome.status) {
    case 'Success':
      return {
        ...finished,
        status: 'Success',
        statusDetails: 'Success',
        responseCode: outcome.responseCode ?? 0,
        stdout,
        stderr,
      };
    case 'Failed':
      return {
        ...finished,
        status: 'Failed',
        statusDetails: 'Failed',
        responseCode: outcome.responseCode ?? 1,
        stdout,
        stderr,
      };
    default:
      return {
        ...finished,
        status: 'TimedOut',
        statusDetails: 'ExecutionTimedOut',
        responseCode: outcome.responseCode ?? -1,
        stdout,
        stderr,
      };
  }
}

/**
 * The command's status as AWS derives it from its invocations: Undeliverable ones neither count
 * as errors nor decide success; more errors than MaxErrors make it Failed (or TimedOut when every
 * error was a timeout); fewer leave it Incomplete, which the API reports with Status Failed.
 * Delivery timeouts are not errors (ErrorCount leaves them out) but keep the command from Success;
 * more of them than MaxErrors make it TimedOut/DeliveryTimedOut.
 */
export function commandView(command: CommandRecord, now: number) {
  const views = invocationViews(command, now);
  const undeliverable = views.filter((v) => v.statusDetails === 'Undeliverable').length;
  const failed = views.filter((v) => v.statusDetails === 'Failed').length;
  const timedOut = views.filter((v) => v.statusDetails === 'ExecutionTimedOut').length;
  const deliveryTimedOut = views.filter((v) => v.statusDetails === 'DeliveryTimedOut').length;
  const cancelled = views.filter((v) => v.status === 'Cancelled').length;
  const success = views.filter((v) => v.status === 'Success').length;
  const completed = views.filter((v) => v.terminal).length;
  const counts = {
    targetCount: views.length,
    completedCount: completed,
    errorCount: failed + timedOut,
    deliveryTimedOutCount: deliveryTimedOut,
  };
  const result = (status: string, statusDetails = status) => ({
    status,
    statusDetails,
    terminal: completed === views.length,
    ...counts,
  });
  // Command Status values: "Pending | InProgress | Success | Cancelled | Failed | TimedOut |
  // Cancelling" (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_Command.html);
  // Delayed exists only as a StatusDetails value there.
  // Tags that matched no managed node leave a command with no invocations, which none can fail.
  if (views.length === 0) return result('Success');
  if (views.some((v) => v.status === 'Cancelling')) return result('Cancelling');
  if (completed < views.length) {
    if (views.every((v) => v.status === 'Pending')) return result('Pending');
    const open = views.filter((v) => !v.terminal);
    const waiting = open.every((v) => v.status === 'Delayed' || v.status === 'Pending');
    return waiting && open.some((v) => v.status === 'Delayed')
      ? result('InProgress', 'Delayed')
      : result('InProgress');
  }
  if (command.cancelRequested && cancelled > 0) return result('Cancelled');
  if (failed + timedOut > allowedErrors(command.maxErrors, views.length)) {
    return failed === 0 ? result('TimedOut', 'ExecutionTimedOut') : result('Failed');
  }
  if (deliveryTimedOut > allowedErrors(command.maxErrors, views.length))
    return result('TimedOut', 'DeliveryTimedOut');
  if (undeliverable === views.length) return result('Failed', 'Undeliverable');
  if (success === views.length - undeliverable) return result('Success');
  if (cancelled > 0) return result('Cancelled');
  return result('Failed', 'Incomplete');
}

interface CutOff {
  /** When the invocation stopped making progress. */
  at: number;
  /** When SSM gives up on it. */
  endsAt: number;
  status: string;
  statusDetails: string;
}

/**
 * What ends an invocation before its script does, the earliest end winning:
 *
 * - Its instance was terminated. SSM then ends it Undeliverable ("The command can't be delivered
 *   to the managed node. The managed node might not exist or might not be responding. [...] This
 *   is a terminal state.", StatusDetails of CommandInvocation,
 *   https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandInvocation.html),
 *   once it has noticed (`terminationNoticeMs`, 0 unless a test sets it). SSM's own `Terminated`
 *   status is something else: invocations the system cancelled after the command passed MaxErrors
 *   (https://docs.aws.amazon.com/systems-manager/latest/userguide/monitor-commands.html).
 * - Its agent went offline. It can never report, so the invocation stays as it was until the
 *   command expires: "If a command expires, it changes status to DeliveryTimedOut for all
 *   invocations that have the status InProgress, Pending, or Delayed" (ExpiresAfter of Command,
 *   https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_Command.html). AWS adds the
 *   document's execution timeout to ExpiresAfter; the simulator's ExpiresAfter is the request time
 *   plus TimeoutSeconds, and the invocation follows what ExpiresAfter says.
 * - It was never picked up before the command expired (Pending that long, or Delayed on an instance
 *   that did not run again in time): DeliveryTimedOut at expiry, for the same reason.
 * - Rate control never sent it because the command passed MaxErrors first: Terminated, which
 *   CommandInvocation's Status (with no such value) shows as Cancelled (see rate-control.ts).
 */
function cutOff(
  command: CommandRecord,
  invocation: InvocationRecord,
  startAt: number,
  terminatedAt: number | undefined,
): CutOff | undefined {
  const cuts: CutOff[] = [];
  if (terminatedAt !== undefined)
    cuts.push({ at: terminatedAt, endsAt: terminatedAt, status: 'Cancelled', statusDetails: 'Terminated' });
  const expires = expiresAt(command);
  if (invocation.instanceGoneAt !== undefined)
    cuts.push({
      at: invocation.instanceGoneAt,
      endsAt: invocation.undeliverableAt ?? invocation.instanceGoneAt,
      status: 'Failed',
      statusDetails: 'Undeliverable',
    });
  if (invocation.agentLostAt !== undefined)
    cuts.push({
      at: invocation.agentLostAt,
      endsAt: Math.max(invocation.agentLostAt, expires),
      status: 'TimedOut',
      statusDetails: 'DeliveryTimedOut',
    });
  if (startAt > expires)
    cuts.push({ at: expires, endsAt: expires, status: 'TimedOut', statusDetails: 'DeliveryTimedOut' });
  const first = cuts.sort((a, b) => a.endsAt - b.endsAt)[0];
  return first && { ...first, at: Math.min(...cuts.map((c) => c.at)) };
}

/** ExpiresAfter as the simulator reports it on the command. */
export function expiresAt(command: CommandRecord): number {
  return command.requestedAt + command.timeoutSeconds * 1000;
}

/** The invocations on this instance that have not ended yet: what an agent or instance event still changes. */
export function openInvocations(
  commands: readonly CommandRecord[],
  instanceId: string,
  now: number,
): InvocationRecord[] {
  return commands.flatMap((command) =>
    command.invocations.filter(
      (inv) => inv.instanceId === instanceId && !invocationView(command, inv, now).terminal,
    ),
  );
}

/**
 * When each invocation of a command is (or was) sent, starts and ends as things stand: derived
 * from the schedule and the records, so the moments may lie in the clock's future; undefined for
 * one that never does (a script that never ends, a target never sent).
 */
export function scheduledTimes(
  command: CommandRecord,
): { sentAt: number | undefined; startedAt: number | undefined; endedAt: number | undefined }[] {
  const slots = scheduleOf(command);
  return command.invocations.map((invocation) => {
    const slot = slots?.get(invocation) ?? unqueued(command);
    const line = timeline(command, invocation, slot);
    const endsAt = terminalAt(invocation, line);
    const sentAt = finite(slot.sentAt);
    if (Number.isFinite(endsAt)) {
      const end = viewFrom(invocation, line, endsAt);
      return { sentAt, startedAt: end.startedAt, endedAt: end.endedAt };
    }
    const started = Number.isFinite(line.startAt) ? viewFrom(invocation, line, line.startAt) : undefined;
    return { sentAt, startedAt: started?.startedAt, endedAt: undefined };
  });
}

/** A command that fits its MaxConcurrency sends every target at once, when it is requested. */
function unqueued(command: CommandRecord): Slot {
  return { sentAt: command.requestedAt, terminatedAt: undefined };
}

function slotOf(command: CommandRecord, invocation: InvocationRecord): Slot {
  return scheduleOf(command)?.get(invocation) ?? unqueued(command);
}

/** The record fields a schedule depends on besides those fixed at send time, per invocation. */
const MARKS = 7;

interface CachedSchedule {
  marks: Float64Array;
  slots: Map<InvocationRecord, Slot>;
}

const schedules = new WeakMap<CommandRecord, CachedSchedule>();

/**
 * The slots of a command with more targets than its MaxConcurrency; undefined for one that sends
 * every target at once. Kept until a record it was derived from changes (a cancel, an agent lost
 * or back, a termination, a Delayed pickup), which the marks compare exactly.
 */
function scheduleOf(command: CommandRecord): Map<InvocationRecord, Slot> | undefined {
  const count = command.invocations.length;
  if (count <= concurrencyLimit(command.maxConcurrency, count)) return undefined;
  const cached = schedules.get(command);
  if (cached && sameMarks(command, cached.marks)) return cached.slots;
  const schedule = listSchedule(
    count,
    concurrencyLimit(command.maxConcurrency, count),
    allowedErrors(command.maxErrors, count),
    command.requestedAt,
    (index, sentAt) => {
      const invocation = command.invocations[index] as InvocationRecord;
      // Cancelled, undeliverable or expired while it waited: its turn finds it over, unsent.
      const unsent = timeline(command, invocation, {
        sentAt: Number.POSITIVE_INFINITY,
        terminatedAt: undefined,
      });
      if (terminalAt(invocation, unsent) <= sentAt) return 'ended-unsent';
      const line = timeline(command, invocation, { sentAt, terminatedAt: undefined });
      const endsAt = terminalAt(invocation, line);
      const error = Number.isFinite(endsAt) && isError(viewFrom(invocation, line, endsAt));
      return { endsAt, error };
    },
  );
  const slots = new Map<InvocationRecord, Slot>();
  command.invocations.forEach((invocation, index) => {
    const sentAt = schedule.sentAt[index] ?? Number.POSITIVE_INFINITY;
    slots.set(invocation, {
      sentAt,
      terminatedAt: Number.isFinite(sentAt) ? undefined : schedule.stoppedAt,
    });
  });
  schedules.set(command, { marks: marksOf(command), slots });
  return slots;
}

/** Failed and Execution Timed Out count against MaxErrors; delivery timeouts and Undeliverable do not. */
function isError(view: InvocationView): boolean {
  return view.statusDetails === 'Failed' || view.statusDetails === 'ExecutionTimedOut';
}

/**
 * Every moment at which the invocation's status can change, as things stand: its send (under rate
 * control), pickup, start and end, a cut-off, a cancel. Its view is the same between two of them,
 * so a caller that wants each change (an event stream) need look at these moments only.
 */
export function statusMoments(command: CommandRecord, invocation: InvocationRecord): number[] {
  return momentsOf(invocation, timeline(command, invocation, slotOf(command, invocation)));
}

function momentsOf(invocation: InvocationRecord, line: Timeline): number[] {
  return [
    line.sentAt,
    line.delivered,
    line.startAt,
    line.finishAt,
    line.cut?.at,
    line.cut?.endsAt,
    invocation.cancelRequestedAt,
    invocation.cancelledAt,
  ]
    .filter((t): t is number => t !== undefined && Number.isFinite(t))
    .sort((a, b) => a - b);
}

/** When the invocation reaches a terminal status (the first moment with a terminal view); infinite when it never does. */
function terminalAt(invocation: InvocationRecord, line: Timeline): number {
  for (const at of momentsOf(invocation, line)) if (viewFrom(invocation, line, at).terminal) return at;
  return Number.POSITIVE_INFINITY;
}

function marksOf(command: CommandRecord): Float64Array {
  const marks = new Float64Array(command.invocations.length * MARKS);
  command.invocations.forEach((invocation, i) => {
    const at = i * MARKS;
    marks[at] = invocation.delayed ? 1 : 0;
    marks[at + 1] = mark(invocation.pickedUpAt);
    marks[at + 2] = mark(invocation.cancelRequestedAt);
    marks[at + 3] = mark(invocation.cancelledAt);
    marks[at + 4] = mark(invocation.agentLostAt);
    marks[at + 5] = mark(invocation.instanceGoneAt);
    marks[at + 6] = mark(invocation.undeliverableAt);
  });
  return marks;
}

function sameMarks(command: CommandRecord, marks: Float64Array): boolean {
  const { invocations } = command;
  if (marks.length !== invocations.length * MARKS) return false;
  for (let i = 0; i < invocations.length; i++) {
    const invocation = invocations[i] as InvocationRecord;
    const at = i * MARKS;
    if (
      marks[at] !== (invocation.delayed ? 1 : 0) ||
      marks[at + 1] !== mark(invocation.pickedUpAt) ||
      marks[at + 2] !== mark(invocation.cancelRequestedAt) ||
      marks[at + 3] !== mark(invocation.cancelledAt) ||
      marks[at + 4] !== mark(invocation.agentLostAt) ||
      marks[at + 5] !== mark(invocation.instanceGoneAt) ||
      marks[at + 6] !== mark(invocation.undeliverableAt)
    )
      return false;
  }
  return true;
}

/** An unset time as a number that compares equal to itself (NaN would not). */
function mark(value: number | undefined): number {
  return value ?? Number.NEGATIVE_INFINITY;
}

function finite(value: number): number | undefined {
  return Number.isFinite(value) ? value : undefined;
}
