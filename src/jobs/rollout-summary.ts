import type { AwsWaitExpired } from '../core/aws-wait.js';
import { formatElapsed } from '../core/durations.js';
import type { InvocationStatus, RunCommand } from '../core/ports/run-command.js';
import { failuresInSummary, failureThread } from './failure-list.js';
import { replyInThread } from './outboxes.js';
import type { RolloutSummary } from './rollout.js';
import { countsOf, firstLines, renderGaveUp, renderSummary } from './rollout-message.js';
import {
  documentFor,
  failing,
  lostReasons,
  planClockMarginMs,
  type Run,
  type SsmCall,
  unreachableRecord,
} from './rollout-run.js';

/**
 * The rollout's last word once nothing runs any more: its outcome, the failed instances with
 * their first lines of output, patch compliance for patch runs, and the full failure list in a
 * thread when the summary cannot hold it.
 */
export async function summarize(
  run: Run,
  owners: ReadonlyMap<string, string>,
  maxErrors: number,
): Promise<RolloutSummary> {
  const { job, request, record, batches, statuses, unreachable, total } = run;
  const counts = countsOf(statuses, total, unreachable.size);
  const failedIds = [...statuses].filter(([, s]) => failing.includes(s));
  const { failed, explained } = await describeFailed(run, failedIds, owners);
  const compliance =
    request.operation === 'deploy'
      ? undefined
      : await patchCompliance(
          batches.filter((b) => b.commandId).flatMap((b) => run.sendable(b)),
          record.startedAt,
          run.budgeted,
          run.deps.runCommand,
        );
  const outcome =
    run.halted === 'cancelled'
      ? 'cancelled'
      : failedIds.length > 0
        ? 'failed'
        : unreachable.size === total
          ? 'nothing-to-do'
          : 'succeeded';
  const summary: RolloutSummary = {
    outcome,
    total,
    counts,
    failed,
    compliance,
    ...unreachableRecord(unreachable),
  };
  await run.progress.finish(
    renderSummary(
      run.title,
      job.id,
      summary,
      failedIds.length,
      record.startedAt,
      run.halted,
      maxErrors,
      run.deliveryWaitMs,
      run.now(),
    ),
  );
  if (failedIds.length > failuresInSummary)
    for (const text of failureThread(job.id, failedIds, [...failed, ...explained], owners))
      await replyInThread(run.deps.outboxes, record.message, { text }).catch((err: unknown) =>
        run.log.warn({ err: String(err) }, 'could not post the failure list'),
      );
  run.log.info({ outcome, total, ...counts }, 'rollout finished');
  return summary;
}

/**
 * The failed instances the summary lists, with their error output (fetched for the first 20 only),
 * and the rest that a reason explains without a call.
 */
async function describeFailed(
  run: Run,
  failedIds: [string, InvocationStatus][],
  owners: ReadonlyMap<string, string>,
): Promise<{ failed: RolloutSummary['failed']; explained: RolloutSummary['failed'] }> {
  const { request, settings, batches } = run;
  // What a person needs to hear where SSM has no output to show: such instances never reported.
  const lostReason = (instanceId: string) => {
    const how = run.lost.get(instanceId);
    return how && lostReasons[how];
  };
  const reasonOf = (instanceId: string, status: InvocationStatus): string | undefined =>
    lostReason(instanceId) ??
    (run.details.get(instanceId) === 'DeliveryTimedOut'
      ? `no answer from its SSM agent within the command timeout (${formatElapsed(settings.commandTimeoutSeconds * 1000)})`
      : status === 'undeliverable'
        ? 'SSM could not reach its agent'
        : undefined);
  const failed: RolloutSummary['failed'] = [];
  // Full error output only for failed instances, and only as many as the summary shows.
  for (const [instanceId, status] of failedIds.slice(0, 20)) {
    const reason = reasonOf(instanceId, status);
    const batch = batches.find((b) => b.instanceIds.includes(instanceId));
    const inv =
      reason === undefined && batch?.commandId
        ? await run
            .budgeted(() =>
              run.deps.runCommand.invocation(
                batch.commandId ?? '',
                instanceId,
                documentFor(request, settings).step,
              ),
            )
            // The summary still lists the instance, without its output.
            .catch((err: unknown) => {
              run.log.warn({ err, instanceId }, 'could not read a failed instance output for the summary');
              return undefined;
            })
        : undefined;
    failed.push({
      instanceId,
      userId: owners.get(instanceId) ?? '?',
      status,
      output: reason ?? firstLines(inv?.output ?? ''),
    });
  }
  // Reasons cost no call, so the thread gives them for every failed instance.
  const explained = failedIds.slice(20).flatMap(([instanceId, status]) => {
    const output = reasonOf(instanceId, status);
    return output ? [{ instanceId, userId: owners.get(instanceId) ?? '?', status, output }] : [];
  });
  return { failed, explained };
}

/** Retrying the job would only wait again: it ends here, and says so where it was asked for. */
export async function gaveUp(run: Run, error: AwsWaitExpired): Promise<RolloutSummary> {
  const { total } = run;
  const counts = countsOf(run.statuses, total, run.unreachable.size);
  const notSent = run.batches
    .filter((b) => b.state === 'planned' || b.state === 'sending')
    .reduce((n, b) => n + b.instanceIds.filter((id) => !run.unreachable.has(id)).length, 0);
  run.log.warn(
    { aws: error.trouble.code, waitedMs: error.waitedMs, total, notSent },
    'rollout gave up on AWS',
  );
  await run.progress.finish(
    renderGaveUp(
      run.title,
      run.job.id,
      error,
      { total, notSent, counts, awsWaitMs: run.awsWaitMs, startedAt: run.record.startedAt },
      run.now(),
    ),
  );
  return { outcome: 'failed', total, counts, failed: [], awsGaveUp: error.message };
}

/**
 * Compliance as SSM records it per instance (DescribeInstancePatchStates, 50 ids a call), never
 * from command output: ListCommandInvocations cuts output at 2,500 characters and RunPatchBaseline's
 * Linux output may not carry the counts at all. A state that ended before this rollout started is
 * an older scan's, so the instance is named as having reported nothing fresh.
 */
async function patchCompliance(
  instanceIds: readonly string[],
  startedAt: number,
  budgeted: SsmCall,
  runCommand: RunCommand,
): Promise<NonNullable<RolloutSummary['compliance']>> {
  const compliance: NonNullable<RolloutSummary['compliance']> = {
    missing: [],
    failed: [],
    pendingReboot: [],
    unreported: [],
  };
  for (let i = 0; i < instanceIds.length; i += 50) {
    const chunk = instanceIds.slice(i, i + 50);
    const states = await budgeted(() => runCommand.patchStates(chunk));
    for (const instanceId of chunk) {
      const state = states.get(instanceId);
      if (!state || state.endedAt.getTime() < startedAt - planClockMarginMs) {
        compliance.unreported.push(instanceId);
        continue;
      }
      if (state.missing > 0) compliance.missing.push({ instanceId, count: state.missing });
      if (state.failed > 0) compliance.failed.push({ instanceId, count: state.failed });
      if (state.installedPendingReboot > 0) compliance.pendingReboot.push(instanceId);
    }
  }
  return compliance;
}
