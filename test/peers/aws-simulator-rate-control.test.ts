import { randomBytes } from 'node:crypto';
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  ListCommandsCommand,
  paginateListCommandInvocations,
  SendCommandCommand,
  type SendCommandCommandInput,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { testAccountId, withAccount } from './aws-account.js';
import { type AwsSimulator, type RunCommandOutcome, startAwsSimulator } from './aws-simulator.js';

const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const START = Date.parse('2030-01-01T00:00:00Z');
let now = START;
const clock = () => now;
/** Moves the simulator clock to `ms` after START. */
const at = (ms: number) => {
  now = START + ms;
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

/** A fresh account per test, and the clock back at START. */
function world() {
  now = START;
  const accountId = testAccountId();
  const ssm = withAccount(
    new SSMClient({ region: 'us-east-1', endpoint: sim.url, credentials, maxAttempts: 1 }),
    accountId,
  );
  clients.push(ssm);
  return { accountId, ssm };
}

function instanceId(): string {
  return `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
}

/** SSM-managed ids that need no moto instance, each with its own scripted outcome. */
function nodes(
  accountId: string,
  outcomes: RunCommandOutcome[],
  tags: Record<string, string> = {},
): string[] {
  return outcomes.map((outcome) => {
    const id = instanceId();
    sim.control.registerInstance(accountId, id, { tags });
    sim.control.scriptRunCommand(accountId, id, outcome);
    return id;
  });
}

const ok = (afterMs: number, pendingMs = 0): RunCommandOutcome => ({ status: 'Success', afterMs, pendingMs });
const fail = (afterMs: number): RunCommandOutcome => ({ status: 'Failed', afterMs });

async function send(ssm: SSMClient, input: Partial<SendCommandCommandInput>): Promise<string> {
  const out = await ssm.send(new SendCommandCommand({ DocumentName: 'AWS-RunShellScript', ...input }));
  return out.Command?.CommandId ?? '';
}

/** Each invocation's status right now, in target order. */
function statuses(accountId: string, commandId: string): string[] {
  return sim.control
    .invocations(accountId)
    .filter((inv) => inv.commandId === commandId)
    .map((inv) => (inv.statusDetails === inv.status ? inv.status : `${inv.status}/${inv.statusDetails}`));
}

/** Each invocation's scheduled start and end, in ms after START. */
function times(accountId: string, commandId: string): [number | undefined, number | undefined][] {
  const rel = (t: number | undefined) => (t === undefined ? undefined : t - START);
  return sim.control
    .invocations(accountId)
    .filter((inv) => inv.commandId === commandId)
    .map((inv) => [rel(inv.startedAt), rel(inv.endedAt)]);
}

async function command(ssm: SSMClient, commandId: string) {
  return (await ssm.send(new ListCommandsCommand({ CommandId: commandId }))).Commands?.[0];
}

describe('AWS simulator: MaxConcurrency', () => {
  it('when 5 targets share MaxConcurrency 2, then 2 run at a time and each next one starts, in target order, as one ends', async () => {
    const { accountId, ssm } = world();
    // Durations 3 s, 1 s, 1 s, 1 s, 1 s: the second slot works through the short ones while the first is busy.
    const ids = nodes(accountId, [ok(3000), ok(1000), ok(1000), ok(1000), ok(1000)]);

    const commandId = await send(ssm, { InstanceIds: ids, MaxConcurrency: '2' });

    expect(statuses(accountId, commandId)).toEqual([
      'InProgress',
      'InProgress',
      'Pending',
      'Pending',
      'Pending',
    ]);
    expect(times(accountId, commandId)).toEqual([
      [0, 3000],
      [0, 1000],
      [1000, 2000],
      [2000, 3000],
      [3000, 4000],
    ]);
    at(1000);
    expect(statuses(accountId, commandId)).toEqual([
      'InProgress',
      'Success',
      'InProgress',
      'Pending',
      'Pending',
    ]);
    const waiting = await ssm.send(
      new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: ids[4] }),
    );
    expect(waiting).toMatchObject({
      Status: 'Pending',
      StatusDetails: 'Pending',
      ExecutionStartDateTime: '',
    });
    expect(await command(ssm, commandId)).toMatchObject({
      Status: 'InProgress',
      CompletedCount: 1,
      TargetCount: 5,
    });
    at(3000);
    expect(statuses(accountId, commandId)).toEqual([
      'Success',
      'Success',
      'Success',
      'Success',
      'InProgress',
    ]);
    const started = await ssm.send(
      new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: ids[4] }),
    );
    expect(started.ExecutionStartDateTime).toBe(new Date(START + 3000).toISOString());
    at(4000);
    expect(await command(ssm, commandId)).toMatchObject({ Status: 'Success', CompletedCount: 5 });
  });

  it('when a sent invocation has its own pendingMs, then it counts from the moment its slot freed', async () => {
    const { accountId, ssm } = world();
    const ids = nodes(accountId, [ok(1000), ok(1500, 500)]);

    const commandId = await send(ssm, { InstanceIds: ids, MaxConcurrency: '1' });

    expect(times(accountId, commandId)).toEqual([
      [0, 1000],
      [1500, 2500],
    ]);
    at(1200);
    expect(statuses(accountId, commandId)).toEqual(['Success', 'Pending']);
    at(1500);
    expect(statuses(accountId, commandId)).toEqual(['Success', 'InProgress']);
  });

  it('when MaxConcurrency is a percentage, then it is that share of the targets, rounded down but at least 1', async () => {
    const { accountId, ssm } = world();
    const ids = nodes(
      accountId,
      Array.from({ length: 30 }, () => ok(1000)),
    );

    const tenPercent = await send(ssm, { InstanceIds: ids, MaxConcurrency: '10%' });
    const onePercent = await send(ssm, { InstanceIds: ids, MaxConcurrency: '1%' });

    const running = (commandId: string) =>
      statuses(accountId, commandId).filter((s) => s === 'InProgress').length;
    expect(running(tenPercent)).toBe(3);
    expect(running(onePercent)).toBe(1);
    const ends = (commandId: string) => Math.max(...times(accountId, commandId).map(([, end]) => end ?? 0));
    expect(ends(tenPercent)).toBe(10_000);
    expect(ends(onePercent)).toBe(30_000);
  });

  it('when a batch of up to 50 is sent with the default MaxConcurrency, then every invocation starts at once as before', async () => {
    const { accountId, ssm } = world();
    const ids = nodes(
      accountId,
      Array.from({ length: 50 }, () => ok(2000)),
    );

    const commandId = await send(ssm, { InstanceIds: ids });

    expect(new Set(statuses(accountId, commandId))).toEqual(new Set(['InProgress']));
    expect(new Set(times(accountId, commandId).map(([start]) => start))).toEqual(new Set([0]));
    expect((await command(ssm, commandId))?.MaxConcurrency).toBe('50');
  });

  it('when a queued command is cancelled, then what runs ends Cancelled, what waits is Cancelled at once, and nothing more starts', async () => {
    const { accountId, ssm } = world();
    const ids = nodes(accountId, [ok(1000), ok(5000), ok(1000), ok(1000)]);
    const commandId = await send(ssm, { InstanceIds: ids, MaxConcurrency: '2' });
    at(1500);
    expect(statuses(accountId, commandId)).toEqual(['Success', 'InProgress', 'InProgress', 'Pending']);

    await ssm.send(new CancelCommandCommand({ CommandId: commandId }));

    expect(statuses(accountId, commandId)).toEqual(['Success', 'Cancelled', 'Cancelled', 'Cancelled']);
    at(10_000);
    expect(statuses(accountId, commandId)).toEqual(['Success', 'Cancelled', 'Cancelled', 'Cancelled']);
    expect(times(accountId, commandId)[3]).toEqual([undefined, 1500]);
    expect(await command(ssm, commandId)).toMatchObject({ Status: 'Cancelled', CompletedCount: 4 });
  });

  it('when a running invocation never ends, then its slot never frees and the rest time out undelivered at expiry', async () => {
    const { accountId, ssm } = world();
    const ids = nodes(accountId, [{ status: 'InProgress' }, ok(1000)]);

    const commandId = await send(ssm, { InstanceIds: ids, MaxConcurrency: '1', TimeoutSeconds: 60 });

    at(59_000);
    expect(statuses(accountId, commandId)).toEqual(['InProgress', 'Pending']);
    at(60_000);
    expect(statuses(accountId, commandId)).toEqual(['InProgress', 'TimedOut/DeliveryTimedOut']);
    expect(times(accountId, commandId)).toEqual([
      [0, undefined],
      [undefined, 60_000],
    ]);
  });
});

describe('AWS simulator: MaxErrors under rate control', () => {
  it('when errors pass MaxErrors, then no further target is sent and those left end Terminated, and the command Failed', async () => {
    const { accountId, ssm } = world();
    const ids = nodes(accountId, [fail(1000), fail(1000), ok(1000), ok(1000), ok(1000)]);

    const commandId = await send(ssm, { InstanceIds: ids, MaxConcurrency: '1', MaxErrors: '1' });

    at(1000);
    // One error is allowed: the next target is sent.
    expect(statuses(accountId, commandId)).toEqual(['Failed', 'InProgress', 'Pending', 'Pending', 'Pending']);
    at(2000);
    expect(statuses(accountId, commandId)).toEqual([
      'Failed',
      'Failed',
      'Cancelled/Terminated',
      'Cancelled/Terminated',
      'Cancelled/Terminated',
    ]);
    const terminated = await ssm.send(
      new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: ids[2] }),
    );
    expect(terminated).toMatchObject({ Status: 'Cancelled', StatusDetails: 'Terminated', ResponseCode: -1 });
    expect(await command(ssm, commandId)).toMatchObject({
      Status: 'Failed',
      StatusDetails: 'Failed',
      CompletedCount: 5,
      ErrorCount: 2,
    });
    expect(times(accountId, commandId).slice(2)).toEqual([
      [undefined, 2000],
      [undefined, 2000],
      [undefined, 2000],
    ]);
  });

  it('when the threshold is passed while others run, then those run to their end and only unsent targets are Terminated', async () => {
    const { accountId, ssm } = world();
    const ids = nodes(accountId, [fail(500), ok(3000), ok(1000), ok(1000)]);

    const commandId = await send(ssm, { InstanceIds: ids, MaxConcurrency: '2', MaxErrors: '0' });

    at(500);
    expect(statuses(accountId, commandId)).toEqual([
      'Failed',
      'InProgress',
      'Cancelled/Terminated',
      'Cancelled/Terminated',
    ]);
    at(3000);
    expect(statuses(accountId, commandId)).toEqual([
      'Failed',
      'Success',
      'Cancelled/Terminated',
      'Cancelled/Terminated',
    ]);
    expect(await command(ssm, commandId)).toMatchObject({
      Status: 'Failed',
      ErrorCount: 1,
      CompletedCount: 4,
    });
  });

  it('when a percentage MaxErrors is not passed, then every target is sent and the command ends Failed/Incomplete', async () => {
    const { accountId, ssm } = world();
    // 10% of 10 targets allows one error.
    const ids = nodes(accountId, [fail(100), ...Array.from({ length: 9 }, () => ok(100))]);

    const commandId = await send(ssm, { InstanceIds: ids, MaxConcurrency: '3', MaxErrors: '10%' });

    at(10_000);
    expect(statuses(accountId, commandId).filter((s) => s === 'Success')).toHaveLength(9);
    expect(await command(ssm, commandId)).toMatchObject({ Status: 'Failed', StatusDetails: 'Incomplete' });
  });
});

describe('AWS simulator: SendCommand Targets', () => {
  it('when Targets name a tag, then every managed node with it is targeted, in order, under MaxConcurrency', async () => {
    const { accountId, ssm } = world();
    const web = nodes(
      accountId,
      Array.from({ length: 120 }, () => ok(1000)),
      { role: 'web' },
    );
    nodes(accountId, [ok(1000), ok(1000)], { role: 'db' });
    const targets = [{ Key: 'tag:role', Values: ['web', 'cache'] }];

    const out = await ssm.send(
      new SendCommandCommand({ DocumentName: 'AWS-RunShellScript', Targets: targets, MaxConcurrency: '50' }),
    );

    expect(out.Command).toMatchObject({ Targets: targets, InstanceIds: [], TargetCount: 120 });
    const commandId = out.Command?.CommandId ?? '';
    const listed: string[] = [];
    for await (const page of paginateListCommandInvocations(
      { client: ssm, pageSize: 50 },
      { CommandId: commandId },
    ))
      for (const inv of page.CommandInvocations ?? []) listed.push(inv.InstanceId ?? '');
    expect(listed.sort()).toEqual([...web].sort());
    expect(statuses(accountId, commandId).filter((s) => s === 'InProgress')).toHaveLength(50);
    expect(times(accountId, commandId).map(([start]) => start)).toEqual(
      web.map((_, i) => Math.floor(i / 50) * 1000),
    );
    at(3000);
    expect(await command(ssm, commandId)).toMatchObject({ Status: 'Success', CompletedCount: 120 });
  });

  it('when Targets combine InstanceIds and a tag, then both must match, and the ids keep their order', async () => {
    const { accountId, ssm } = world();
    const web = nodes(accountId, [ok(0), ok(0), ok(0)], { role: 'web' });
    const [a = '', c = ''] = [web[0], web[2]];
    const [other = ''] = nodes(accountId, [ok(0)], { role: 'db' });

    const commandId = await send(ssm, {
      Targets: [
        { Key: 'InstanceIds', Values: [c, other, a] },
        { Key: 'tag:role', Values: ['web'] },
      ],
    });

    expect(sim.control.invocations(accountId).map((inv) => inv.instanceId)).toEqual([c, a]);
    expect((await command(ssm, commandId))?.TargetCount).toBe(2);
  });

  it('when a tag matches a node whose agent is offline, then it waits Delayed and times out undelivered at expiry', async () => {
    const { accountId, ssm } = world();
    const [, down = ''] = nodes(accountId, [ok(0), ok(0)], { role: 'web' });
    sim.control.setAgentOnline(accountId, down, false);

    const commandId = await send(ssm, {
      Targets: [{ Key: 'tag:role', Values: ['web'] }],
      TimeoutSeconds: 30,
    });

    expect(statuses(accountId, commandId)).toEqual(['Success', 'Delayed']);
    at(30_000);
    expect(statuses(accountId, commandId)).toEqual(['Success', 'TimedOut/DeliveryTimedOut']);
  });

  it('when Targets break the API’s limits or name what the simulator does not resolve, then SendCommand is refused', async () => {
    const { accountId, ssm } = world();
    const ids = nodes(
      accountId,
      Array.from({ length: 51 }, () => ok(0)),
    );

    await expect(send(ssm, { Targets: [{ Key: 'InstanceIds', Values: ids }] })).rejects.toMatchObject({
      name: 'ValidationException',
      message: expect.stringContaining('less than or equal to 50'),
    });
    await expect(
      send(ssm, { Targets: Array.from({ length: 6 }, () => ({ Key: 'tag:role', Values: ['web'] })) }),
    ).rejects.toMatchObject({ name: 'ValidationException', message: expect.stringContaining('5') });
    await expect(
      send(ssm, { Targets: [{ Key: 'resource-groups:Name', Values: ['g'] }] }),
    ).rejects.toMatchObject({
      name: 'ValidationException',
      message: expect.stringContaining('resource-groups:Name'),
    });
    await expect(
      send(ssm, { InstanceIds: ids.slice(0, 1), Targets: [{ Key: 'tag:role', Values: ['web'] }] }),
    ).rejects.toMatchObject({ name: 'ValidationException' });
    await expect(
      send(ssm, { Targets: [{ Key: 'InstanceIds', Values: [instanceId()] }] }),
    ).rejects.toMatchObject({
      name: 'InvalidInstanceId',
    });
    expect((await ssm.send(new ListCommandsCommand({}))).Commands).toEqual([]);
  });

  it('when a tag matches nothing, then the command has no targets and is done at once', async () => {
    const { ssm } = world();

    const out = await ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        Targets: [{ Key: 'tag:role', Values: ['none'] }],
      }),
    );

    expect(out.Command).toMatchObject({ TargetCount: 0, CompletedCount: 0, Status: 'Success' });
  });
});

describe('AWS simulator: a fleet-wide command', () => {
  it('when one SendCommand targets 10,000 indexed instances by tag with MaxConcurrency 500, then its makespan is known at send time', async () => {
    const { accountId, ssm } = world();
    const fleet = Array.from({ length: 10_000 }, (_, i) => ({
      instanceId: instanceId(),
      tags: { app: 'fleetbot', env: 'bench', user: `U${i}` },
    }));
    sim.control.indexFleet(accountId, fleet);
    sim.control.scriptRunCommand(accountId, '*', { status: 'Success', pendingMs: 200, afterMs: 1000 });

    const commandId = await send(ssm, {
      Targets: [
        { Key: 'tag:app', Values: ['fleetbot'] },
        { Key: 'tag:env', Values: ['bench'] },
      ],
      MaxConcurrency: '500',
    });

    const sent = sim.control.invocations(accountId);
    expect(sent).toHaveLength(10_000);
    // 20 waves of 500, each running 1 s (picked up 200 ms after its send).
    expect(Math.max(...sent.map((inv) => inv.endedAt ?? Number.POSITIVE_INFINITY)) - START).toBe(20_000);
    expect(sent[9_999]).toMatchObject({
      sentAt: START + 19_000,
      startedAt: START + 19_200,
      status: 'Pending',
    });
    at(10_100);
    const middle = await ssm.send(
      new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: sent[5_000]?.instanceId }),
    );
    expect(middle.Status).toBe('Pending');
    at(10_300);
    expect(await command(ssm, commandId)).toMatchObject({ Status: 'InProgress', CompletedCount: 5_000 });
    at(20_000);
    expect(await command(ssm, commandId)).toMatchObject({ Status: 'Success', CompletedCount: 10_000 });
  });
});
