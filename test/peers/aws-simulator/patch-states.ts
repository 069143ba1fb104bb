/**
 * DescribeInstancePatchStates, which moto lacks: Patch Manager's high-level patch state per managed
 * node, as the node's last successful AWS-RunPatchBaseline run (Scan or Install) reported it. The
 * counts come from that invocation's scripted `patchState`; a run that failed, timed out, was
 * cancelled or never ran reported nothing, so the state before it stands.
 *
 * Request limits from the API model (botocore ssm 2014-11-06 service-2.json, the source of
 * https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DescribeInstancePatchStates.html):
 * InstanceIds is required, 0 to 50 ids; MaxResults (PatchComplianceMaxResults) is 10 to 100. The
 * operation's only errors are InternalServerError and InvalidNextToken, so it cannot fail on an id
 * without patch state: such an instance is simply absent from the answer.
 */
import { invocationView } from './command-status.js';
import { PATCH_BASELINE } from './documents.js';
import { page } from './pagination.js';
import { INSTANCE_ID } from './send-command-input.js';
import type { CommandRecord, InvocationRecord, SimulatorState } from './state.js';
import { type AwsCall, epochSeconds, validationError } from './wire.js';

const MAX_INSTANCE_IDS = 50;
/** The default patch baseline the fleet's instances are patched against (`pb-` and 17 hex digits, as AWS's are). */
export const BASELINE_ID = 'pb-0c10e65780a1b2c3d';

interface PatchRun {
  command: CommandRecord;
  invocation: InvocationRecord;
  startedAt: number;
  endedAt: number;
}

export function createPatchStatesHandler(deps: { state: SimulatorState; clock: () => number }) {
  return async (call: AwsCall) => {
    const input = call.json;
    const instanceIds = readInstanceIds(input.InstanceIds);
    const now = deps.clock();
    const runs = successfulRuns(deps.state.account(call.accountId).commands, now);
    const states = instanceIds.flatMap((instanceId) => {
      const mine = runs.filter((run) => run.invocation.instanceId === instanceId);
      const last = mine.at(-1);
      return last ? [patchStateJson(last, mine)] : [];
    });
    const { items, nextToken } = page(
      states,
      input,
      { min: 10, max: 100, fallback: 50 },
      `DescribeInstancePatchStates:${instanceIds.join(',')}`,
    );
    return { InstancePatchStates: items, ...(nextToken ? { NextToken: nextToken } : {}) };
  };
}

function readInstanceIds(value: unknown): string[] {
  if (value === undefined || value === null)
    throw validationError('instanceIds', undefined, 'Member must not be null');
  const ids = Array.isArray(value) ? value : [value];
  if (ids.length > MAX_INSTANCE_IDS) {
    throw validationError(
      'instanceIds',
      `[${ids.join(', ')}]`,
      `Member must have length less than or equal to ${MAX_INSTANCE_IDS}`,
    );
  }
  if (ids.some((id) => typeof id !== 'string' || !INSTANCE_ID.test(id))) {
    throw validationError(
      'instanceIds',
      `[${ids.join(', ')}]`,
      `Member must satisfy constraint: [Member must satisfy regular expression pattern: ${INSTANCE_ID.source}]`,
    );
  }
  return [...new Set(ids as string[])];
}

/** Every AWS-RunPatchBaseline invocation that ended Success by now, oldest end first. */
function successfulRuns(commands: readonly CommandRecord[], now: number): PatchRun[] {
  const runs: PatchRun[] = [];
  for (const command of commands) {
    if (command.documentName !== PATCH_BASELINE) continue;
    for (const invocation of command.invocations) {
      const view = invocationView(command, invocation, now);
      if (view.status !== 'Success' || view.startedAt === undefined || view.endedAt === undefined) continue;
      runs.push({ command, invocation, startedAt: view.startedAt, endedAt: view.endedAt });
    }
  }
  return runs.sort((a, b) => a.endedAt - b.endedAt);
}

/**
 * The InstancePatchState fields (API_InstancePatchState.html): the required ones, the counts, and
 * for Install the RebootOption it ran with and, when that was NoReboot, the time of the last such
 * install. AWS-RunPatchBaseline's parameter defaults are Operation Scan and RebootOption RebootIfNeeded.
 */
function patchStateJson(last: PatchRun, history: PatchRun[]) {
  const counts = last.invocation.outcome.patchState ?? {};
  const operation = last.command.parameters.Operation?.[0] === 'Install' ? 'Install' : 'Scan';
  const rebootOption = rebootOf(last.command);
  const lastNoReboot = history
    .filter(
      (run) => run.command.parameters.Operation?.[0] === 'Install' && rebootOf(run.command) === 'NoReboot',
    )
    .at(-1);
  return {
    InstanceId: last.invocation.instanceId,
    PatchGroup: '',
    BaselineId: BASELINE_ID,
    OperationStartTime: epochSeconds(last.startedAt),
    OperationEndTime: epochSeconds(last.endedAt),
    Operation: operation,
    InstalledCount: counts.installed ?? 0,
    InstalledOtherCount: counts.installedOther ?? 0,
    InstalledPendingRebootCount: counts.installedPendingReboot ?? 0,
    InstalledRejectedCount: counts.installedRejected ?? 0,
    MissingCount: counts.missing ?? 0,
    FailedCount: counts.failed ?? 0,
    UnreportedNotApplicableCount: 0,
    NotApplicableCount: counts.notApplicable ?? 0,
    ...(operation === 'Install' ? { RebootOption: rebootOption } : {}),
    ...(lastNoReboot ? { LastNoRebootInstallOperationTime: epochSeconds(lastNoReboot.startedAt) } : {}),
  };
}

function rebootOf(command: CommandRecord): 'RebootIfNeeded' | 'NoReboot' {
  return command.parameters.RebootOption?.[0] === 'NoReboot' ? 'NoReboot' : 'RebootIfNeeded';
}
