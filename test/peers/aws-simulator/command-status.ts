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

export function invocationView(
  command: CommandRecord,
  invocation: InvocationRecord,
  now: number,
): InvocationView {
  const { outcome } = invocation;
  const base = { stdout: '', stderr: '', startedAt: undefined, endedAt: undefined };
  if (outcome.status === 'Undeliverable') {
    return { ...base, status: 'Failed', statusDetails: 'Undeliverable', responseCode: -1, terminal: true };
  }
  const startAt = command.requestedAt + (outcome.pendingMs ?? 0);
  const finishAt =
    outcome.status === 'InProgress'
      ? Number.POSITIVE_INFINITY
      : Math.max(startAt, command.requestedAt + (outcome.afterMs ?? 0));
  if (invocation.cancelledAt !== undefined) {
    const started = invocation.cancelledAt >= startAt ? startAt : undefined;
    return {
      ...base,
      status: 'Cancelled',
      statusDetails: 'Cancelled',
      responseCode: -1,
      terminal: true,
      startedAt: started,
      endedAt: invocation.cancelledAt,
    };
  }
  const cut = cutOff(command, invocation);
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
  if (completed < views.length) {
    return views.every((v) => v.status === 'Pending') ? result('Pending') : result('InProgress');
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
 */
function cutOff(command: CommandRecord, invocation: InvocationRecord): CutOff | undefined {
  const cuts: CutOff[] = [];
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
      endsAt: Math.max(invocation.agentLostAt, expiresAt(command)),
      status: 'TimedOut',
      statusDetails: 'DeliveryTimedOut',
    });
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
