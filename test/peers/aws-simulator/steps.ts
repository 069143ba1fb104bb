/**
 * An invocation seen step by step (ListCommandInvocations' CommandPlugins, GetCommandInvocation's
 * PluginName). The scripted step shows the invocation itself; a step skipped by its precondition
 * ends Success with the agent's skip message once the agent reaches it: steps before the scripted
 * one as it starts, steps after it once it has run to its end.
 */
import type { InvocationView } from './command-status.js';
import { skippedStepOutput } from './documents.js';
import type { InvocationRecord, StepRecord } from './state.js';

export interface StepView extends InvocationView {
  name: string;
}

export function stepViews(invocation: InvocationRecord, view: InvocationView): StepView[] {
  const scripted = invocation.steps.findIndex((step) => step.skippedFor === undefined);
  const ranToEnd = view.status === 'Success' || view.statusDetails === 'Failed';
  return invocation.steps.map((step, index) => {
    if (index === scripted) return { ...view, name: step.name };
    const reachedAt = index < scripted ? view.startedAt : ranToEnd ? view.endedAt : undefined;
    return { ...(reachedAt === undefined ? notReached(view) : skipped(step, reachedAt)), name: step.name };
  });
}

function skipped(step: StepRecord, at: number): InvocationView {
  return {
    status: 'Success',
    statusDetails: 'Success',
    responseCode: 0,
    terminal: true,
    startedAt: at,
    endedAt: at,
    stdout: skippedStepOutput(step),
    stderr: '',
  };
}

/** A step the agent has not reached: waiting while the invocation is open, else ended with it. */
function notReached(view: InvocationView): InvocationView {
  const waiting = view.status === 'InProgress' ? 'Pending' : view.status;
  const status = view.terminal ? view.status : waiting;
  const statusDetails = view.terminal ? view.statusDetails : waiting;
  return { ...view, status, statusDetails, responseCode: -1, startedAt: undefined, stdout: '', stderr: '' };
}

/**
 * CommandPlugin's Status has fewer values than an invocation's ("Pending | InProgress | Success |
 * TimedOut | Cancelled | Failed", https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandPlugin.html):
 * a Delayed step has not been sent yet, a Cancelling one still runs; StatusDetails keeps the detail.
 */
export function pluginStatus(status: string): string {
  if (status === 'Delayed') return 'Pending';
  if (status === 'Cancelling') return 'InProgress';
  return status;
}
