/**
 * Which instances SSM knows about. moto can't say (DescribeInstanceInformation is missing there),
 * so the answer is built from moto's EC2 instances plus explicitly registered ones: an instance
 * becomes managed once it has finished its first boot, is Online while it runs and its agent is
 * online, and ConnectionLost when the agent is marked offline or the instance is stopped.
 */
import { page } from './pagination.js';
import { bootPhase, type SimulatorState } from './state.js';
import type { Upstream } from './upstream.js';
import { type AwsCall, AwsError, epochSeconds } from './wire.js';

export interface ManagedInstance {
  instanceId: string;
  pingStatus: 'Online' | 'ConnectionLost';
  /** Whether SendCommand accepts it: a stopped instance is rejected, an offline agent is not. */
  acceptsCommands: boolean;
  lastPingAt: number;
  platformType: string;
  platformName: string;
  platformVersion: string;
  resourceType: string;
  ipAddress: string | undefined;
  computerName: string | undefined;
  tags: Record<string, string>;
}

const AGENT_VERSION = '3.3.1142.0';

export async function managedInstances(
  deps: { state: SimulatorState; upstream: Upstream; clock: () => number },
  accountId: string,
  region: string,
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
  for (const instance of await deps.upstream.describeInstances(accountId, region)) {
    if (instance.state === 'terminated' || instance.state === 'shutting-down') {
      gone.add(instance.instanceId);
      continue;
    }
    const boot = account.boots.get(instance.instanceId);
    const phase = bootPhase(boot, now);
    if (phase === 'pending' && boot?.firstBoot) continue;
    const running = instance.state === 'running' && phase !== 'pending';
    byId.set(instance.instanceId, {
      instanceId: instance.instanceId,
      pingStatus: running && agentOnline(instance.instanceId) ? 'Online' : 'ConnectionLost',
      acceptsCommands: running,
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
    if (gone.has(instanceId)) continue;
    const fromMoto = byId.get(instanceId);
    byId.set(instanceId, {
      instanceId,
      pingStatus: agentOnline(instanceId) ? 'Online' : 'ConnectionLost',
      acceptsCommands: true,
      lastPingAt: lastPing(instanceId),
      platformType: info.platformType ?? 'Linux',
      platformName: info.platformName ?? 'Amazon Linux',
      platformVersion: info.platformVersion ?? '2023',
      resourceType: info.resourceType ?? 'EC2Instance',
      ipAddress: info.ipAddress ?? fromMoto?.ipAddress,
      computerName: info.computerName ?? fromMoto?.computerName,
      tags: fromMoto?.tags ?? {},
    });
  }
  return [...byId.values()];
}

export function createInstanceInformationHandler(deps: {
  state: SimulatorState;
  upstream: Upstream;
  clock: () => number;
}) {
  return async (call: AwsCall) => {
    const input = call.json;
    const filters = readFilters(input);
    const all = (await managedInstances(deps, call.accountId, call.region)).filter((instance) =>
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
