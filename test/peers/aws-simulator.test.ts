import { randomBytes } from 'node:crypto';
import {
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  EC2Client,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import {
  CancelCommandCommand,
  type Command,
  DescribeInstanceInformationCommand,
  DescribeInstancePatchStatesCommand,
  type DescribeInstancePatchStatesCommandInput,
  GetCommandInvocationCommand,
  GetParameterCommand,
  InvalidInstanceId,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  PutParameterCommand,
  paginateDescribeInstancePatchStates,
  paginateListCommandInvocations,
  paginateListCommands,
  SendCommandCommand,
  type SendCommandCommandInput,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { testAccountId, withAccount } from './aws-account.js';
import { type AwsSimulator, startAwsSimulator } from './aws-simulator.js';

const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const START = Date.parse('2030-01-01T00:00:00Z');
let now = START;
const clock = () => now;
const advance = (ms: number) => {
  now += ms;
};

let sim: AwsSimulator;
const clients: { destroy(): void }[] = [];

beforeAll(async () => {
  sim = await startAwsSimulator({ motoUrl: inject('motoUrl'), clock });
});

afterAll(async () => {
  for (const client of clients) client.destroy();
  await sim?.close();
});

/** A fresh account per test, so nothing one test sends or scripts is seen by another. */
function world(endpoint = sim.url) {
  const accountId = testAccountId();
  const config = { region: 'us-east-1', endpoint, credentials, maxAttempts: 1 };
  const ssm = withAccount(new SSMClient(config), accountId);
  const ec2 = withAccount(new EC2Client(config), accountId);
  clients.push(ssm, ec2);
  return { accountId, ssm, ec2 };
}

async function launch(ec2: EC2Client, count: number): Promise<string[]> {
  const out = await ec2.send(
    new RunInstancesCommand({
      ImageId: 'ami-12c6146b',
      InstanceType: 't3.small',
      MinCount: count,
      MaxCount: count,
    }),
  );
  return (out.Instances ?? []).map((i) => i.InstanceId ?? '');
}

/** SSM-managed ids that need no moto instance, for fan-outs of 50+. */
function registered(accountId: string, count: number): string[] {
  return Array.from({ length: count }, () => {
    const id = `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
    sim.control.registerInstance(accountId, id);
    return id;
  });
}

async function send(ssm: SSMClient, input: Partial<SendCommandCommandInput> & { InstanceIds: string[] }) {
  const out = await ssm.send(new SendCommandCommand({ DocumentName: 'AWS-RunShellScript', ...input }));
  return out.Command?.CommandId ?? '';
}

async function invocation(ssm: SSMClient, commandId: string, instanceId: string) {
  return ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }));
}

async function commandStatus(ssm: SSMClient, commandId: string) {
  const out = await ssm.send(new ListCommandsCommand({ CommandId: commandId }));
  return out.Commands?.[0];
}

async function stateOf(ec2: EC2Client, instanceId: string) {
  const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  return out.Reservations?.[0]?.Instances?.[0]?.State;
}

describe('AWS simulator: forwarding', () => {
  it('when a call is not simulated, then it reaches moto unchanged under the same account', async () => {
    const { accountId, ssm, ec2 } = world();
    const direct = world(inject('motoUrl'));
    const directSameAccount = withAccount(
      new SSMClient({ region: 'us-east-1', endpoint: inject('motoUrl'), credentials, maxAttempts: 1 }),
      accountId,
    );
    clients.push(directSameAccount);

    await ssm.send(new PutParameterCommand({ Name: '/sim/fwd', Value: 'through-sim', Type: 'String' }));
    const viaSim = await ssm.send(new GetParameterCommand({ Name: '/sim/fwd' }));
    const viaMoto = await directSameAccount.send(new GetParameterCommand({ Name: '/sim/fwd' }));
    expect(viaSim.Parameter?.Value).toBe('through-sim');
    expect(viaMoto.Parameter?.Value).toBe('through-sim');
    await expect(direct.ssm.send(new GetParameterCommand({ Name: '/sim/fwd' }))).rejects.toMatchObject({
      name: 'ParameterNotFound',
    });

    const [id = ''] = await launch(ec2, 1);
    expect(await stateOf(ec2, id)).toEqual({ Code: 16, Name: 'running' });
    await expect(direct.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).rejects.toMatchObject({
      name: 'InvalidInstanceID.NotFound',
    });
  });
});

describe('AWS simulator: SendCommand limits', () => {
  it('when SendCommand names 51 instances, then it is rejected and 50 are accepted', async () => {
    const { accountId, ssm } = world();
    const ids = registered(accountId, 51);

    await expect(send(ssm, { InstanceIds: ids })).rejects.toMatchObject({
      name: 'ValidationException',
      message: expect.stringContaining('less than or equal to 50'),
    });
    expect((await ssm.send(new ListCommandsCommand({}))).Commands).toEqual([]);

    const commandId = await send(ssm, { InstanceIds: ids.slice(0, 50) });
    expect((await commandStatus(ssm, commandId))?.TargetCount).toBe(50);
  });

  it('when the Comment has 101 characters, then SendCommand is rejected and 100 pass', async () => {
    const { accountId, ssm } = world();
    const ids = registered(accountId, 1);

    await expect(send(ssm, { InstanceIds: ids, Comment: 'c'.repeat(101) })).rejects.toMatchObject({
      name: 'ValidationException',
    });
    const commandId = await send(ssm, { InstanceIds: ids, Comment: 'c'.repeat(100) });
    expect((await commandStatus(ssm, commandId))?.Comment).toBe('c'.repeat(100));
  });

  it('when DocumentName is missing or an instance is not SSM-managed, then SendCommand is rejected', async () => {
    const { accountId, ssm } = world();
    const ids = registered(accountId, 1);

    await expect(
      ssm.send(new SendCommandCommand({ InstanceIds: ids } as unknown as SendCommandCommandInput)),
    ).rejects.toMatchObject({
      name: 'ValidationException',
      message: expect.stringContaining('documentName'),
    });
    await expect(send(ssm, { InstanceIds: ['i-0123456789abcdef0'] })).rejects.toMatchObject({
      name: 'InvalidInstanceId',
    });
  });
});

describe('AWS simulator: scripted Run Command outcomes', () => {
  it('when nothing is scripted, then an invocation succeeds at once with empty output and the request is echoed', async () => {
    const { ssm, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);

    const out = await ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [id],
        Parameters: { commands: ['echo hi'] },
        MaxConcurrency: '10%',
        MaxErrors: '2',
        TimeoutSeconds: 600,
        Comment: 'job-1:0',
      }),
    );
    expect(out.Command).toMatchObject({
      DocumentName: 'AWS-RunShellScript',
      InstanceIds: [id],
      Parameters: { commands: ['echo hi'] },
      MaxConcurrency: '10%',
      MaxErrors: '2',
      TimeoutSeconds: 600,
      Comment: 'job-1:0',
      Status: 'Success',
      RequestedDateTime: new Date(now),
    });
    expect(out.Command?.CommandId).toMatch(/^[0-9a-f-]{36}$/);
    const got = await invocation(ssm, out.Command?.CommandId ?? '', id);
    expect(got).toMatchObject({ Status: 'Success', ResponseCode: 0, StandardOutputContent: '' });
  });

  it('when an instance is scripted to fail after 2 s, then it is InProgress until then and Failed with its output after', async () => {
    const { accountId, ssm, ec2 } = world();
    const [ok = '', bad = ''] = await launch(ec2, 2);
    sim.control.scriptRunCommand(accountId, bad, {
      status: 'Failed',
      output: 'boom',
      errorOutput: 'stack trace',
      afterMs: 2000,
      responseCode: 1,
    });

    const commandId = await send(ssm, { InstanceIds: [ok, bad] });
    expect((await invocation(ssm, commandId, ok)).Status).toBe('Success');
    expect((await invocation(ssm, commandId, bad)).Status).toBe('InProgress');
    expect((await commandStatus(ssm, commandId))?.Status).toBe('InProgress');

    advance(1999);
    expect((await invocation(ssm, commandId, bad)).Status).toBe('InProgress');
    advance(1);
    expect(await invocation(ssm, commandId, bad)).toMatchObject({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 1,
      StandardOutputContent: 'boom',
      StandardErrorContent: 'stack trace',
    });
    expect(await commandStatus(ssm, commandId)).toMatchObject({
      Status: 'Failed',
      ErrorCount: 1,
      CompletedCount: 2,
    });
  });

  it('when success is scripted after a pending phase, then the invocation goes Pending, InProgress, Success', async () => {
    const { accountId, ssm, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);
    sim.control.scriptRunCommand(accountId, '*', {
      status: 'Success',
      output: 'done',
      pendingMs: 500,
      afterMs: 3000,
    });

    const commandId = await send(ssm, { InstanceIds: [id] });
    expect((await invocation(ssm, commandId, id)).Status).toBe('Pending');
    expect((await commandStatus(ssm, commandId))?.Status).toBe('Pending');
    advance(500);
    expect((await invocation(ssm, commandId, id)).Status).toBe('InProgress');
    advance(2500);
    expect(await invocation(ssm, commandId, id)).toMatchObject({
      Status: 'Success',
      StandardOutputContent: 'done',
      ExecutionElapsedTime: 'PT2.5S',
    });
    expect((await commandStatus(ssm, commandId))?.Status).toBe('Success');
  });

  it('when TimedOut is scripted, then the invocation and the command end TimedOut', async () => {
    const { accountId, ssm, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);
    sim.control.scriptRunCommand(accountId, id, { status: 'TimedOut', afterMs: 1000 });

    const commandId = await send(ssm, { InstanceIds: [id] });
    advance(1000);
    expect(await invocation(ssm, commandId, id)).toMatchObject({
      Status: 'TimedOut',
      StatusDetails: 'ExecutionTimedOut',
    });
    expect((await commandStatus(ssm, commandId))?.Status).toBe('TimedOut');
  });

  it('when the output exceeds the API limits, then GetCommandInvocation keeps 24,000 chars and ListCommandInvocations 2,500', async () => {
    const { accountId, ssm } = world();
    const [id = ''] = registered(accountId, 1);
    sim.control.scriptRunCommand(accountId, id, { status: 'Success', output: 'x'.repeat(30_000) });

    const commandId = await send(ssm, { InstanceIds: [id] });
    expect((await invocation(ssm, commandId, id)).StandardOutputContent).toHaveLength(24_000);
    const listed = await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId, Details: true }));
    expect(listed.CommandInvocations?.[0]?.CommandPlugins?.[0]?.Output).toHaveLength(2_500);
  });

  it('when the script is a function, then it sees the document name and parameters that were sent', async () => {
    const { accountId, ssm } = world();
    const [id = ''] = registered(accountId, 1);
    sim.control.scriptRunCommand(accountId, id, (documentName, parameters) =>
      documentName === 'Fleetbot-Deploy' && parameters.version?.[0] === '1.2.3'
        ? { status: 'Success', output: `deployed ${parameters.version[0]}` }
        : { status: 'Failed', output: `unexpected ${documentName}` },
    );

    const good = await send(ssm, {
      InstanceIds: [id],
      DocumentName: 'Fleetbot-Deploy',
      Parameters: { version: ['1.2.3'] },
    });
    const bad = await send(ssm, { InstanceIds: [id], Parameters: { commands: ['true'] } });
    expect(await invocation(ssm, good, id)).toMatchObject({
      Status: 'Success',
      StandardOutputContent: 'deployed 1.2.3',
    });
    expect(await invocation(ssm, bad, id)).toMatchObject({ Status: 'Failed' });
  });

  it("when a running instance's agent is offline, then SendCommand naming it fails whole with InvalidInstanceId and the instance shows ConnectionLost", async () => {
    const { accountId, ssm, ec2 } = world();
    const [online = '', offline = ''] = await launch(ec2, 2);
    sim.control.setAgentOnline(accountId, offline, false);

    // AWS: "SSM Agent isn't running" is one of InvalidInstanceId's causes; nothing is sent anywhere.
    await expect(send(ssm, { InstanceIds: [online, offline] })).rejects.toMatchObject({
      name: 'InvalidInstanceId',
      message: `Instances [[${offline}]] not in a valid state for account ${accountId}`,
    });
    expect((await ssm.send(new ListCommandsCommand({}))).Commands).toEqual([]);
    const info = await ssm.send(new DescribeInstanceInformationCommand({}));
    const pings = Object.fromEntries(
      (info.InstanceInformationList ?? []).map((i) => [i.InstanceId, i.PingStatus]),
    );
    expect(pings).toEqual({ [online]: 'Online', [offline]: 'ConnectionLost' });

    sim.control.setAgentOnline(accountId, offline, true);
    const commandId = await send(ssm, { InstanceIds: [online, offline] });
    expect((await commandStatus(ssm, commandId))?.Status).toBe('Success');
  });

  it('when an instance is terminated under a running invocation, then the invocation ends Undeliverable and the next SendCommand naming it is rejected', async () => {
    const { accountId, ssm, ec2 } = world();
    const [done = '', doomed = ''] = await launch(ec2, 2);
    sim.control.scriptRunCommand(accountId, doomed, { status: 'Success', afterMs: 60_000 });

    const commandId = await send(ssm, { InstanceIds: [done, doomed] });
    advance(1000);
    expect((await invocation(ssm, commandId, doomed)).Status).toBe('InProgress');
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [doomed] }));
    expect(await invocation(ssm, commandId, doomed)).toMatchObject({
      Status: 'Failed',
      StatusDetails: 'Undeliverable',
      ResponseCode: -1,
    });
    // Its script would have succeeded by now; a terminated instance finishes nothing.
    advance(120_000);
    expect((await invocation(ssm, commandId, doomed)).StatusDetails).toBe('Undeliverable');
    // Undeliverable invocations do not decide the command's outcome in AWS.
    expect((await commandStatus(ssm, commandId))?.Status).toBe('Success');

    await expect(send(ssm, { InstanceIds: [done, doomed] })).rejects.toMatchObject({
      name: 'InvalidInstanceId',
      message: expect.stringContaining(doomed),
    });
  });

  it('when SSM is slow to notice a termination, then the invocation shows what it showed until then, and Undeliverable after', async () => {
    const { accountId, ssm, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);
    sim.control.scriptRunCommand(accountId, id, { status: 'Success', pendingMs: 5000, afterMs: 10_000 });
    sim.control.setTerminationNotice(accountId, 30_000);

    const commandId = await send(ssm, { InstanceIds: [id] });
    advance(1000);
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    advance(20_000);
    // It was still Pending when the instance went: it never starts, nor succeeds.
    expect((await invocation(ssm, commandId, id)).Status).toBe('Pending');
    advance(10_000);
    expect(await invocation(ssm, commandId, id)).toMatchObject({
      Status: 'Failed',
      StatusDetails: 'Undeliverable',
      ExecutionStartDateTime: '',
    });
  });

  it('when the agent goes offline under a running invocation, then it stays InProgress until the command expires and then times out undelivered', async () => {
    const { accountId, ssm, ec2 } = world();
    const [ok = '', silent = ''] = await launch(ec2, 2);
    sim.control.scriptRunCommand(accountId, silent, { status: 'Success', afterMs: 120_000 });

    const commandId = await send(ssm, { InstanceIds: [ok, silent], TimeoutSeconds: 30, MaxErrors: '1' });
    advance(5000);
    sim.control.setAgentOnline(accountId, silent, false);
    advance(24_000);
    expect((await invocation(ssm, commandId, silent)).Status).toBe('InProgress');
    advance(1000);
    expect(await invocation(ssm, commandId, silent)).toMatchObject({
      Status: 'TimedOut',
      StatusDetails: 'DeliveryTimedOut',
      ResponseCode: -1,
    });
    // Delivery timeouts are no errors, yet the command did not succeed everywhere (and more of
    // them than MaxErrors would make it TimedOut).
    expect(await commandStatus(ssm, commandId)).toMatchObject({
      Status: 'Failed',
      StatusDetails: 'Incomplete',
      ErrorCount: 0,
      DeliveryTimedOutCount: 1,
      CompletedCount: 2,
    });
    // Back online too late: the invocation stays timed out.
    sim.control.setAgentOnline(accountId, silent, true);
    advance(200_000);
    expect((await invocation(ssm, commandId, silent)).StatusDetails).toBe('DeliveryTimedOut');
  });

  it('when the agent goes offline before delivery and is back before the command expires, then the command runs as scripted', async () => {
    const { accountId, ssm, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);
    sim.control.scriptRunCommand(accountId, id, { status: 'Success', pendingMs: 2000, afterMs: 4000 });

    const commandId = await send(ssm, { InstanceIds: [id], TimeoutSeconds: 30 });
    sim.control.setAgentOnline(accountId, id, false);
    advance(10_000);
    expect((await invocation(ssm, commandId, id)).Status).toBe('Pending');
    sim.control.setAgentOnline(accountId, id, true);
    expect((await invocation(ssm, commandId, id)).Status).toBe('Success');
  });

  it('when a command is cancelled while running, then unfinished invocations become Cancelled and finished ones stay', async () => {
    const { accountId, ssm } = world();
    const [done = '', running = ''] = registered(accountId, 2);
    sim.control.scriptRunCommand(accountId, running, { status: 'InProgress' });

    const commandId = await send(ssm, { InstanceIds: [done, running] });
    advance(60_000);
    expect((await invocation(ssm, commandId, running)).Status).toBe('InProgress');
    await ssm.send(new CancelCommandCommand({ CommandId: commandId }));

    expect((await invocation(ssm, commandId, running)).Status).toBe('Cancelled');
    expect((await invocation(ssm, commandId, done)).Status).toBe('Success');
    expect((await commandStatus(ssm, commandId))?.Status).toBe('Cancelled');
  });

  it('when GetCommandInvocation names an unknown invocation, then it fails with InvocationDoesNotExist', async () => {
    const { accountId, ssm } = world();
    const [id = '', other = ''] = registered(accountId, 2);
    const commandId = await send(ssm, { InstanceIds: [id] });

    await expect(invocation(ssm, commandId, other)).rejects.toMatchObject({ name: 'InvocationDoesNotExist' });
    await expect(invocation(ssm, '00000000-0000-0000-0000-000000000000', id)).rejects.toMatchObject({
      name: 'InvocationDoesNotExist',
    });
  });
});

describe('AWS simulator: listings', () => {
  it('when sends carry comments, then ListCommands pages through them and finds one by Comment', async () => {
    const { accountId, ssm } = world();
    const [id = ''] = registered(accountId, 1);
    const sent: string[] = [];
    for (const n of [0, 1, 2, 3, 4]) sent.push(await send(ssm, { InstanceIds: [id], Comment: `job-7:${n}` }));

    const pages: Command[][] = [];
    for await (const out of paginateListCommands({ client: ssm, pageSize: 2 }, {}))
      pages.push(out.Commands ?? []);
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    const listed = pages.flat();
    expect(listed.map((c) => c.Comment)).toEqual(['job-7:4', 'job-7:3', 'job-7:2', 'job-7:1', 'job-7:0']);
    expect(listed.find((c) => c.Comment === 'job-7:2')?.CommandId).toBe(sent[2]);

    const other = world();
    expect((await other.ssm.send(new ListCommandsCommand({}))).Commands).toEqual([]);
  });

  it('when commands target 50 instances, then ListCommandInvocations returns at most 50 per page and honours a smaller page size', async () => {
    const { accountId, ssm } = world();
    const ids = registered(accountId, 50);
    const first = await send(ssm, { InstanceIds: ids });
    await send(ssm, { InstanceIds: ids });

    const pageSizes: number[] = [];
    for await (const out of paginateListCommandInvocations({ client: ssm }, {})) {
      pageSizes.push(out.CommandInvocations?.length ?? 0);
    }
    expect(pageSizes).toEqual([50, 50]);

    const small: number[] = [];
    const seen = new Set<string>();
    const input = { CommandId: first, Details: true };
    for await (const out of paginateListCommandInvocations({ client: ssm, pageSize: 20 }, input)) {
      small.push(out.CommandInvocations?.length ?? 0);
      for (const inv of out.CommandInvocations ?? []) {
        seen.add(inv.InstanceId ?? '');
        expect(inv.CommandPlugins?.[0]?.Status).toBe('Success');
      }
    }
    expect(small).toEqual([20, 20, 10]);
    expect(seen).toEqual(new Set(ids));

    await expect(ssm.send(new ListCommandInvocationsCommand({ MaxResults: 51 }))).rejects.toMatchObject({
      name: 'ValidationException',
    });
  });

  it('when instances run in moto, then DescribeInstanceInformation lists them Online, stopped ones ConnectionLost, in pages', async () => {
    const { ssm, ec2 } = world();
    const ids = await launch(ec2, 6);
    const stopped = ids[5] ?? '';
    await ec2.send(new StopInstancesCommand({ InstanceIds: [stopped] }));

    const all = await ssm.send(new DescribeInstanceInformationCommand({}));
    expect(all.InstanceInformationList).toHaveLength(6);
    expect(all.NextToken).toBeUndefined();
    const byId = new Map((all.InstanceInformationList ?? []).map((i) => [i.InstanceId, i]));
    expect(byId.get(ids[0])).toMatchObject({
      PingStatus: 'Online',
      PlatformType: 'Linux',
      ResourceType: 'EC2Instance',
    });
    expect(byId.get(stopped)?.PingStatus).toBe('ConnectionLost');

    const firstPage = await ssm.send(new DescribeInstanceInformationCommand({ MaxResults: 5 }));
    const secondPage = await ssm.send(
      new DescribeInstanceInformationCommand({ MaxResults: 5, NextToken: firstPage.NextToken }),
    );
    expect([firstPage.InstanceInformationList?.length, secondPage.InstanceInformationList?.length]).toEqual([
      5, 1,
    ]);

    const one = await ssm.send(
      new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [ids[1] ?? ''] }] }),
    );
    expect(one.InstanceInformationList?.map((i) => i.InstanceId)).toEqual([ids[1]]);
    // Stopped is a valid state for SendCommand: accepted, and Delayed until the instance runs again.
    const commandId = await send(ssm, { InstanceIds: [stopped] });
    expect((await invocation(ssm, commandId, stopped)).Status).toBe('Delayed');
  });
});

describe('AWS simulator: EC2 boot timing', () => {
  it('when boot timing is set, then a new instance is pending, then running with initializing checks, then ok', async () => {
    const { accountId, ssm, ec2 } = world();
    const [before = ''] = await launch(ec2, 1);
    sim.control.setBootTiming(accountId, { pendingMs: 30_000, initializingMs: 60_000 });
    const [id = ''] = await launch(ec2, 1);

    expect(await stateOf(ec2, id)).toEqual({ Code: 0, Name: 'pending' });
    expect(await stateOf(ec2, before)).toEqual({ Code: 16, Name: 'running' });
    const running = await ec2.send(
      new DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['running'] }] }),
    );
    expect(running.Reservations?.flatMap((r) => r.Instances ?? []).map((i) => i.InstanceId)).toEqual([
      before,
    ]);
    const statusWhilePending = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
    expect(statusWhilePending.InstanceStatuses).toEqual([]);
    const all = await ec2.send(
      new DescribeInstanceStatusCommand({ InstanceIds: [id], IncludeAllInstances: true }),
    );
    expect(all.InstanceStatuses?.[0]?.InstanceState?.Name).toBe('pending');
    await expect(send(ssm, { InstanceIds: [id] })).rejects.toMatchObject({ name: 'InvalidInstanceId' });
    const managed = () =>
      ssm
        .send(new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [id] }] }))
        .then((out) => out.InstanceInformationList?.map((i) => i.PingStatus));
    expect(await managed()).toEqual([]);

    advance(30_000);
    expect(await managed()).toEqual(['Online']);
    expect(await stateOf(ec2, id)).toEqual({ Code: 16, Name: 'running' });
    const initializing = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
    expect(initializing.InstanceStatuses?.[0]).toMatchObject({
      InstanceStatus: { Status: 'initializing' },
      SystemStatus: { Status: 'initializing' },
    });
    const okOnly = await ec2.send(
      new DescribeInstanceStatusCommand({ Filters: [{ Name: 'instance-status.status', Values: ['ok'] }] }),
    );
    expect(okOnly.InstanceStatuses?.map((s) => s.InstanceId)).toEqual([before]);
    await send(ssm, { InstanceIds: [id] });

    advance(60_000);
    const ready = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
    expect(ready.InstanceStatuses?.[0]).toMatchObject({
      InstanceStatus: { Status: 'ok' },
      SystemStatus: { Status: 'ok' },
    });
  });

  it('when a stopped instance is started, then it is pending again for pendingMs, and a running one is not', async () => {
    const { accountId, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);
    sim.control.setBootTiming(accountId, { pendingMs: 10_000, initializingMs: 0 });
    await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    expect(await stateOf(ec2, id)).toEqual({ Code: 16, Name: 'running' });

    await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));

    expect(await stateOf(ec2, id)).toEqual({ Code: 0, Name: 'pending' });
    advance(10_000);
    expect(await stateOf(ec2, id)).toEqual({ Code: 16, Name: 'running' });
  });
  it('when boot timing names an impaired instance check, then both checks initialize, then the instance check is impaired and the system check ok', async () => {
    const { accountId, ec2 } = world();
    const [before = ''] = await launch(ec2, 1);
    sim.control.setBootTiming(accountId, { pendingMs: 1_000, initializingMs: 5_000, impaired: 'instance' });
    const [id = ''] = await launch(ec2, 1);
    const checks = async () => {
      const out = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
      const status = out.InstanceStatuses?.[0];
      return [status?.InstanceStatus?.Status, status?.SystemStatus?.Status];
    };
    const listed = async (name: string, value: string) => {
      const out = await ec2.send(
        new DescribeInstanceStatusCommand({ Filters: [{ Name: name, Values: [value] }] }),
      );
      return (out.InstanceStatuses ?? []).map((s) => s.InstanceId).sort();
    };

    advance(1_000);
    expect(await checks()).toEqual(['initializing', 'initializing']);
    advance(4_999);
    expect(await checks()).toEqual(['initializing', 'initializing']);
    advance(1);
    const ready = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
    expect(ready.InstanceStatuses?.[0]).toMatchObject({
      InstanceState: { Name: 'running' },
      InstanceStatus: {
        Status: 'impaired',
        Details: [{ Name: 'reachability', Status: 'failed', ImpairedSince: new Date(now) }],
      },
      SystemStatus: { Status: 'ok', Details: [{ Name: 'reachability', Status: 'passed' }] },
    });
    expect(await listed('instance-status.status', 'impaired')).toEqual([id]);
    expect(await listed('instance-status.reachability', 'failed')).toEqual([id]);
    expect(await listed('instance-status.status', 'ok')).toEqual([before]);
    expect(await listed('system-status.status', 'ok')).toEqual([before, id].sort());
    expect(await listed('system-status.status', 'impaired')).toEqual([]);

    advance(3_600_000);
    expect(await checks()).toEqual(['impaired', 'ok']);
  });

  it('when an impaired system check is set without boot delays, then a new instance reports it at once', async () => {
    const { accountId, ec2 } = world();
    sim.control.setBootTiming(accountId, { pendingMs: 0, initializingMs: 0, impaired: 'system' });
    const [id = ''] = await launch(ec2, 1);

    expect(await stateOf(ec2, id)).toEqual({ Code: 16, Name: 'running' });
    const out = await ec2.send(
      new DescribeInstanceStatusCommand({
        Filters: [{ Name: 'system-status.status', Values: ['impaired'] }],
      }),
    );
    expect(
      out.InstanceStatuses?.map((s) => [s.InstanceId, s.InstanceStatus?.Status, s.SystemStatus?.Status]),
    ).toEqual([[id, 'ok', 'impaired']]);
  });
});

describe('AWS simulator: SendCommand reachability', () => {
  it('when ids are unknown, terminated, unregistered or on an offline agent, then SendCommand fails whole naming exactly those', async () => {
    const { accountId, ssm, ec2 } = world();
    const [ok = '', gone = '', offline = '', neverRegistered = '', stopped = ''] = await launch(ec2, 5);
    const unknown = 'i-0123456789abcdef0';
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [gone] }));
    await ec2.send(new StopInstancesCommand({ InstanceIds: [stopped] }));
    sim.control.setAgentOnline(accountId, offline, false);
    sim.control.setAgentRegistered(accountId, neverRegistered, false);

    await expect(
      send(ssm, { InstanceIds: [ok, unknown, gone, stopped, offline, neverRegistered] }),
    ).rejects.toMatchObject({
      name: 'InvalidInstanceId',
      message: `Instances [[${unknown}, ${gone}, ${offline}, ${neverRegistered}]] not in a valid state for account ${accountId}`,
    });
    expect(sim.control.invocations(accountId)).toEqual([]);
    const listed = await ssm.send(new DescribeInstanceInformationCommand({}));
    expect(listed.InstanceInformationList?.map((i) => i.InstanceId).sort()).toEqual(
      [ok, offline, stopped].sort(),
    );

    sim.control.setAgentRegistered(accountId, neverRegistered, true);
    const commandId = await send(ssm, { InstanceIds: [ok, stopped, neverRegistered] });
    expect(sim.control.invocations(accountId).map((i) => [i.instanceId, i.status])).toEqual([
      [ok, 'Success'],
      [stopped, 'Delayed'],
      [neverRegistered, 'Success'],
    ]);
    expect(await commandStatus(ssm, commandId)).toMatchObject({
      Status: 'InProgress',
      StatusDetails: 'Delayed',
    });
  });

  it('when an instance registered without moto is marked unregistered, then SSM forgets it until it is registered again', async () => {
    const { accountId, ssm } = world();
    const [id = ''] = registered(accountId, 1);
    sim.control.setAgentRegistered(accountId, id, false);

    expect((await ssm.send(new DescribeInstanceInformationCommand({}))).InstanceInformationList).toEqual([]);
    await expect(send(ssm, { InstanceIds: [id] })).rejects.toMatchObject({ name: 'InvalidInstanceId' });
    sim.control.setAgentRegistered(accountId, id, true);
    await expect(send(ssm, { InstanceIds: [id] })).resolves.toBeTruthy();
  });

  it('when a command targets a stopped instance that is never started, then it stays Delayed until the command expires and then times out undelivered', async () => {
    const { accountId, ssm, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);
    await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    sim.control.scriptRunCommand(accountId, id, { status: 'Success', output: 'never' });

    const commandId = await send(ssm, { InstanceIds: [id], TimeoutSeconds: 60 });
    expect(await invocation(ssm, commandId, id)).toMatchObject({
      Status: 'Delayed',
      StatusDetails: 'Delayed',
      ResponseCode: -1,
      ExecutionStartDateTime: '',
    });
    const listed = await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId, Details: true }));
    expect(listed.CommandInvocations?.[0]).toMatchObject({
      Status: 'Delayed',
      StatusDetails: 'Delayed',
      CommandPlugins: [{ Name: 'aws:runShellScript', Status: 'Pending', StatusDetails: 'Delayed' }],
    });
    advance(59_999);
    expect((await invocation(ssm, commandId, id)).Status).toBe('Delayed');
    advance(1);
    expect(await invocation(ssm, commandId, id)).toMatchObject({
      Status: 'TimedOut',
      StatusDetails: 'DeliveryTimedOut',
      StandardOutputContent: '',
    });
    expect(await commandStatus(ssm, commandId)).toMatchObject({
      Status: 'TimedOut',
      StatusDetails: 'DeliveryTimedOut',
      DeliveryTimedOutCount: 1,
    });
    // Started too late: the command is over.
    await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    advance(10_000);
    expect((await invocation(ssm, commandId, id)).StatusDetails).toBe('DeliveryTimedOut');
  });

  it('when a stopped instance is started before the command expires, then the agent picks it up once running and the script runs from then', async () => {
    const { accountId, ssm, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);
    await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    sim.control.scriptRunCommand(accountId, id, {
      status: 'Success',
      output: 'late but done',
      pendingMs: 1000,
      afterMs: 5000,
    });

    const commandId = await send(ssm, { InstanceIds: [id], TimeoutSeconds: 600 });
    advance(20_000);
    expect((await invocation(ssm, commandId, id)).Status).toBe('Delayed');
    sim.control.setBootTiming(accountId, { pendingMs: 10_000, initializingMs: 0 });
    await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    const pickedUp = now + 10_000;
    advance(9_999);
    expect((await invocation(ssm, commandId, id)).Status).toBe('Delayed');
    advance(1);
    expect((await invocation(ssm, commandId, id)).Status).toBe('Pending');
    advance(1000);
    expect((await invocation(ssm, commandId, id)).Status).toBe('InProgress');
    advance(4000);
    expect(await invocation(ssm, commandId, id)).toMatchObject({
      Status: 'Success',
      StandardOutputContent: 'late but done',
      ExecutionStartDateTime: new Date(pickedUp + 1000).toISOString(),
      ExecutionElapsedTime: 'PT4S',
    });
    expect((await commandStatus(ssm, commandId))?.Status).toBe('Success');
  });

  it('when a started instance’s agent is still offline, then its command stays Delayed and a cancel ends it Cancelled at once', async () => {
    const { accountId, ssm, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);
    await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    sim.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 300 });
    const commandId = await send(ssm, { InstanceIds: [id], TimeoutSeconds: 600 });
    sim.control.setAgentOnline(accountId, id, false);
    await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    advance(5_000);
    // Running as far as EC2 knows, yet nothing picked the command up.
    expect((await invocation(ssm, commandId, id)).Status).toBe('Delayed');
    await ssm.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [id] }));
    expect(await invocation(ssm, commandId, id)).toMatchObject({
      Status: 'Cancelled',
      StatusDetails: 'Cancelled',
    });
    sim.control.setAgentOnline(accountId, id, true);
  });

  it('when a command targets an instance still pending on a restart, then it is Delayed until the instance runs', async () => {
    const { accountId, ssm, ec2 } = world();
    const [id = ''] = await launch(ec2, 1);
    sim.control.setBootTiming(accountId, { pendingMs: 15_000, initializingMs: 0 });
    await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    expect(await stateOf(ec2, id)).toEqual({ Code: 0, Name: 'pending' });

    const commandId = await send(ssm, { InstanceIds: [id] });
    expect((await invocation(ssm, commandId, id)).Status).toBe('Delayed');
    advance(15_000);
    expect((await invocation(ssm, commandId, id)).Status).toBe('Success');
  });

  it('when the agent registers slowly, then SSM does not know a new instance until agentRegistrationMs after it runs, and a restart does not hide it again', async () => {
    const { accountId, ssm, ec2 } = world();
    sim.control.setBootTiming(accountId, {
      pendingMs: 1000,
      initializingMs: 5000,
      agentRegistrationMs: 20_000,
    });
    const [id = ''] = await launch(ec2, 1);
    const known = async () =>
      (await ssm.send(new DescribeInstanceInformationCommand({}))).InstanceInformationList?.map(
        (i) => i.PingStatus,
      );

    advance(1000);
    expect(await stateOf(ec2, id)).toEqual({ Code: 16, Name: 'running' });
    expect(await known()).toEqual([]);
    advance(19_999);
    expect(await known()).toEqual([]);
    await expect(send(ssm, { InstanceIds: [id] })).rejects.toMatchObject({
      name: 'InvalidInstanceId',
      message: `Instances [[${id}]] not in a valid state for account ${accountId}`,
    });
    advance(1);
    expect(await known()).toEqual(['Online']);
    await expect(send(ssm, { InstanceIds: [id] })).resolves.toBeTruthy();

    await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    expect(await known()).toEqual(['ConnectionLost']);
    advance(1000);
    expect(await known()).toEqual(['Online']);
  });

  it('when DescribeInstanceInformation answers, then AgentVersion is at least 3.3.2746.0, which ENV_VAR interpolation needs', async () => {
    const { accountId, ssm } = world();
    registered(accountId, 1);

    const out = await ssm.send(new DescribeInstanceInformationCommand({}));
    const version = (out.InstanceInformationList?.[0]?.AgentVersion ?? '').split('.').map(Number);
    const minimum = [3, 3, 2746, 0];
    const cmp = version.map((part, i) => part - (minimum[i] ?? 0)).find((d) => d !== 0) ?? 0;
    expect(version).toHaveLength(4);
    expect(cmp).toBeGreaterThanOrEqual(0);
  });
});

describe('AWS simulator: multi-step documents', () => {
  it('when AWS-RunPatchBaseline runs on Linux, then PatchLinux runs, the other steps are skipped, and GetCommandInvocation needs a step name', async () => {
    const { accountId, ssm } = world();
    const [id = ''] = registered(accountId, 1);
    sim.control.scriptRunCommand(accountId, id, {
      status: 'Success',
      output: 'MissingCount : 2',
      afterMs: 3000,
    });

    const commandId = await send(ssm, {
      InstanceIds: [id],
      DocumentName: 'AWS-RunPatchBaseline',
      Parameters: { Operation: ['Scan'] },
    });
    const plugins = async () =>
      (
        await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId, Details: true }))
      ).CommandInvocations?.[0]?.CommandPlugins?.map((p) => [p.Name, p.Status, p.ResponseCode]);
    expect(await plugins()).toEqual([
      ['PatchWindows', 'Success', 0],
      ['PatchLinux', 'InProgress', -1],
      ['PatchMacOS', 'Pending', -1],
    ]);
    advance(3000);
    expect(await plugins()).toEqual([
      ['PatchWindows', 'Success', 0],
      ['PatchLinux', 'Success', 0],
      ['PatchMacOS', 'Success', 0],
    ]);
    const listed = await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId, Details: true }));
    const macos = listed.CommandInvocations?.[0]?.CommandPlugins?.[2];
    expect(macos?.Output).toBe(
      `Step execution skipped due to unsatisfied preconditions: '"StringEquals": [platformType, MacOS]'. Step name: PatchMacOS`,
    );

    await expect(invocation(ssm, commandId, id)).rejects.toMatchObject({ name: 'InvalidPluginName' });
    await expect(
      ssm.send(
        new GetCommandInvocationCommand({
          CommandId: commandId,
          InstanceId: id,
          PluginName: 'aws:runShellScript',
        }),
      ),
    ).rejects.toMatchObject({ name: 'InvalidPluginName' });
    const linux = await ssm.send(
      new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: id, PluginName: 'PatchLinux' }),
    );
    expect(linux).toMatchObject({
      PluginName: 'PatchLinux',
      Status: 'Success',
      ResponseCode: 0,
      StandardOutputContent: 'MissingCount : 2',
    });
    const windows = await ssm.send(
      new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: id, PluginName: 'PatchWindows' }),
    );
    expect(windows).toMatchObject({
      Status: 'Success',
      StandardOutputContent: expect.stringContaining(
        'Step execution skipped due to unsatisfied preconditions',
      ),
    });
  });

  it('when single-step documents run, then GetCommandInvocation works without a step name', async () => {
    const { accountId, ssm } = world();
    const [id = ''] = registered(accountId, 1);
    sim.control.scriptRunCommand(accountId, id, { status: 'Success', output: 'ok' });

    const shell = await send(ssm, { InstanceIds: [id] });
    const deploy = await send(ssm, { InstanceIds: [id], DocumentName: 'Fleetbot-Deploy' });
    expect(await invocation(ssm, shell, id)).toMatchObject({
      PluginName: 'aws:runShellScript',
      StandardOutputContent: 'ok',
    });
    expect((await invocation(ssm, deploy, id)).StandardOutputContent).toBe('ok');
    const listed = await ssm.send(new ListCommandInvocationsCommand({ CommandId: deploy, Details: true }));
    expect(listed.CommandInvocations?.[0]?.CommandPlugins).toHaveLength(1);
  });
});

describe('AWS simulator: patch states', () => {
  const patch = (ssm: SSMClient, ids: string[], operation: 'Scan' | 'Install', reboot = 'NoReboot') =>
    send(ssm, {
      InstanceIds: ids,
      DocumentName: 'AWS-RunPatchBaseline',
      Parameters: { Operation: [operation], RebootOption: [reboot] },
    });
  const states = async (ssm: SSMClient, ids: string[]) =>
    (await ssm.send(new DescribeInstancePatchStatesCommand({ InstanceIds: ids }))).InstancePatchStates ?? [];

  it('when patch runs succeed, fail or time out, then DescribeInstancePatchStates shows the last successful one and leaves unpatched instances out', async () => {
    const { accountId, ssm } = world();
    const [id = '', never = ''] = registered(accountId, 2);
    sim.control.scriptRunCommand(accountId, id, {
      status: 'Success',
      pendingMs: 500,
      afterMs: 2000,
      patchState: { installed: 40, missing: 3, notApplicable: 7 },
    });

    expect(await states(ssm, [id, never])).toEqual([]);
    const scanAt = now;
    await patch(ssm, [id], 'Scan');
    // Not finished yet: nothing reported.
    expect(await states(ssm, [id])).toEqual([]);
    advance(2000);
    expect(await states(ssm, [id, never])).toEqual([
      {
        InstanceId: id,
        PatchGroup: '',
        BaselineId: expect.stringMatching(/^pb-[0-9a-f]{17}$/),
        OperationStartTime: new Date(scanAt + 500),
        OperationEndTime: new Date(scanAt + 2000),
        Operation: 'Scan',
        InstalledCount: 40,
        InstalledOtherCount: 0,
        InstalledPendingRebootCount: 0,
        InstalledRejectedCount: 0,
        MissingCount: 3,
        FailedCount: 0,
        UnreportedNotApplicableCount: 0,
        NotApplicableCount: 7,
      },
    ]);

    sim.control.scriptRunCommand(accountId, id, {
      status: 'Success',
      afterMs: 1000,
      patchState: { installed: 43, installedPendingReboot: 3, notApplicable: 7 },
    });
    const installAt = now;
    await patch(ssm, [id], 'Install');
    advance(1000);
    const installed = (await states(ssm, [id]))[0];
    expect(installed).toMatchObject({
      Operation: 'Install',
      RebootOption: 'NoReboot',
      InstalledCount: 43,
      InstalledPendingRebootCount: 3,
      MissingCount: 0,
      OperationEndTime: new Date(installAt + 1000),
      LastNoRebootInstallOperationTime: new Date(installAt),
    });

    sim.control.scriptRunCommand(accountId, id, { status: 'Failed', patchState: { failed: 5 } });
    await patch(ssm, [id], 'Install', 'RebootIfNeeded');
    sim.control.scriptRunCommand(accountId, id, { status: 'TimedOut', patchState: { missing: 9 } });
    await patch(ssm, [id], 'Scan');
    advance(1000);
    expect((await states(ssm, [id]))[0]).toEqual(installed);
  });

  it('when DescribeInstancePatchStates gets no ids, too many ids or a page size out of range, then it fails with ValidationException', async () => {
    const { accountId, ssm } = world();
    const ids = registered(accountId, 51);
    const call = (input: object) =>
      ssm.send(new DescribeInstancePatchStatesCommand(input as DescribeInstancePatchStatesCommandInput));

    await expect(call({})).rejects.toMatchObject({
      name: 'ValidationException',
      message: expect.stringContaining('instanceIds'),
    });
    await expect(call({ InstanceIds: ids })).rejects.toMatchObject({
      name: 'ValidationException',
      message: expect.stringContaining('less than or equal to 50'),
    });
    await expect(call({ InstanceIds: ['web-1'] })).rejects.toMatchObject({ name: 'ValidationException' });
    await expect(call({ InstanceIds: ids.slice(0, 1), MaxResults: 9 })).rejects.toMatchObject({
      name: 'ValidationException',
    });
    await expect(call({ InstanceIds: ids.slice(0, 1), MaxResults: 101 })).rejects.toMatchObject({
      name: 'ValidationException',
    });
    // The model allows 0 to 50 ids and a page of 10 to 100 (not 50).
    await expect(call({ InstanceIds: ids.slice(0, 50), MaxResults: 100 })).resolves.toMatchObject({
      InstancePatchStates: [],
    });
    await expect(call({ InstanceIds: [] })).resolves.toMatchObject({ InstancePatchStates: [] });
  });

  it('when many instances have patch states, then DescribeInstancePatchStates pages them with NextToken', async () => {
    const { accountId, ssm } = world();
    const ids = registered(accountId, 12);
    await patch(ssm, ids, 'Scan');

    const pages: string[][] = [];
    for await (const out of paginateDescribeInstancePatchStates(
      { client: ssm, pageSize: 10 },
      { InstanceIds: ids },
    )) {
      pages.push((out.InstancePatchStates ?? []).map((s) => s.InstanceId ?? ''));
    }
    expect(pages.map((p) => p.length)).toEqual([10, 2]);
    expect(pages.flat()).toEqual(ids);
  });
});

describe('AWS simulator: cancelling', () => {
  it('when a cancel takes time to reach the agent, then delivered invocations show Cancelling, a script that ends first keeps its outcome, and pending ones cancel at once', async () => {
    const { accountId, ssm } = world();
    const [finishing = '', endless = '', waiting = ''] = registered(accountId, 3);
    sim.control.setCancelDelay(accountId, 5000);
    sim.control.scriptRunCommand(accountId, finishing, {
      status: 'Success',
      output: 'made it',
      afterMs: 13_000,
    });
    sim.control.scriptRunCommand(accountId, endless, { status: 'InProgress' });
    sim.control.scriptRunCommand(accountId, waiting, {
      status: 'Success',
      pendingMs: 60_000,
      afterMs: 70_000,
    });

    const commandId = await send(ssm, { InstanceIds: [finishing, endless, waiting] });
    advance(10_000);
    await ssm.send(new CancelCommandCommand({ CommandId: commandId }));
    const statuses = async () =>
      Promise.all(
        [finishing, endless, waiting].map(async (id) => {
          const got = await invocation(ssm, commandId, id);
          return [got.Status, got.StatusDetails];
        }),
      );

    expect(await statuses()).toEqual([
      ['Cancelling', 'Cancelling'],
      ['Cancelling', 'Cancelling'],
      ['Cancelled', 'Cancelled'],
    ]);
    expect(await commandStatus(ssm, commandId)).toMatchObject({
      Status: 'Cancelling',
      StatusDetails: 'Cancelling',
    });
    const listed = await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId, Details: true }));
    expect(listed.CommandInvocations?.map((i) => i.CommandPlugins?.[0]?.Status)).toEqual([
      'InProgress',
      'InProgress',
      'Cancelled',
    ]);

    advance(3000);
    expect(await statuses()).toEqual([
      ['Success', 'Success'],
      ['Cancelling', 'Cancelling'],
      ['Cancelled', 'Cancelled'],
    ]);
    expect((await invocation(ssm, commandId, finishing)).StandardOutputContent).toBe('made it');
    advance(2000);
    expect(await statuses()).toEqual([
      ['Success', 'Success'],
      ['Cancelled', 'Cancelled'],
      ['Cancelled', 'Cancelled'],
    ]);
    expect(await invocation(ssm, commandId, endless)).toMatchObject({
      ExecutionEndDateTime: new Date(now).toISOString(),
    });
    expect(await commandStatus(ssm, commandId)).toMatchObject({ Status: 'Cancelled', CompletedCount: 3 });
  });
});

describe('AWS simulator: visibility lag', () => {
  it('when ListCommands lags, then a fresh command is missing from listings and unknown by id, while its invocations are already there', async () => {
    const { accountId, ssm } = world();
    const [id = ''] = registered(accountId, 1);
    sim.control.setVisibilityLag(accountId, { listCommandsMs: 2000 });

    const commandId = await send(ssm, { InstanceIds: [id] });
    expect((await ssm.send(new ListCommandsCommand({}))).Commands).toEqual([]);
    await expect(ssm.send(new ListCommandsCommand({ CommandId: commandId }))).rejects.toMatchObject({
      name: 'InvalidCommandId',
    });
    expect((await invocation(ssm, commandId, id)).Status).toBe('Success');
    const invocations = await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId }));
    expect(invocations.CommandInvocations).toHaveLength(1);

    advance(1999);
    expect((await ssm.send(new ListCommandsCommand({}))).Commands).toEqual([]);
    advance(1);
    expect((await commandStatus(ssm, commandId))?.CommandId).toBe(commandId);
  });

  it('when DescribeInstanceStatus lags, then naming a fresh instance fails whole with InvalidInstanceID.NotFound and listing all leaves it out', async () => {
    const { accountId, ec2 } = world();
    const [old = ''] = await launch(ec2, 1);
    sim.control.setVisibilityLag(accountId, { instanceStatusMs: 5000 });
    advance(5000);
    const [fresh = '', fresher = ''] = await launch(ec2, 2);
    const describe = (ids?: string[]) => ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: ids }));

    await expect(describe([old, fresh])).rejects.toMatchObject({
      name: 'InvalidInstanceID.NotFound',
      message: `The instance ID '${fresh}' does not exist`,
      $metadata: { httpStatusCode: 400 },
    });
    await expect(describe([fresh, fresher])).rejects.toMatchObject({
      name: 'InvalidInstanceID.NotFound',
      message: `The instance IDs '${fresh}, ${fresher}' do not exist`,
    });
    expect((await describe()).InstanceStatuses?.map((s) => s.InstanceId)).toEqual([old]);
    expect((await describe([old])).InstanceStatuses?.map((s) => s.InstanceId)).toEqual([old]);

    advance(4999);
    await expect(describe([fresh])).rejects.toMatchObject({ name: 'InvalidInstanceID.NotFound' });
    advance(1);
    expect((await describe([fresh, fresher])).InstanceStatuses?.map((s) => s.InstanceId)).toEqual([
      fresh,
      fresher,
    ]);
  });
});

describe('AWS simulator: faults', () => {
  it('when a throttle is injected once on SendCommand, then only that call fails with ThrottlingException', async () => {
    const { accountId, ssm } = world();
    const bystander = world();
    const ids = registered(accountId, 1);
    const bystanderIds = registered(bystander.accountId, 1);
    sim.control.injectFault(accountId, { operation: 'SendCommand', kind: 'throttle', count: 1 });

    await expect(send(bystander.ssm, { InstanceIds: bystanderIds })).resolves.toBeTruthy();
    await expect(send(ssm, { InstanceIds: ids })).rejects.toMatchObject({
      name: 'ThrottlingException',
      $metadata: { httpStatusCode: 400 },
    });
    await expect(send(ssm, { InstanceIds: ids })).resolves.toBeTruthy();
  });

  it('when a throttle is injected on DescribeInstances, then EC2 answers RequestLimitExceeded with HTTP 503', async () => {
    const { accountId, ec2 } = world();
    sim.control.injectFault(accountId, { operation: 'DescribeInstances', kind: 'throttle' });

    await expect(ec2.send(new DescribeInstancesCommand({}))).rejects.toMatchObject({
      name: 'RequestLimitExceeded',
      $metadata: { httpStatusCode: 503 },
    });
    await expect(ec2.send(new DescribeInstanceStatusCommand({}))).resolves.toBeTruthy();
  });

  it('when a server error is injected, then SSM answers InternalServerError and EC2 InternalError with HTTP 500', async () => {
    const { accountId, ssm, ec2 } = world();
    sim.control.injectFault(accountId, { operation: 'GetParameter', kind: 'server-error' });
    sim.control.injectFault(accountId, { operation: 'DescribeInstanceStatus', kind: 'server-error' });

    await expect(ssm.send(new GetParameterCommand({ Name: '/nope' }))).rejects.toMatchObject({
      name: 'InternalServerError',
      $metadata: { httpStatusCode: 500 },
    });
    await expect(ec2.send(new DescribeInstanceStatusCommand({}))).rejects.toMatchObject({
      name: 'InternalError',
      $metadata: { httpStatusCode: 500 },
    });
  });

  it('when an error fault names InsufficientInstanceCapacity once, then RunInstances throws it with the message and the next launch succeeds', async () => {
    const { accountId, ec2 } = world();
    sim.control.injectFault(accountId, {
      operation: 'RunInstances',
      kind: 'error',
      code: 'InsufficientInstanceCapacity',
      message: 'We currently do not have sufficient t3.small capacity',
      count: 1,
    });

    await expect(launch(ec2, 1)).rejects.toMatchObject({
      name: 'InsufficientInstanceCapacity',
      message: expect.stringContaining('We currently do not have sufficient t3.small capacity'),
      $metadata: { httpStatusCode: 400 },
    });
    expect(await launch(ec2, 1)).toHaveLength(1);
    expect(sim.control.calls(accountId, 'RunInstances').map((c) => c.status)).toEqual([400, 200]);
  });

  it('when an error fault names a dotted code without a message, then EC2 throws that code with the default message', async () => {
    const { accountId, ec2 } = world();
    sim.control.injectFault(accountId, {
      operation: 'RunInstances',
      kind: 'error',
      code: 'InvalidAMIID.NotFound',
    });

    await expect(launch(ec2, 1)).rejects.toMatchObject({
      name: 'InvalidAMIID.NotFound',
      message: 'Injected error',
      $metadata: { httpStatusCode: 400 },
    });
    await expect(launch(ec2, 1)).rejects.toMatchObject({ name: 'InvalidAMIID.NotFound' });
  });

  it('when an error fault names an SSM code, then the SSM SDK throws its modelled exception', async () => {
    const { accountId, ssm } = world();
    const ids = registered(accountId, 1);
    sim.control.injectFault(accountId, {
      operation: 'SendCommand',
      kind: 'error',
      code: 'InvalidInstanceId',
      message: 'Instances not in a valid state for account',
      status: 400,
    });

    const error = await send(ssm, { InstanceIds: ids }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidInstanceId);
    expect(error).toMatchObject({
      name: 'InvalidInstanceId',
      message: 'Instances not in a valid state for account',
      $metadata: { httpStatusCode: 400 },
    });
  });

  it('when an error fault has no valid code or status, then injecting it is refused', () => {
    const { accountId } = world();
    const inject = (fault: object) => () =>
      sim.control.injectFault(accountId, { operation: 'RunInstances', kind: 'error', code: 'Ok', ...fault });

    expect(inject({ code: undefined })).toThrow(/code/);
    expect(inject({ code: '' })).toThrow(/code/);
    expect(inject({ code: 'Bad<Code>' })).toThrow(/code/);
    expect(inject({ code: `A${'b'.repeat(100)}` })).toThrow(/code/);
    expect(inject({ status: 200 })).toThrow(/status/);
    expect(inject({ code: `A${'b'.repeat(99)}`, status: 503 })).not.toThrow();
  });

  it('when latency is injected, then the answer is held back at least that long', async () => {
    const { accountId, ssm } = world();
    const quick = Date.now();
    await ssm.send(new ListCommandsCommand({}));
    // Several times what an answer takes on this machine right now, so a fault that held nothing cannot
    // pass on a slow answer; measured, not assumed, because load slows every answer.
    const latencyMs = Math.min(5000, Math.max(250, 4 * (Date.now() - quick)));
    sim.control.injectFault(accountId, { operation: 'ListCommands', kind: 'latency', latencyMs, count: 1 });

    const started = Date.now();
    await ssm.send(new ListCommandsCommand({}));
    expect(Date.now() - started).toBeGreaterThanOrEqual(latencyMs);
    expect(sim.held()).toBe(0);
  }, 30_000);

  it('when a fault has a rate, then the same seed hits the same calls and another seed does not', async () => {
    async function pattern(seed: number): Promise<string> {
      const other = await startAwsSimulator({ motoUrl: inject('motoUrl'), clock, seed });
      try {
        const { accountId, ssm } = world(other.url);
        other.control.injectFault(accountId, { operation: 'ListCommands', kind: 'throttle', rate: 0.5 });
        let hits = '';
        for (let i = 0; i < 24; i += 1) {
          hits += await ssm.send(new ListCommandsCommand({})).then(
            () => '.',
            () => 'x',
          );
        }
        return hits;
      } finally {
        await other.close();
      }
    }
    const first = await pattern(7);
    expect(first).toMatch(/x/);
    expect(first).toMatch(/\./);
    expect(await pattern(7)).toBe(first);
    expect(await pattern(8)).not.toBe(first);
  });
});

describe('AWS simulator: call log', () => {
  it('when a poller lists invocations once per tick, then the log holds exactly one ListCommandInvocations per tick', async () => {
    const { accountId, ssm } = world();
    const bystander = world();
    const ids = registered(accountId, 3);
    const commandId = await send(ssm, { InstanceIds: ids });
    await bystander.ssm.send(new ListCommandInvocationsCommand({}));

    for (let tick = 0; tick < 3; tick += 1) {
      await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId }));
      advance(10_000);
    }
    const polls = sim.control.calls(accountId, 'ListCommandInvocations');
    expect(polls).toHaveLength(3);
    expect(polls[0]).toMatchObject({ service: 'ssm', status: 200, params: { CommandId: commandId } });
    expect(polls.map((p) => p.at)).toEqual([now - 30_000, now - 20_000, now - 10_000]);
    expect(sim.control.calls(accountId, 'SendCommand')).toHaveLength(1);

    sim.control.resetCalls(accountId);
    expect(sim.control.calls(accountId)).toEqual([]);
    expect(sim.control.calls(bystander.accountId, 'ListCommandInvocations')).toHaveLength(1);
  });

  it('when calls are forwarded or faulted, then the log records their service and the status the caller saw', async () => {
    const { accountId, ssm, ec2 } = world();
    sim.control.injectFault(accountId, { operation: 'DescribeInstances', kind: 'throttle', count: 1 });
    await ssm.send(new PutParameterCommand({ Name: '/sim/secret', Value: 'hunter2', Type: 'SecureString' }));
    await expect(ec2.send(new DescribeInstancesCommand({}))).rejects.toThrow();
    await ec2.send(new DescribeInstancesCommand({}));

    expect(sim.control.calls(accountId).map((c) => [c.service, c.operation, c.status])).toEqual([
      ['ssm', 'PutParameter', 200],
      ['ec2', 'DescribeInstances', 503],
      ['ec2', 'DescribeInstances', 200],
    ]);
    expect(JSON.stringify(sim.control.calls(accountId))).not.toContain('hunter2');
  });
});

describe('AWS simulator: HTTP control API', () => {
  it('when the sandbox drives /_sim/ over HTTP, then scripts, faults, calls and reset take effect', async () => {
    const { accountId, ssm } = world();
    const [id = ''] = registered(accountId, 1);
    const post = (route: string, body: unknown) =>
      fetch(`${sim.url}/_sim/${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });

    expect(
      (await post('script', { accountId, instanceId: id, outcome: { status: 'Failed', output: 'no' } }))
        .status,
    ).toBe(200);
    const commandId = await send(ssm, { InstanceIds: [id] });
    expect(await invocation(ssm, commandId, id)).toMatchObject({
      Status: 'Failed',
      StandardOutputContent: 'no',
    });

    await post('fault', { accountId, operation: 'ListCommands', kind: 'throttle', count: 1 });
    await expect(ssm.send(new ListCommandsCommand({}))).rejects.toMatchObject({
      name: 'ThrottlingException',
    });
    const calls = await fetch(`${sim.url}/_sim/calls?accountId=${accountId}&operation=ListCommands`);
    expect((await calls.json()) as unknown).toMatchObject({
      calls: [{ operation: 'ListCommands', status: 400 }],
    });

    await post('reset', { accountId });
    expect((await ssm.send(new ListCommandsCommand({}))).Commands).toEqual([]);

    const bad = await post('fault', { accountId, operation: 'ListCommands', kind: 'explode' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toContain('kind');
    expect((await post('termination-notice', { accountId, delayMs: 5000 })).status).toBe(200);
    expect((await post('termination-notice', { accountId, delayMs: -1 })).status).toBe(400);
    expect((await fetch(`${sim.url}/_sim/nothing-here`)).status).toBe(404);
  });
  it('when error faults and impaired boot timing are posted over HTTP, then they take effect and malformed ones are refused', async () => {
    const { accountId, ec2 } = world();
    const post = (route: string, body: unknown) =>
      fetch(`${sim.url}/_sim/${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });

    const noCode = await post('fault', { accountId, operation: 'RunInstances', kind: 'error' });
    expect(noCode.status).toBe(400);
    expect(((await noCode.json()) as { error: string }).error).toContain('code');
    const badCode = await post('fault', {
      accountId,
      operation: 'RunInstances',
      kind: 'error',
      code: 'no spaces',
    });
    expect(badCode.status).toBe(400);
    const stray = await post('fault', { accountId, operation: 'RunInstances', kind: 'throttle', code: 'X' });
    expect(stray.status).toBe(400);
    const badImpaired = await post('boot-timing', {
      accountId,
      pendingMs: 0,
      initializingMs: 0,
      impaired: 'disk',
    });
    expect(badImpaired.status).toBe(400);
    expect(((await badImpaired.json()) as { error: string }).error).toContain('impaired');

    const fault = {
      accountId,
      operation: 'RunInstances',
      kind: 'error',
      code: 'VcpuLimitExceeded',
      count: 1,
    };
    expect((await post('fault', { ...fault, status: 400 })).status).toBe(200);
    expect(
      (await post('boot-timing', { accountId, pendingMs: 0, initializingMs: 0, impaired: 'instance' }))
        .status,
    ).toBe(200);
    await expect(launch(ec2, 1)).rejects.toMatchObject({
      name: 'VcpuLimitExceeded',
      message: 'Injected error',
    });
    const [id = ''] = await launch(ec2, 1);
    const status = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
    expect(status.InstanceStatuses?.[0]).toMatchObject({
      InstanceStatus: { Status: 'impaired' },
      SystemStatus: { Status: 'ok' },
    });
  });
  it('when registration, cancel delay, visibility lag, agent registration time and patch states are posted over HTTP, then they take effect and malformed ones are refused', async () => {
    const { accountId, ssm, ec2 } = world();
    const [id = ''] = registered(accountId, 1);
    const post = (route: string, body: unknown) =>
      fetch(`${sim.url}/_sim/${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });

    expect((await post('agent-registered', { accountId, instanceId: id, registered: false })).status).toBe(
      200,
    );
    await expect(send(ssm, { InstanceIds: [id] })).rejects.toMatchObject({ name: 'InvalidInstanceId' });
    expect((await post('agent-registered', { accountId, instanceId: id, registered: true })).status).toBe(
      200,
    );
    expect((await post('agent-registered', { accountId, instanceId: id })).status).toBe(400);

    expect(
      (
        await post('script', {
          accountId,
          instanceId: id,
          outcome: { status: 'Success', patchState: { installed: 2, missing: 1 } },
        })
      ).status,
    ).toBe(200);
    const bad = await post('script', {
      accountId,
      outcome: { status: 'Success', patchState: { missing: -1 } },
    });
    expect(bad.status).toBe(400);
    await send(ssm, { InstanceIds: [id], DocumentName: 'AWS-RunPatchBaseline' });
    const patched = await ssm.send(new DescribeInstancePatchStatesCommand({ InstanceIds: [id] }));
    expect(patched.InstancePatchStates?.[0]).toMatchObject({
      Operation: 'Scan',
      InstalledCount: 2,
      MissingCount: 1,
    });

    expect((await post('visibility-lag', { accountId, listCommandsMs: 1000 })).status).toBe(200);
    expect((await post('visibility-lag', { accountId, instanceStatusMs: -5 })).status).toBe(400);
    const fresh = await send(ssm, { InstanceIds: [id] });
    await expect(ssm.send(new ListCommandsCommand({ CommandId: fresh }))).rejects.toMatchObject({
      name: 'InvalidCommandId',
    });
    advance(1000);

    expect((await post('cancel-delay', { accountId, delayMs: 1000 })).status).toBe(200);
    expect((await post('cancel-delay', { accountId })).status).toBe(400);
    await post('script', { accountId, instanceId: id, outcome: { status: 'InProgress' } });
    const running = await send(ssm, { InstanceIds: [id] });
    await ssm.send(new CancelCommandCommand({ CommandId: running }));
    expect((await invocation(ssm, running, id)).Status).toBe('Cancelling');
    advance(1000);
    expect((await invocation(ssm, running, id)).Status).toBe('Cancelled');

    expect(
      (await post('boot-timing', { accountId, pendingMs: 0, initializingMs: 0, agentRegistrationMs: 3000 }))
        .status,
    ).toBe(200);
    expect(
      (await post('boot-timing', { accountId, pendingMs: 0, initializingMs: 0, agentRegistrationMs: -1 }))
        .status,
    ).toBe(400);
    const [launched = ''] = await launch(ec2, 1);
    await expect(send(ssm, { InstanceIds: [launched] })).rejects.toMatchObject({ name: 'InvalidInstanceId' });
    advance(3000);
    await expect(send(ssm, { InstanceIds: [launched] })).resolves.toBeTruthy();
  });
});

describe('AWS simulator: lifecycle', () => {
  it('when closed while a request is held by latency, then close releases it and refuses new connections', async () => {
    const other = await startAwsSimulator({ motoUrl: inject('motoUrl'), clock });
    const { accountId, ssm } = world(other.url);
    // Held far beyond the test's own timeout: close() and the drop can only finish because close
    // released the request, not because its latency ran out.
    other.control.injectFault(accountId, { operation: 'ListCommands', kind: 'latency', latencyMs: 600_000 });
    const held = ssm.send(new ListCommandsCommand({})).then(
      () => 'answered',
      () => 'dropped',
    );
    await expect.poll(() => other.held(), { timeout: 10_000 }).toBe(1);

    await other.close();
    expect(other.held()).toBe(0);
    expect(await held).toBe('dropped');
    await expect(fetch(`${other.url}/_sim/health`)).rejects.toThrow();
  });
});
