import { randomBytes } from 'node:crypto';
import {
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  EC2Client,
  paginateDescribeInstances,
  RunInstancesCommand,
} from '@aws-sdk/client-ec2';
import {
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createFleet, type FleetSettings } from '../../src/aws/fleet.js';
import { testAccountId, withAccount } from './aws-account.js';
import { type AwsSimulator, type FleetInstanceSpec, startAwsSimulator } from './aws-simulator.js';

const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const START = Date.parse('2030-01-01T00:00:00Z');
const now = START;
const clock = () => now;

let sim: AwsSimulator;
const clients: { destroy(): void }[] = [];

beforeAll(async () => {
  sim = await startAwsSimulator({ motoUrl: inject('motoUrl'), clock });
});

afterAll(async () => {
  for (const client of clients) client.destroy();
  await sim?.close();
});

function world(endpoint = sim.url) {
  const accountId = testAccountId();
  const config = { region: 'us-east-1', endpoint, credentials, maxAttempts: 1 };
  const ssm = withAccount(new SSMClient(config), accountId);
  const ec2 = withAccount(new EC2Client(config), accountId);
  clients.push(ssm, ec2);
  return { accountId, ssm, ec2 };
}

const settings: FleetSettings = { region: 'us-east-1', env: 'bench', instanceType: 't3.small' };

function instanceId(): string {
  return `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
}

/**
 * 2,000 instances: every 10th of another environment, every 25th not fleetbot's, every 7th
 * stopped and every 50th terminated; each member's user id is its position.
 */
function fleetOf(count: number): FleetInstanceSpec[] {
  return Array.from({ length: count }, (_, i) => ({
    instanceId: instanceId(),
    state: i % 50 === 0 ? 'terminated' : i % 7 === 0 ? 'stopped' : 'running',
    tags: {
      app: i % 25 === 0 ? 'other' : 'fleetbot',
      env: i % 10 === 0 ? 'staging' : 'bench',
      user: `U${i}`,
      Name: `fleetbot-bench-U${i}`,
    },
    launchTime: new Date(START - (count - i) * 1000),
  }));
}

const inFleet = (spec: FleetInstanceSpec) => spec.tags.app === 'fleetbot' && spec.tags.env === 'bench';

describe('AWS simulator: fleet index', () => {
  it('when 2,000 instances are indexed, then fleet.list() returns exactly the environment’s fleet, from the index and not moto', async () => {
    const { accountId, ec2 } = world();
    const specs = fleetOf(2000);
    sim.control.indexFleet(accountId, specs);
    const fleet = createFleet(ec2, settings);

    const listed = await fleet.list();

    const expected = specs.filter(inFleet);
    expect(listed.map((i) => i.id).sort()).toEqual(expected.map((s) => s.instanceId).sort());
    const sample = expected[3] as FleetInstanceSpec;
    expect(listed.find((i) => i.id === sample.instanceId)).toMatchObject({
      userId: sample.tags.user,
      env: 'bench',
      state: sample.state,
      launchedAt: sample.launchTime,
      arn: `arn:aws:ec2:us-east-1:${accountId}:instance/${sample.instanceId}`,
      tags: sample.tags,
    });
    const calls = sim.control.calls(accountId, 'DescribeInstances');
    expect(calls.length).toBeGreaterThan(0);
    expect(sim.control.fleetIndexStats(accountId)).toEqual({
      instances: 2000,
      served: { DescribeInstances: calls.length, DescribeInstanceStatus: 0 },
    });
    // moto itself never heard of them.
    const motoSide = withAccount(
      new EC2Client({ region: 'us-east-1', endpoint: inject('motoUrl'), credentials, maxAttempts: 1 }),
      accountId,
    );
    clients.push(motoSide);
    expect((await motoSide.send(new DescribeInstancesCommand({}))).Reservations ?? []).toEqual([]);
  });

  it('when the listing is paged with MaxResults, then the pages hold every match once and the last has no NextToken', async () => {
    const { accountId, ec2 } = world();
    const specs = fleetOf(2000);
    sim.control.indexFleet(accountId, specs);

    const pages: string[][] = [];
    let last: string | undefined = 'unset';
    for await (const page of paginateDescribeInstances(
      { client: ec2, pageSize: 300 },
      {
        Filters: [
          { Name: 'tag:app', Values: ['fleetbot'] },
          { Name: 'tag:env', Values: ['bench'] },
        ],
      },
    )) {
      pages.push(
        (page.Reservations ?? []).flatMap((r) => (r.Instances ?? []).map((i) => i.InstanceId ?? '')),
      );
      last = page.NextToken;
    }

    const expected = specs.filter(inFleet).map((s) => s.instanceId);
    expect(pages.slice(0, -1).every((ids) => ids.length === 300)).toBe(true);
    expect(pages.flat()).toEqual(expected);
    expect(pages.length).toBe(Math.ceil(expected.length / 300));
    expect(last).toBeUndefined();
    expect(sim.control.calls(accountId, 'DescribeInstances')).toHaveLength(pages.length);
  });

  it('when fleet.states() asks for 2,000 ids, then every state comes back, 200 ids to a call', async () => {
    const { accountId, ec2 } = world();
    const specs = fleetOf(2000);
    sim.control.indexFleet(accountId, specs);
    const fleet = createFleet(ec2, settings);
    const unknown = instanceId();

    const states = await fleet.states([...specs.map((s) => s.instanceId), unknown]);

    expect(states.size).toBe(2000);
    for (const spec of specs) expect(states.get(spec.instanceId)).toBe(spec.state);
    expect(states.has(unknown)).toBe(false);
    expect(sim.control.calls(accountId, 'DescribeInstances')).toHaveLength(Math.ceil(2001 / 200));
  });

  it('when one member’s instance is looked up, then the tag:user filter, InstanceIds and DescribeInstanceStatus answer from the index', async () => {
    const { accountId, ec2 } = world();
    const specs = fleetOf(2000);
    sim.control.indexFleet(accountId, specs);
    const fleet = createFleet(ec2, settings);
    const member = specs[11] as FleetInstanceSpec;
    const stopped = specs[14] as FleetInstanceSpec;
    const foreign = specs[20] as FleetInstanceSpec;

    expect((await fleet.findForUser('U11'))?.id).toBe(member.instanceId);
    expect(await fleet.checkOwner(member.instanceId, 'U11')).toMatchObject({ verdict: 'owned' });
    expect(await fleet.checkOwner(foreign.instanceId, 'U20')).toMatchObject({ verdict: 'foreign' });
    expect(await fleet.checkOwner(instanceId(), 'U1')).toEqual({ verdict: 'unknown' });
    expect((await fleet.get(member.instanceId))?.userId).toBe('U11');

    const health = await fleet.health([member.instanceId, stopped.instanceId]);
    expect(health.get(member.instanceId)).toEqual({ state: 'running', system: 'ok', instance: 'ok' });
    expect(health.get(stopped.instanceId)).toEqual({
      state: 'stopped',
      system: 'not-applicable',
      instance: 'not-applicable',
    });
    const runningOnly = await ec2.send(
      new DescribeInstanceStatusCommand({ InstanceIds: [member.instanceId, stopped.instanceId] }),
    );
    expect(runningOnly.InstanceStatuses?.map((s) => s.InstanceId)).toEqual([member.instanceId]);
    expect(sim.control.fleetIndexStats(accountId).served.DescribeInstanceStatus).toBe(2);
  });

  it('when a call breaks EC2’s rules, then it fails with EC2’s error codes', async () => {
    const { accountId, ec2 } = world();
    const specs = fleetOf(20);
    sim.control.indexFleet(accountId, specs);
    const [a = '', b = ''] = specs.map((s) => s.instanceId);
    const missing = [instanceId(), instanceId()];

    await expect(
      ec2.send(new DescribeInstancesCommand({ InstanceIds: [a, ...missing] })),
    ).rejects.toMatchObject({
      name: 'InvalidInstanceID.NotFound',
      message: `The instance IDs '${missing.join(', ')}' do not exist`,
    });
    await expect(
      ec2.send(new DescribeInstancesCommand({ InstanceIds: [a, b], MaxResults: 5 })),
    ).rejects.toMatchObject({ name: 'InvalidParameterCombination' });
    await expect(ec2.send(new DescribeInstancesCommand({ MaxResults: 4 }))).rejects.toMatchObject({
      name: 'InvalidParameterValue',
    });
    await expect(ec2.send(new DescribeInstancesCommand({ MaxResults: 1001 }))).rejects.toMatchObject({
      name: 'InvalidParameterValue',
    });
    const first = await ec2.send(new DescribeInstancesCommand({ MaxResults: 5 }));
    expect(first.NextToken).toBeDefined();
    await expect(
      ec2.send(
        new DescribeInstancesCommand({
          MaxResults: 5,
          NextToken: first.NextToken,
          Filters: [{ Name: 'tag:env', Values: ['bench'] }],
        }),
      ),
    ).rejects.toMatchObject({ name: 'InvalidPaginationToken' });
    await expect(
      ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'vpc-id', Values: ['vpc-1'] }] })),
    ).rejects.toMatchObject({ name: 'InvalidParameterValue', message: expect.stringContaining('vpc-id') });
  });

  it('when filters use wildcards, states and tag keys, then each narrows the listing as in EC2', async () => {
    const { accountId, ec2 } = world();
    const specs = fleetOf(200);
    sim.control.indexFleet(accountId, specs);
    const ids = async (Filters: { Name: string; Values: string[] }[]) =>
      ((await ec2.send(new DescribeInstancesCommand({ Filters }))).Reservations ?? []).flatMap((r) =>
        (r.Instances ?? []).map((i) => i.InstanceId),
      );

    expect(await ids([{ Name: 'tag:user', Values: ['U1?'] }])).toEqual(
      specs.slice(10, 20).map((s) => s.instanceId),
    );
    expect(await ids([{ Name: 'instance-state-name', Values: ['stopped', 'terminated'] }])).toEqual(
      specs.filter((s) => s.state !== 'running').map((s) => s.instanceId),
    );
    expect(await ids([{ Name: 'instance-state-code', Values: ['48'] }])).toEqual(
      specs.filter((s) => s.state === 'terminated').map((s) => s.instanceId),
    );
    expect(await ids([{ Name: 'tag-key', Values: ['missing*'] }])).toEqual([]);
    expect(await ids([{ Name: 'tag:Name', Values: ['fleetbot-bench-U19*'] }])).toHaveLength(11);
  });

  it('when instances are indexed, then they are SSM-managed and online: SendCommand takes them and stopped ones wait Delayed', async () => {
    const { accountId, ssm } = world();
    const specs = fleetOf(60);
    sim.control.indexFleet(accountId, specs);
    const running = specs.filter((s) => s.state === 'running').map((s) => s.instanceId);
    const stopped = specs.find((s) => s.state === 'stopped')?.instanceId ?? '';
    const terminated = specs.find((s) => s.state === 'terminated')?.instanceId ?? '';

    const info = await ssm.send(
      new DescribeInstanceInformationCommand({
        Filters: [{ Key: 'InstanceIds', Values: running.slice(0, 5) }],
      }),
    );
    expect(info.InstanceInformationList?.map((i) => [i.InstanceId, i.PingStatus])).toEqual(
      running.slice(0, 5).map((id) => [id, 'Online']),
    );
    const sent = await ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [...running.slice(0, 49), stopped],
      }),
    );
    const commandId = sent.Command?.CommandId ?? '';
    const status = async (id: string) =>
      (await ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: id }))).Status;
    expect(await status(running[0] ?? '')).toBe('Success');
    expect(await status(stopped)).toBe('Delayed');
    await expect(
      ssm.send(new SendCommandCommand({ DocumentName: 'AWS-RunShellScript', InstanceIds: [terminated] })),
    ).rejects.toMatchObject({ name: 'InvalidInstanceId' });
  });

  it('when an instance is indexed again, then it is replaced: a new state shows in the next read', async () => {
    const { accountId, ec2 } = world();
    const [spec] = fleetOf(2).slice(1) as [FleetInstanceSpec];
    sim.control.indexFleet(accountId, [spec]);
    const fleet = createFleet(ec2, settings);
    expect((await fleet.states([spec.instanceId])).get(spec.instanceId)).toBe('running');

    sim.control.indexFleet(accountId, [{ ...spec, state: 'stopped' }]);

    expect((await fleet.states([spec.instanceId])).get(spec.instanceId)).toBe('stopped');
    expect(sim.control.fleetIndexStats(accountId).instances).toBe(1);
  });

  it('when another account has no index, then its EC2 reads still reach moto and count nothing', async () => {
    const { accountId, ec2 } = world();
    sim.control.indexFleet(testAccountId(), fleetOf(5));
    const launched = await ec2.send(
      new RunInstancesCommand({
        ImageId: 'ami-12c6146b',
        InstanceType: 't3.small',
        MinCount: 1,
        MaxCount: 1,
      }),
    );
    const id = launched.Instances?.[0]?.InstanceId ?? '';

    const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));

    expect(out.Reservations?.[0]?.Instances?.[0]?.InstanceId).toBe(id);
    expect(sim.control.fleetIndexStats(accountId)).toEqual({
      instances: 0,
      served: { DescribeInstances: 0, DescribeInstanceStatus: 0 },
    });
  });

  it('when a fleet is indexed over HTTP, then it takes effect and a malformed one is refused', async () => {
    const { accountId, ec2 } = world();
    const [spec] = fleetOf(2).slice(1) as [FleetInstanceSpec];
    const post = (body: unknown) =>
      fetch(`${sim.url}/_sim/fleet-index`, { method: 'POST', body: JSON.stringify(body) });

    const okReply = await post({
      accountId,
      instances: [{ ...spec, launchTime: spec.launchTime?.toISOString() }],
    });
    expect(okReply.status).toBe(200);
    const bad = await post({ accountId, instances: [{ instanceId: 'i-nothex', tags: {} }] });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toContain('i-nothex');

    const listed = await createFleet(ec2, settings).list();
    expect(listed.map((i) => [i.id, i.launchedAt])).toEqual([[spec.instanceId, spec.launchTime]]);
    const stats = await fetch(`${sim.url}/_sim/fleet-index?accountId=${accountId}`);
    expect(await stats.json()).toEqual({
      instances: 1,
      served: { DescribeInstances: 1, DescribeInstanceStatus: 0 },
    });
  });
});
