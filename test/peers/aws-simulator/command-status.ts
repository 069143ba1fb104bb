/**
 * Run Command state is never stored as it changes: an invocation's status is derived from the
 * outcome fixed at send time and the clock, and a command's status from its invocations.
 */
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
  const { outcome } = invocation;
  const base = { stdout: '', stderr: '', startedAt: undefined, endedAt: undefined };
  const expires = expiresAt(command);
  // The script's timeline starts when the agent picks the command up; a Delayed one not picked up
  // before the command expires never starts.
  const origin = invocation.delayed ? invocation.pickedUpAt : command.requestedAt;
  const delivered = origin !== undefined && origin < expires ? origin : Number.POSITIVE_INFINITY;
  const startAt = delivered + (outcome.pendingMs ?? 0);
  const finishAt =
    outcome.status === 'InProgress'
      ? Number.POSITIVE_INFINITY
      : Math.max(startAt, delivered + (outcome.afterMs ?? 0));
  const cut = cutOff(command, invocation, startAt);
  // An agent cut off before the script's end never reports that end: only the cancel can end it.
  const reportsEnd = cut && cut.at < finishAt ? Number.POSITIVE_INFINITY : finishAt;
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
  const views = command.invocations.map((inv) => invocationView(command, inv, now));
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

function allowedErrors(maxErrors: string, targets: number): number {
  if (maxErrors.endsWith('%')) return Math.floor((Number(maxErrors.slice(0, -1)) / 100) * targets);
  return Number(maxErrors);
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
 */
function cutOff(command: CommandRecord, invocation: InvocationRecord, startAt: number): CutOff | undefined {
  const cuts: CutOff[] = [];
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
