/**
 * Eventual consistency, which moto never shows: right after a write, some reads do not see it yet.
 * A test sets how long (`setVisibilityLag`, 0 unless set) and code under test must cope.
 *
 * - SSM: "The Run Command API follows an eventual consistency model, due to the distributed nature
 *   of the system supporting the API. This means that the result of an API command you run that
 *   affects your resources might not be immediately visible to all subsequent commands you run."
 *   (GetCommandInvocation, https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetCommandInvocation.html).
 *   Here ListCommands lags behind SendCommand; an unseen CommandId gets what an unknown one gets.
 * - EC2: "If you successfully run the RunInstances command, and then immediately run another command
 *   using the instance ID that was provided in the response of RunInstances, it may return an
 *   InvalidInstanceID.NotFound error. This does not mean the instance does not exist."
 *   (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html); the error code is
 *   "InvalidInstanceID.NotFound: The specified instance does not exist. [...] This error may occur
 *   because the ID of a recently created instance has not propagated through the system."
 *   (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html). Here
 *   DescribeInstanceStatus lags behind RunInstances; an id list naming an unseen instance fails
 *   whole, with EC2's message (as moto words it for ids it does not know).
 */
import type { AccountState, CommandRecord } from './state.js';
import { AwsError } from './wire.js';

export function listedCommand(account: AccountState, command: CommandRecord, now: number): boolean {
  return now >= command.requestedAt + account.visibilityLag.listCommandsMs;
}

/** Instances RunInstances launched too recently for DescribeInstanceStatus to know them. */
export function unseenInstances(account: AccountState, now: number): Set<string> {
  const unseen = new Set<string>();
  const lag = account.visibilityLag.instanceStatusMs;
  if (lag <= 0) return unseen;
  for (const [instanceId, launchedAt] of account.launchedAt) {
    if (now < launchedAt + lag) unseen.add(instanceId);
  }
  return unseen;
}

/** Fails a call whose `InstanceId.N` list names any unseen instance, as EC2 does for unknown ids. */
export function rejectUnseen(form: URLSearchParams, unseen: Set<string>): void {
  const named = [...form].filter(([key]) => /^InstanceId\.\d+$/.test(key)).map(([, value]) => value);
  const missing = [...new Set(named.filter((id) => unseen.has(id)))];
  if (missing.length === 1)
    throw new AwsError('InvalidInstanceID.NotFound', `The instance ID '${missing[0]}' does not exist`);
  if (missing.length > 1)
    throw new AwsError('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
}
