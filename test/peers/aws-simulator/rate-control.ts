/**
 * Run Command's rate controls, MaxConcurrency and MaxErrors, as list scheduling: since every
 * invocation's outcome is scripted, when each one is sent follows from the send itself and the
 * records, with no clock ticking (command-status.ts derives every status from the result).
 *
 * - MaxConcurrency: "The maximum number of managed nodes that are allowed to run the command at the
 *   same time. You can specify a number such as 10 or a percentage such as 10%. The default value is
 *   50." (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html).
 *   The first N targets are sent at once; each further one, in target order, when a running one
 *   reaches a terminal status. Before it is sent an invocation is Pending ("The command hasn't been
 *   sent to the managed node", StatusDetails of CommandInvocation,
 *   https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandInvocation.html).
 *   The user guide also describes a slow start ("The queueing system delivers the command to a
 *   single instance and waits [...] before sending the command to two more instances. The system
 *   exponentially sends commands to more instances until the value of max-concurrency is met",
 *   https://docs.aws.amazon.com/systems-manager/latest/userguide/send-commands-multiple.html); it is
 *   not modelled: it would hold back a batch of 50 that fits its MaxConcurrency, which then starts
 *   whole here as before, and the steady state it ramps up to is what bounds a large command.
 * - MaxErrors: "When the command fails one more time beyond the value of MaxErrors, the systems
 *   stops sending the command to additional targets" (API_SendCommand.html); "Invocations that are
 *   already running a command when max-errors is reached are allowed to complete"
 *   (send-commands-multiple.html). Errors are Failed and Execution Timed Out ends: "Execution
 *   timeouts count against the MaxErrors limit", "Delivery timeouts don't count against the parent
 *   command's MaxErrors limit" (API_CommandInvocation.html). The targets never sent end Terminated:
 *   "The parent command exceeded its MaxErrors limit and subsequent command invocations were
 *   canceled by the system. This is a terminal state." (StatusDetails, API_CommandInvocation.html).
 */

/**
 * How many invocations may run at once. A percentage is of the target count; AWS does not document
 * how Run Command rounds it, so it is rounded down like MaxErrors percentages here, but never below
 * one (the API's pattern allows no 0 and "1%" of fewer than 100 targets must still run): the rule
 * AWS does document for a concurrency percentage elsewhere, CloudFormation StackSets'
 * MaxConcurrentPercentage ("rounds down to the next whole number [...] except in cases where
 * rounding down would result is zero. In this case, CloudFormation sets the number as one instead",
 * https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackSetOperationPreferences.html).
 */
export function concurrencyLimit(maxConcurrency: string, targets: number): number {
  if (!maxConcurrency.endsWith('%')) return Number(maxConcurrency);
  return Math.max(1, Math.floor((Number(maxConcurrency.slice(0, -1)) / 100) * targets));
}

/** How many errors a command takes before it stops sending: a count, or a percentage of its targets, rounded down. */
export function allowedErrors(maxErrors: string, targets: number): number {
  if (maxErrors.endsWith('%')) return Math.floor((Number(maxErrors.slice(0, -1)) / 100) * targets);
  return Number(maxErrors);
}

/**
 * How one invocation sent at a given moment ends: when it reaches a terminal status, and whether
 * that counts as an error; or that it is never sent, having ended while it waited (cancelled, its
 * instance gone, the command expired).
 */
export type RunEnd =
  | {
      /** Infinite when nothing ever ends it (a script that never finishes). */
      endsAt: number;
      error: boolean;
    }
  | 'ended-unsent';

export interface ListSchedule {
  /** When each target (by index) is sent; infinite for one never sent. */
  sentAt: number[];
  /** When the command passed MaxErrors and stopped sending; the targets still unsent end Terminated then. */
  stoppedAt: number | undefined;
}

/**
 * List scheduling in target order: `limit` slots, the first targets sent at `start`, each freed slot
 * taken by the next target at the moment it frees. Invocations ending at the same moment are all
 * counted before the next one is sent. One that already ended while it waited takes no slot; one
 * whose script ends the moment it is sent frees its slot again at that same moment.
 */
export function listSchedule(
  count: number,
  limit: number,
  allowed: number,
  start: number,
  run: (index: number, sentAt: number) => RunEnd,
): ListSchedule {
  const sentAt = new Array<number>(count).fill(Number.POSITIVE_INFINITY);
  const running = new EndHeap();
  let next = 0;
  let errors = 0;
  let now = start;
  const send = () => {
    const index = next++;
    const end = run(index, now);
    if (end === 'ended-unsent') return;
    sentAt[index] = now;
    running.push(end.endsAt, index, end.error);
  };
  while (next < count && running.size < limit) send();
  while (next < count) {
    const first = running.peekEnd();
    // Nothing running ever ends: the rest stay unsent (and time out undelivered when the command expires).
    if (first === undefined || !Number.isFinite(first)) break;
    now = Math.max(now, first);
    while (running.size > 0 && (running.peekEnd() ?? Number.POSITIVE_INFINITY) <= now) {
      if (running.pop()) errors++;
    }
    if (errors > allowed) return { sentAt, stoppedAt: now };
    while (next < count && running.size < limit) send();
  }
  return { sentAt, stoppedAt: undefined };
}

/** A binary min-heap of running invocations by end time, then target index (earlier targets first on ties). */
class EndHeap {
  private ends: number[] = [];
  private indexes: number[] = [];
  private errors: boolean[] = [];

  get size(): number {
    return this.ends.length;
  }

  peekEnd(): number | undefined {
    return this.ends[0];
  }

  push(end: number, index: number, error: boolean): void {
    this.ends.push(end);
    this.indexes.push(index);
    this.errors.push(error);
    let i = this.ends.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Removes the earliest end; returns whether it was an error. */
  pop(): boolean {
    const error = this.errors[0] ?? false;
    const last = this.ends.length - 1;
    this.swap(0, last);
    this.ends.pop();
    this.indexes.pop();
    this.errors.pop();
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < this.ends.length && this.before(left, least)) least = left;
      if (right < this.ends.length && this.before(right, least)) least = right;
      if (least === i) break;
      this.swap(i, least);
      i = least;
    }
    return error;
  }

  private before(a: number, b: number): boolean {
    const ea = this.ends[a] as number;
    const eb = this.ends[b] as number;
    return ea < eb || (ea === eb && (this.indexes[a] as number) < (this.indexes[b] as number));
  }

  private swap(a: number, b: number): void {
    [this.ends[a], this.ends[b]] = [this.ends[b] as number, this.ends[a] as number];
    [this.indexes[a], this.indexes[b]] = [this.indexes[b] as number, this.indexes[a] as number];
    [this.errors[a], this.errors[b]] = [this.errors[b] as boolean, this.errors[a] as boolean];
  }
}
