/**
 * An invocation accepted for a stopped (or stopping, or restarting) instance waits as Delayed: SSM
 * keeps retrying, and the agent picks the command up once the instance runs again, if that happens
 * before the command expires (command-status.ts ends it DeliveryTimedOut otherwise). These helpers
 * fix the moment of that pickup, from which the invocation's script timeline is measured.
 */
import { openInvocations } from './command-status.js';
import type { AccountState } from './state.js';

/**
 * The instance was started and will be running at `runningAt` (after its boot's pending phase). An
 * agent that is marked offline picks nothing up until it is back (`agentBack`).
 */
export function instanceStarted(account: AccountState, instanceId: string, runningAt: number, now: number) {
  for (const invocation of openInvocations(account.commands, instanceId, now)) {
    if (invocation.delayed && invocation.pickedUpAt === undefined) invocation.pickedUpAt = runningAt;
  }
}

/** The agent is online again: a Delayed invocation waiting on it is picked up no earlier than now. */
export function agentBack(account: AccountState, instanceId: string, now: number) {
  for (const invocation of openInvocations(account.commands, instanceId, now)) {
    if (invocation.delayed && invocation.pickedUpAt !== undefined && invocation.agentLostAt !== undefined)
      invocation.pickedUpAt = Math.max(invocation.pickedUpAt, now);
  }
}
