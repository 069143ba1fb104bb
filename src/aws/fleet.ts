import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DescribeInstanceStatusCommand,
  type DescribeInstanceStatusCommandOutput,
  DescribeInstancesCommand,
  type DescribeInstancesCommandOutput,
  type EC2Client,
  type Instance as Ec2Instance,
  paginateDescribeInstances,
  RunInstancesCommand,
  type RunInstancesCommandOutput,
  StartInstancesCommand,
  StopInstancesCommand,
  type Tag,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { awsErrorCode } from '../core/aws-errors.js';
import { awsBackoff, backoffDelay } from '../core/aws-wait.js';
import {
  type Fleet,
  type FleetInstance,
  type InstanceHealth,
  type InstanceState,
  LaunchError,
  type LaunchFailure,
  type LaunchRequest,
  type OwnerCheck,
  type Placement,
  type RenderedLaunch,
} from '../core/ports/fleet.js';
import { encodeUserData, renderUserData } from './userdata.js';

export type {
  Fleet,
  FleetInstance,
  InstanceHealth,
  InstanceState,
  LaunchFailure,
  LaunchRequest,
  OwnerCheck,
  Placement,
};

/** The EC2 side of the fleet in domain terms; no SDK type leaves this file. */

export interface FleetSettings {
  region: string;
  env: string;
  launchTemplate?: string;
  amiId?: string;
  /** The first choice; `instanceTypes` lists every choice in order when there are more. */
  instanceType: string;
  instanceTypes?: readonly string[];
  /** The first choice; `subnetIds` lists every choice in order when there are more. */
  subnetId?: string;
  subnetIds?: readonly string[];
  securityGroupId?: string;
  profileName?: string;
  /** How long a launch waits for a new instance profile to become usable; 120 s unless set. */
  profileWaitMs?: number;
}

/**
 * The placements a launch tries, in order: each instance type in each subnet, the first type in
 * every subnet before the second type. With a launch template the template's type decides, so only
 * the subnets vary.
 */
export function placements(settings: FleetSettings): Placement[] {
  const types: (string | undefined)[] = settings.launchTemplate
    ? [undefined]
    : settings.instanceTypes?.length
      ? [...settings.instanceTypes]
      : [settings.instanceType];
  const subnets: (string | undefined)[] = settings.subnetIds?.length
    ? [...settings.subnetIds]
    : [settings.subnetId];
  return types.flatMap((instanceType) =>
    subnets.map((subnetId) => ({
      ...(instanceType ? { instanceType } : {}),
      ...(subnetId ? { subnetId } : {}),
    })),
  );
}

/**
 * RunInstances' ClientToken (at most 64 ASCII characters) for one placement: the job's base token,
 * readable, and a digest of base and placement. The same job and placement always give the same
 * token, so a job retried after a crash cannot launch twice; another placement gives another token,
 * because EC2 answers IdempotentParameterMismatch to a token reused with different parameters.
 */
export function launchClientToken(base: string, placement: Placement): string {
  const digest = createHash('sha256')
    .update([base, placement.instanceType ?? '', placement.subnetId ?? ''].join('\n'))
    .digest('hex')
    .slice(0, 16);
  return `${base.slice(0, 64 - digest.length - 1)}-${digest}`;
}

/**
 * The instance ids an InvalidInstanceID.NotFound names: "The instance ID 'i-1' does not exist" or
 * "The instance IDs 'i-1, i-2' do not exist".
 */
export function notFoundInstanceIds(message: string): string[] {
  return [...new Set(message.match(/\bi-[0-9a-f]{8,17}\b/g) ?? [])];
}

/** What EC2 answers while a new instance profile is not usable yet (IAM propagates in seconds). */
const profileNotReady = /iamInstanceProfile\.(name|arn)|Invalid IAM Instance Profile/i;

function launchFailure(error: unknown): LaunchError {
  const code = awsErrorCode(error);
  const message = error instanceof Error ? error.message : '';
  if (code === 'IdempotentParameterMismatch') return new LaunchError('token-mismatch', code);
  if (code === 'InvalidParameterValue' && profileNotReady.test(message))
    return new LaunchError('profile-not-ready', code);
  if (/^Insufficient\w*Capacity$|^Unsupported$/.test(code)) return new LaunchError('no-capacity', code);
  if (/^InvalidAMIID|^InvalidLaunchTemplate/.test(code)) return new LaunchError('bad-image', code);
  if (/^(InstanceLimitExceeded|VcpuLimitExceeded)$/.test(code)) return new LaunchError('limit', code);
  return new LaunchError('other', code);
}

/**
 * Why a member's parameters may not be bound to an instance with these tags, or undefined when the
 * instance is theirs: a fleet instance of this environment, tagged with their user id. The reason is
 * for logs and admins; it may name another member's id.
 */
export function ownershipProblem(
  tags: Record<string, string | undefined>,
  userId: string,
  env: string,
): string | undefined {
  if (tags.app !== 'fleetbot') return `it is not a fleetbot instance (app=${tags.app ?? 'none'})`;
  if (tags.env !== env) return `it belongs to another environment (env=${tags.env ?? 'none'})`;
  if (tags.user !== userId) return `it belongs to another user (user=${tags.user ?? 'none'})`;
  return undefined;
}

const gone: InstanceState[] = ['shutting-down', 'terminated'];

export function createFleet(ec2: EC2Client, settings: FleetSettings): Fleet {
  const toInstance = (i: Ec2Instance, ownerId: string | undefined) => fleetInstance(i, ownerId, settings);

  return {
    async checkOwner(instanceId, userId) {
      const found = await describeOne(ec2, instanceId);
      if (!found) return { verdict: 'unknown' };
      const problem = ownershipProblem(tagMap(found.instance.Tags), userId, settings.env);
      const instance = problem ? undefined : toInstance(found.instance, found.ownerId);
      if (!instance) return { verdict: 'foreign', problem: problem ?? 'it has no user tag' };
      return gone.includes(instance.state) ? { verdict: 'gone', instance } : { verdict: 'owned', instance };
    },
    async findForUser(userId) {
      const found = await describeFleet(ec2, settings, [{ Name: 'tag:user', Values: [userId] }]);
      return found.filter((i) => !gone.includes(i.state)).sort(byLaunch)[0];
    },
    async get(instanceId) {
      const found = await describeOne(ec2, instanceId);
      const instance = found ? toInstance(found.instance, found.ownerId) : undefined;
      return instance?.env === settings.env ? instance : undefined;
    },
    list: () => describeFleet(ec2, settings, []),
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
    async launch({ bootstrap, userDataBase64, ...launch }) {
      const request: RenderedLaunch = {
        ...launch,
        userDataBase64: bootstrap ? encodeUserData(renderUserData(bootstrap)) : (userDataBase64 ?? ''),
      };
      const tried: Placement[] = [];
      let code = '';
      // Only a definite "no capacity" moves on: a launch whose answer was lost is retried by the
      // caller with the same placement and token, so it cannot launch a second instance.
      for (const placement of placements(settings)) {
        try {
          return await launchWaitingForProfile(ec2, settings, request, placement);
        } catch (error) {
          if (!(error instanceof LaunchError && error.reason === 'no-capacity')) throw error;
          tried.push(placement);
          code = error.awsCode;
        }
      }
      throw new LaunchError('no-capacity', code, tried);
    },
    async health(instanceIds) {
      const result = new Map<string, InstanceHealth>();
      // DescribeInstanceStatus takes at most 100 ids a call.
      for (let i = 0; i < instanceIds.length; i += 100)
        await describeStatus(ec2, instanceIds.slice(i, i + 100), result);
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

function fleetInstance(
  i: Ec2Instance,
  ownerId: string | undefined,
  settings: FleetSettings,
): FleetInstance | undefined {
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
}

/** One instance as EC2 describes it now, with its reservation's owner; undefined for an id EC2 does not know. */
async function describeOne(ec2: EC2Client, instanceId: string) {
  let res: DescribeInstancesCommandOutput;
  try {
    res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  } catch (error) {
    if (awsErrorCode(error).startsWith('InvalidInstanceID')) return undefined;
    throw error;
  }
  for (const r of res.Reservations ?? [])
    for (const instance of r.Instances ?? [])
      if (instance.InstanceId === instanceId) return { instance, ownerId: r.OwnerId };
  return undefined;
}

/** This environment's fleet instances that also match these filters. */
async function describeFleet(
  ec2: EC2Client,
  settings: FleetSettings,
  filters: { Name: string; Values: string[] }[],
): Promise<FleetInstance[]> {
  const fleetFilters = [
    { Name: 'tag:app', Values: ['fleetbot'] },
    { Name: 'tag:env', Values: [settings.env] },
  ];
  const out: FleetInstance[] = [];
  // A thousand at a time (EC2's most with filters): a fleet of 10,000 is never one reply parsed whole.
  for await (const page of paginateDescribeInstances(
    { client: ec2 },
    { Filters: [...fleetFilters, ...filters], MaxResults: 1000 },
  )) {
    for (const r of page.Reservations ?? [])
      for (const i of r.Instances ?? []) {
        const instance = fleetInstance(i, r.OwnerId, settings);
        if (instance) out.push(instance);
      }
  }
  return out;
}

/**
 * A new instance profile takes seconds to reach EC2, which meanwhile answers InvalidParameterValue
 * naming iamInstanceProfile: retried with backoff (same placement, so the same ClientToken) for
 * up to profileWaitMs. A wrong profile name answers the same, so the wait is bounded.
 */
async function launchWaitingForProfile(
  ec2: EC2Client,
  settings: FleetSettings,
  request: RenderedLaunch,
  placement: Placement,
): Promise<FleetInstance> {
  const started = Date.now();
  const limitMs = settings.profileWaitMs ?? 120_000;
  for (let attempt = 0; ; attempt++) {
    try {
      const launched = await runInstance(ec2, settings, request, placement);
      if (attempt > 0) request.onProfileWait?.(undefined);
      return launched;
    } catch (error) {
      if (!(error instanceof LaunchError && error.reason === 'profile-not-ready')) throw error;
      const waitedMs = Date.now() - started;
      if (waitedMs >= limitMs) throw new LaunchError(error.reason, error.awsCode, [], limitMs);
      request.onProfileWait?.(waitedMs);
      await sleep(Math.min(backoffDelay(attempt, awsBackoff, Math.random), limitMs - waitedMs));
    }
  }
}

async function runInstance(
  ec2: EC2Client,
  settings: FleetSettings,
  request: RenderedLaunch,
  placement: Placement,
): Promise<FleetInstance> {
  const tags: Tag[] = [
    { Key: 'app', Value: 'fleetbot' },
    { Key: 'managed-by', Value: 'fleetbot' },
    { Key: 'user', Value: request.userId },
    { Key: 'env', Value: settings.env },
    { Key: 'Name', Value: `fleetbot-${settings.env}-${request.userId}` },
    ...(request.version ? [{ Key: 'version', Value: request.version }] : []),
  ];
  let res: RunInstancesCommandOutput;
  try {
    res = await ec2.send(
      new RunInstancesCommand({
        MinCount: 1,
        MaxCount: 1,
        ClientToken: launchClientToken(request.clientToken, placement),
        ...(settings.launchTemplate
          ? { LaunchTemplate: { LaunchTemplateName: settings.launchTemplate, Version: '$Default' } }
          : { ImageId: settings.amiId, InstanceType: placement.instanceType as never }),
        ...(placement.subnetId ? { SubnetId: placement.subnetId } : {}),
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
  } catch (error) {
    throw launchFailure(error);
  }
  const launched = res.Instances?.[0] ? fleetInstance(res.Instances[0], res.OwnerId, settings) : undefined;
  if (!launched) throw new LaunchError('other', 'NoInstanceReturned');
  return launched;
}

/**
 * EC2's API is eventually consistent: right after RunInstances, a call naming the new instance may
 * answer InvalidInstanceID.NotFound, and DescribeInstanceStatus then fails for every id it was
 * given ("The instance ID 'i-1' does not exist", "The instance IDs 'i-1, i-2' do not exist"). See
 * https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html. The ids it names get
 * no health this time (not visible yet; their waiters keep waiting) and the rest are asked again
 * at once, so one new instance cannot cost every other waiting provision its tick. When the
 * message names none of the ids asked about, each half is asked on its own, down to single ids.
 */
async function describeStatus(
  ec2: EC2Client,
  ids: readonly string[],
  into: Map<string, InstanceHealth>,
): Promise<void> {
  const queue: string[][] = [[...ids]];
  for (let chunk = queue.shift(); chunk; chunk = queue.shift()) {
    if (chunk.length === 0) continue;
    let res: DescribeInstanceStatusCommandOutput;
    try {
      res = await ec2.send(
        new DescribeInstanceStatusCommand({ InstanceIds: chunk, IncludeAllInstances: true }),
      );
    } catch (error) {
      if (awsErrorCode(error) !== 'InvalidInstanceID.NotFound') throw error;
      const asked = chunk;
      const named = notFoundInstanceIds(error instanceof Error ? error.message : '').filter((id) =>
        asked.includes(id),
      );
      if (named.length > 0) queue.unshift(asked.filter((id) => !named.includes(id)));
      else if (asked.length > 1) {
        const half = Math.ceil(asked.length / 2);
        queue.unshift(asked.slice(0, half), asked.slice(half));
      }
      continue;
    }
    for (const s of res.InstanceStatuses ?? []) {
      if (!s.InstanceId) continue;
      into.set(s.InstanceId, {
        state: (s.InstanceState?.Name ?? 'pending') as InstanceState,
        system: s.SystemStatus?.Status ?? 'insufficient-data',
        instance: s.InstanceStatus?.Status ?? 'insufficient-data',
      });
    }
  }
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
