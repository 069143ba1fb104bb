import {
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  type EC2Client,
  type Instance as Ec2Instance,
  paginateDescribeInstances,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  type Tag,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { awsErrorCode } from './transient.js';

/** The EC2 side of the fleet in domain terms; no SDK type leaves this file. */

export type InstanceState = 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';

export interface FleetInstance {
  id: string;
  arn: string;
  userId: string;
  state: InstanceState;
  /** When it was last stopped or terminated by a user, where EC2 says (its StateTransitionReason). */
  stateChangedAt?: Date;
  launchedAt?: Date;
  version?: string;
  env?: string;
  tags: Record<string, string | undefined>;
}

export interface InstanceHealth {
  state: InstanceState;
  /** `ok`, `initializing`, `impaired`, `insufficient-data` or `not-applicable`. */
  system: string;
  instance: string;
}

export interface LaunchRequest {
  userId: string;
  /** Derived from the job, so a retried job cannot launch a second instance on real AWS. */
  clientToken: string;
  userDataBase64: string;
  version?: string;
}

export interface FleetSettings {
  region: string;
  env: string;
  launchTemplate?: string;
  amiId?: string;
  instanceType: string;
  subnetId?: string;
  securityGroupId?: string;
  profileName?: string;
}

/** Launch failures a person can act on, told apart from everything else. */
export class LaunchError extends Error {
  constructor(
    readonly reason: 'no-capacity' | 'bad-image' | 'limit' | 'other',
    readonly awsCode: string,
  ) {
    super(`launch failed: ${reason} (${awsCode})`);
    this.name = 'LaunchError';
  }
}

export interface Fleet {
  /** The member's instance that is not terminated (or on its way), if any. */
  findForUser(userId: string): Promise<FleetInstance | undefined>;
  get(instanceId: string): Promise<FleetInstance | undefined>;
  list(): Promise<FleetInstance[]>;
  /**
   * The state of each of these fleet instances now, in one DescribeInstances per 200 ids. An id
   * missing from the answer is gone: EC2 lists terminated instances for about an hour, then not.
   */
  states(instanceIds: readonly string[]): Promise<Map<string, InstanceState>>;
  launch(request: LaunchRequest): Promise<FleetInstance>;
  /** One DescribeInstanceStatus for all ids, however many provisions are waiting. */
  health(instanceIds: readonly string[]): Promise<Map<string, InstanceHealth>>;
  stop(instanceId: string): Promise<void>;
  start(instanceId: string): Promise<void>;
  terminate(instanceId: string): Promise<void>;
}

const gone: InstanceState[] = ['shutting-down', 'terminated'];

export function createFleet(ec2: EC2Client, settings: FleetSettings): Fleet {
  const fleetFilters = [
    { Name: 'tag:app', Values: ['fleetbot'] },
    { Name: 'tag:env', Values: [settings.env] },
  ];
  const toInstance = (i: Ec2Instance, ownerId: string | undefined): FleetInstance | undefined => {
    const tags = tagMap(i.Tags);
    if (!i.InstanceId || !tags.user) return undefined;
    return {
      id: i.InstanceId,
      arn: `arn:aws:ec2:${settings.region}:${ownerId ?? 'unknown'}:instance/${i.InstanceId}`,
      userId: tags.user,
      state: (i.State?.Name ?? 'pending') as InstanceState,
      stateChangedAt: transitionTime(i.StateTransitionReason),
      launchedAt: i.LaunchTime,
      version: tags.version,
      env: tags.env,
      tags,
    };
  };
  const describe = async (filters: { Name: string; Values: string[] }[]) => {
    const out: FleetInstance[] = [];
    for await (const page of paginateDescribeInstances(
      { client: ec2 },
      { Filters: [...fleetFilters, ...filters] },
    )) {
      for (const r of page.Reservations ?? [])
        for (const i of r.Instances ?? []) {
          const instance = toInstance(i, r.OwnerId);
          if (instance) out.push(instance);
        }
    }
    return out;
  };

  return {
    async findForUser(userId) {
      const found = await describe([{ Name: 'tag:user', Values: [userId] }]);
      return found.filter((i) => !gone.includes(i.state)).sort(byLaunch)[0];
    },
    async get(instanceId) {
      try {
        const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
        const r = res.Reservations?.[0];
        const i = r?.Instances?.[0];
        const instance = i ? toInstance(i, r?.OwnerId) : undefined;
        return instance?.env === settings.env ? instance : undefined;
      } catch (error) {
        if (error instanceof Error && error.name.startsWith('InvalidInstanceID')) return undefined;
        throw error;
      }
    },
    list: () => describe([]),
    async states(instanceIds) {
      const states = new Map<string, InstanceState>();
      // A filter rather than InstanceIds: an id EC2 no longer knows would fail the whole call. No
      // fleet tag filters: an instance retagged mid-rollout still exists.
      for (let i = 0; i < instanceIds.length; i += filterValuesPerCall) {
        const Filters = [{ Name: 'instance-id', Values: instanceIds.slice(i, i + filterValuesPerCall) }];
        for await (const page of paginateDescribeInstances({ client: ec2 }, { Filters }))
          for (const r of page.Reservations ?? [])
            for (const instance of r.Instances ?? [])
              if (instance.InstanceId)
                states.set(instance.InstanceId, (instance.State?.Name ?? 'pending') as InstanceState);
      }
      return states;
    },
    async launch(request) {
      const tags: Tag[] = [
        { Key: 'app', Value: 'fleetbot' },
        { Key: 'managed-by', Value: 'fleetbot' },
        { Key: 'user', Value: request.userId },
        { Key: 'env', Value: settings.env },
        { Key: 'Name', Value: `fleetbot-${settings.env}-${request.userId}` },
        ...(request.version ? [{ Key: 'version', Value: request.version }] : []),
      ];
      try {
        const res = await ec2.send(
          new RunInstancesCommand({
            MinCount: 1,
            MaxCount: 1,
            ClientToken: request.clientToken,
            ...(settings.launchTemplate
              ? { LaunchTemplate: { LaunchTemplateName: settings.launchTemplate, Version: '$Default' } }
              : { ImageId: settings.amiId, InstanceType: settings.instanceType as never }),
            ...(settings.subnetId ? { SubnetId: settings.subnetId } : {}),
            ...(settings.securityGroupId ? { SecurityGroupIds: [settings.securityGroupId] } : {}),
            ...(settings.profileName ? { IamInstanceProfile: { Name: settings.profileName } } : {}),
            // Always, even with a launch template: no IMDSv1, and no hop past the instance itself.
            MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled' },
            UserData: request.userDataBase64,
            TagSpecifications: [
              { ResourceType: 'instance', Tags: tags },
              { ResourceType: 'volume', Tags: tags },
            ],
          }),
        );
        const launched = res.Instances?.[0] ? toInstance(res.Instances[0], res.OwnerId) : undefined;
        if (!launched) throw new LaunchError('other', 'NoInstanceReturned');
        return launched;
      } catch (error) {
        if (error instanceof LaunchError) throw error;
        const code = awsErrorCode(error);
        throw new LaunchError(
          /InsufficientInstanceCapacity|Unsupported|InsufficientCapacity/.test(code)
            ? 'no-capacity'
            : /InvalidAMIID|InvalidLaunchTemplate|InvalidParameterValue/.test(code)
              ? 'bad-image'
              : /InstanceLimitExceeded|VcpuLimitExceeded/.test(code)
                ? 'limit'
                : 'other',
          code,
        );
      }
    },
    async health(instanceIds) {
      const result = new Map<string, InstanceHealth>();
      // DescribeInstanceStatus takes at most 100 ids a call.
      for (let i = 0; i < instanceIds.length; i += 100) {
        const res = await ec2.send(
          new DescribeInstanceStatusCommand({
            InstanceIds: instanceIds.slice(i, i + 100),
            IncludeAllInstances: true,
          }),
        );
        for (const s of res.InstanceStatuses ?? []) {
          if (!s.InstanceId) continue;
          result.set(s.InstanceId, {
            state: (s.InstanceState?.Name ?? 'pending') as InstanceState,
            system: s.SystemStatus?.Status ?? 'insufficient-data',
            instance: s.InstanceStatus?.Status ?? 'insufficient-data',
          });
        }
      }
      return result;
    },
    async stop(instanceId) {
      await ec2.send(new StopInstancesCommand({ InstanceIds: [instanceId] }));
    },
    async start(instanceId) {
      await ec2.send(new StartInstancesCommand({ InstanceIds: [instanceId] }));
    },
    async terminate(instanceId) {
      await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
    },
  };
}

// EC2 takes at most 200 values in one filter.
const filterValuesPerCall = 200;

/** "User initiated (2024-05-23 17:27:18 GMT)": EC2 dates the transitions users start. */
function transitionTime(reason: string | undefined): Date | undefined {
  const m = /\((\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)/.exec(reason ?? '');
  return m ? new Date(`${m[1]}T${m[2]}Z`) : undefined;
}

function tagMap(tags: Tag[] | undefined): Record<string, string | undefined> {
  return Object.fromEntries((tags ?? []).map((t) => [t.Key ?? '', t.Value]));
}

function byLaunch(a: FleetInstance, b: FleetInstance): number {
  return (a.launchedAt?.getTime() ?? 0) - (b.launchedAt?.getTime() ?? 0);
}
