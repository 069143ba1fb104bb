/**
 * Which instances SSM knows about, and what SendCommand does with each. moto can't say
 * (DescribeInstanceInformation is missing there), so the answer is built from moto's EC2 instances,
 * those of the account's fleet index (ec2-index.ts), and explicitly registered ones: an instance becomes managed once its first boot has reached
 * `running` and its agent has registered (`agentRegistrationMs` later), is Online while it runs and
 * its agent is online, and ConnectionLost when the agent is marked offline or the instance is not
 * running. An instance whose agent never registered (`setAgentRegistered(..., false)`) or that is
 * gone is unknown.
 */
import { page } from './pagination.js';
import { type AccountState, bootPhase, type SimulatorState } from './state.js';
import type { MotoInstance, Upstream } from './upstream.js';
import { type AwsCall, AwsError, epochSeconds } from './wire.js';

/**
 * SendCommand's rules, from InvalidInstanceId: "The following problems can cause this exception: [...]
 * SSM Agent isn't running. [...] SSM Agent isn't registered with the SSM endpoint. [...] The managed
 * node isn't in a valid state. Valid states are: Running, Pending, Stopped, and Stopping. Invalid
 * states are: Shutting-down and Terminated."
 * (https://docs.aws.amazon.com/botocore/latest/reference/services/ssm/client/exceptions/InvalidInstanceId.html)
 *
 * - `deliver`: running with its agent online; the agent picks the command up now.
 * - `delay`: a known node in a valid state that is not running (stopped, stopping, pending on a
 *   restart). Accepted, the invocation shows Delayed: "The system attempted to send the command to
 *   the managed node but wasn't successful. The system retries again." (StatusDetails of
 *   CommandInvocation, https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandInvocation.html)
 * - `reject`: running but its agent is offline ("SSM Agent isn't running"). Unknown nodes (never
 *   registered, still registering, terminated or shutting down) are not listed at all and are
 *   rejected as well.
 */
export type Delivery = 'deliver' | 'delay' | 'reject';

export interface ManagedInstance {
  instanceId: string;
  pingStatus: 'Online' | 'ConnectionLost';
  delivery: Delivery;
  /** For `delay`: when the instance will be running again, if already known (a restart under way). */
  runningFrom: number | undefined;
  lastPingAt: number;
  platformType: string;
  platformName: string;
  platformVersion: string;
  resourceType: string;
  ipAddress: string | undefined;
  computerName: string | undefined;
  tags: Record<string, string>;
}

/**
 * SSM Agent 3.3.2746.0 or later: fleetbot's documents pass the version with `interpolationType:
 * ENV_VAR`, and "Environment variables not available during execution [...] Verify SSM Agent
 * version is 3.3.2746.0 or later"
 * (https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-troubleshooting.html).
 * 3.3.3572.0 also fixed ENV_VAR interpolation of Parameter Store values
 * (https://github.com/aws/amazon-ssm-agent/releases/tag/3.3.3572.0).
 */
export const AGENT_VERSION = '3.3.3572.0';

/** A first boot hides the instance from SSM until it runs and its agent has registered. */
function registering(account: AccountState, instanceId: string, now: number): boolean {
  const boot = account.boots.get(instanceId);
  if (!boot?.firstBoot) return false;
  return now < boot.startedAt + boot.pendingMs + (boot.agentRegistrationMs ?? 0);
}

/**
 * The account's managed nodes; only those of `only` when given (a call naming its instances need
 * not have moto describe the whole account, which takes seconds with hundreds of instances).
 */
export async function managedInstances(
  deps: { state: SimulatorState; upstream: Upstream; clock: () => number },
  accountId: string,
  region: string,
  only?: readonly string[],
): Promise<ManagedInstance[]> {
  const account = deps.state.account(accountId);
  const now = deps.clock();
  const byId = new Map<string, ManagedInstance>();
  const agentOnline = (instanceId: string) => account.agents.get(instanceId)?.online !== false;
  const lastPing = (instanceId: string) => {
    const agent = account.agents.get(instanceId);
    return agent && !agent.online ? agent.since : now;
  };

  // A terminated instance is no managed node, even one a test registered: SendCommand naming it
  // fails with InvalidInstanceId, as in AWS.
  const gone = new Set<string>();
  // Indexed instances come after moto's: the index is what the account's EC2 reads answer from.
  // An indexed account that never launched through the simulator has nothing in moto to ask about,
  // which spares a fleet-wide rollout a moto round trip per SendCommand and per agent lookup.
  const skipMoto = account.fleetIndex !== undefined && account.launchedAt.size === 0;
  const wanted = only && new Set(only);
  if (wanted?.size === 0) return [];
  for (const instance of [
    ...(skipMoto ? [] : await deps.upstream.describeInstances(accountId, region, only)),
    ...indexedInstances(account, region).filter((i) => !wanted || wanted.has(i.instanceId)),
  ]) {
    if (instance.state === 'terminated' || instance.state === 'shutting-down') {
      gone.add(instance.instanceId);
      continue;
    }
    if (account.unregistered.has(instance.instanceId) || registering(account, instance.instanceId, now))
      continue;
    const boot = account.boots.get(instance.instanceId);
    const restarting = instance.state === 'running' && bootPhase(boot, now) === 'pending';
    const running = instance.state === 'running' && !restarting;
    const online = running && agentOnline(instance.instanceId);
    byId.set(instance.instanceId, {
      instanceId: instance.instanceId,
      pingStatus: online ? 'Online' : 'ConnectionLost',
      delivery: online ? 'deliver' : running ? 'reject' : 'delay',
      runningFrom: restarting && boot ? boot.startedAt + boot.pendingMs : undefined,
      lastPingAt: running ? lastPing(instance.instanceId) : now,
      // Our fleet runs Linux; moto labels its sample AMIs as windows, which says nothing about the agent.
      platformType: 'Linux',
      platformName: 'Amazon Linux',
      platformVersion: '2023',
      resourceType: 'EC2Instance',
      ipAddress: instance.privateIpAddress,
      computerName: instance.privateDnsName,
      tags: instance.tags,
    });
  }

  for (const [instanceId, info] of account.registered) {
    if (gone.has(instanceId) || account.unregistered.has(instanceId)) continue;
    if (wanted && !wanted.has(instanceId)) continue;
    const fromMoto = byId.get(instanceId);
    // Registered without a moto instance, it always runs: only its agent decides.
    const online = agentOnline(instanceId);
    byId.set(instanceId, {
      instanceId,
      pingStatus: fromMoto?.pingStatus ?? (online ? 'Online' : 'ConnectionLost'),
      delivery: fromMoto?.delivery ?? (online ? 'deliver' : 'reject'),
      runningFrom: fromMoto?.runningFrom,
      lastPingAt: fromMoto?.lastPingAt ?? lastPing(instanceId),
      platformType: info.platformType ?? 'Linux',
      platformName: info.platformName ?? 'Amazon Linux',
      platformVersion: info.platformVersion ?? '2023',
      resourceType: info.resourceType ?? 'EC2Instance',
      ipAddress: info.ipAddress ?? fromMoto?.ipAddress,
      computerName: info.computerName ?? fromMoto?.computerName,
      tags: fromMoto?.tags ?? info.tags ?? {},
    });
  }
  return [...byId.values()];
}

/** The fleet index's instances as moto would describe them; none for an account without one. */
function indexedInstances(account: AccountState, region: string): MotoInstance[] {
  const index = account.fleetIndex;
  if (!index) return [];
  return [...index.instances.values()].map((instance) => ({
    instanceId: instance.instanceId,
    state: instance.state,
    privateIpAddress: instance.privateIpAddress,
    privateDnsName: privateDnsName(instance.privateIpAddress, region),
    tags: instance.tags,
  }));
}

/**
 * EC2's private (IP-based) DNS name: ip-10-0-0-1.ec2.internal in us-east-1,
 * ip-10-0-0-1.<region>.compute.internal elsewhere
 * (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-naming.html).
 */
export function privateDnsName(privateIpAddress: string, region: string): string {
  const domain = region === 'us-east-1' ? 'ec2.internal' : `${region}.compute.internal`;
  return `ip-${privateIpAddress.replaceAll('.', '-')}.${domain}`;
}

/** The ids SendCommand rejects, in the order asked; unknown ones included. */
export function rejectedIds(instanceIds: string[], managed: Map<string, ManagedInstance>): string[] {
  return instanceIds.filter((id) => (managed.get(id)?.delivery ?? 'reject') === 'reject');
}

export function createInstanceInformationHandler(deps: {
  state: SimulatorState;
  upstream: Upstream;
  clock: () => number;
}) {
  return async (call: AwsCall) => {
    const input = call.json;
    const filters = readFilters(input);
    // Every filter narrows, so the ids one names are all the nodes that can match.
    const named = filters.find((f) => f.key === 'InstanceIds')?.values;
    const all = (await managedInstances(deps, call.accountId, call.region, named)).filter((instance) =>
      filters.every((filter) => filter.values.includes(filterValue(instance, filter.key) ?? '')),
    );
    const { items, nextToken } = page(
      all,
      input,
      { min: 5, max: 50, fallback: 10 },
      `DescribeInstanceInformation:${JSON.stringify(filters)}`,
    );
    return {
      InstanceInformationList: items.map((instance) => ({
        InstanceId: instance.instanceId,
        PingStatus: instance.pingStatus,
        LastPingDateTime: epochSeconds(instance.lastPingAt),
        AgentVersion: AGENT_VERSION,
        IsLatestVersion: false,
        PlatformType: instance.platformType,
        PlatformName: instance.platformName,
        PlatformVersion: instance.platformVersion,
        ResourceType: instance.resourceType,
        IPAddress: instance.ipAddress,
        ComputerName: instance.computerName,
        SourceId: instance.instanceId,
        SourceType: 'AWS::EC2::Instance',
      })),
      ...(nextToken ? { NextToken: nextToken } : {}),
    };
  };
}

interface InstanceFilter {
  key: string;
  values: string[];
}

const FILTER_KEYS = new Set(['InstanceIds', 'PingStatus', 'PlatformTypes', 'ResourceType', 'AgentVersion']);

/** `Filters` ({Key, Values}) and the legacy `InstanceInformationFilterList` ({key, valueSet}). */
function readFilters(input: Record<string, unknown>): InstanceFilter[] {
  const filters: InstanceFilter[] = [];
  const current = Array.isArray(input.Filters) ? input.Filters : [];
  const legacy = Array.isArray(input.InstanceInformationFilterList)
    ? input.InstanceInformationFilterList
    : [];
  for (const raw of current) filters.push({ key: String(raw?.Key ?? ''), values: strings(raw?.Values) });
  for (const raw of legacy) filters.push({ key: String(raw?.key ?? ''), values: strings(raw?.valueSet) });
  for (const filter of filters) {
    if (!FILTER_KEYS.has(filter.key) && !filter.key.startsWith('tag:')) {
      throw new AwsError('InvalidFilterKey', `The specified filter key is not valid: ${filter.key}`);
    }
    if (filter.values.length === 0) {
      throw new AwsError(
        'InvalidInstanceInformationFilterValue',
        `The filter ${filter.key} needs at least one value.`,
      );
    }
  }
  return filters;
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [];
}

function filterValue(instance: ManagedInstance, key: string): string | undefined {
  if (key.startsWith('tag:')) return instance.tags[key.slice(4)];
  switch (key) {
    case 'InstanceIds':
      return instance.instanceId;
    case 'PingStatus':
      return instance.pingStatus;
    case 'PlatformTypes':
      return instance.platformType;
    case 'ResourceType':
      return instance.resourceType;
    case 'AgentVersion':
      return AGENT_VERSION;
    default:
      return undefined;
  }
}
