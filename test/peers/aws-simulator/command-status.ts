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
  if (now < startAt)
    return { ...base, status: 'Pending', statusDetails: 'Pending', responseCode: -1, terminal: false };
  if (now < finishAt) {
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
 */
export function commandView(command: CommandRecord, now: number) {
  const views = command.invocations.map((inv) => invocationView(command, inv, now));
  const undeliverable = views.filter((v) => v.statusDetails === 'Undeliverable').length;
  const failed = views.filter((v) => v.statusDetails === 'Failed').length;
  const timedOut = views.filter((v) => v.statusDetails === 'ExecutionTimedOut').length;
  const cancelled = views.filter((v) => v.status === 'Cancelled').length;
  const success = views.filter((v) => v.status === 'Success').length;
  const completed = views.filter((v) => v.terminal).length;
  const counts = {
    targetCount: views.length,
    completedCount: completed,
    errorCount: failed + timedOut,
    deliveryTimedOutCount: 0,
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
  if (undeliverable === views.length) return result('Failed', 'Undeliverable');
  if (success === views.length - undeliverable) return result('Success');
  if (cancelled > 0) return result('Cancelled');
  return result('Failed', 'Incomplete');
}

function allowedErrors(maxErrors: string, targets: number): number {
  if (maxErrors.endsWith('%')) return Math.floor((Number(maxErrors.slice(0, -1)) / 100) * targets);
  return Number(maxErrors);
}
