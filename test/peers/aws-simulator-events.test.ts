import { randomBytes } from 'node:crypto';
import { CreateQueueCommand, type Message, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  CancelCommandCommand,
  SendCommandCommand,
  type SendCommandCommandInput,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { testAccountId, withAccount } from './aws-account.js';
import { type AwsSimulator, type RunCommandEventStats, startAwsSimulator } from './aws-simulator.js';

/**
 * Run Command status-change events reaching an SQS queue in moto, as an EventBridge rule targeting
 * that queue delivers them. The simulator runs on the real clock here (but for one test on an
 * injected one): events are emitted by timers, so scripted outcomes take a few hundred milliseconds.
 */

const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const START = Date.parse('2030-01-01T00:00:00Z');
let now = START;

let sim: AwsSimulator;
let manualSim: AwsSimulator;
const clients: { destroy(): void }[] = [];

beforeAll(async () => {
  sim = await startAwsSimulator({ motoUrl: inject('motoUrl') });
  manualSim = await startAwsSimulator({ motoUrl: inject('motoUrl'), clock: () => now });
});

afterAll(async () => {
  for (const client of clients) client.destroy();
  await sim?.close();
  await manualSim?.close();
});

interface InvocationEvent {
  version: string;
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: {
    'command-id': string;
    'document-name': string;
    'instance-id': string;
    'requested-date-time': string;
    status: string;
  };
}

interface Received {
  event: InvocationEvent;
  sentAt: number;
}

/** A fresh account with its own queue; SQS goes through the simulator, which forwards it to moto. */
async function world(simulator = sim) {
  const accountId = testAccountId();
  const config = { region: 'us-east-1', endpoint: simulator.url, credentials, maxAttempts: 1 };
  const ssm = withAccount(new SSMClient(config), accountId);
  const sqs = withAccount(new SQSClient(config), accountId);
  clients.push(ssm, sqs);
  const created = await sqs.send(new CreateQueueCommand({ QueueName: 'run-command-events' }));
  const queueUrl = created.QueueUrl ?? '';
  return { accountId, ssm, sqs, queueUrl, simulator };
}

type World = Awaited<ReturnType<typeof world>>;

function registered(w: World, count: number): string[] {
  return Array.from({ length: count }, () => {
    const id = `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
    w.simulator.control.registerInstance(w.accountId, id);
    return id;
  });
}

async function send(w: World, input: Partial<SendCommandCommandInput> & { InstanceIds: string[] }) {
  const out = await w.ssm.send(new SendCommandCommand({ DocumentName: 'AWS-RunShellScript', ...input }));
  return out.Command?.CommandId ?? '';
}

/** Waits until every event due so far has been sent: `expected` matched the rule and none is held back. */
async function settled(w: World, expected: Partial<RunCommandEventStats>) {
  const stats = () => w.simulator.control.runCommandEventStats(w.accountId);
  await expect.poll(stats, { timeout: 30_000 }).toMatchObject({ ...expected, pending: 0 });
  return stats();
}

function parse(message: Message): Received {
  return {
    event: JSON.parse(message.Body ?? '') as InvocationEvent,
    sentAt: Number(message.Attributes?.SentTimestamp),
  };
}

/**
 * Long-polls until `count` messages have arrived, then checks that no more are waiting. Messages stay
 * invisible long enough not to come round again; SQS hands them out in no promised order, so
 * callers sort by what the events say.
 */
async function receive(w: World, count: number): Promise<Received[]> {
  const got: Received[] = [];
  const poll = async (waitSeconds: number) => {
    const out = await w.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: w.queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: waitSeconds,
        VisibilityTimeout: 600,
        MessageSystemAttributeNames: ['SentTimestamp'],
      }),
    );
    return (out.Messages ?? []).map(parse);
  };
  while (got.length < count) got.push(...(await poll(2)));
  expect(await poll(0)).toEqual([]);
  expect(got).toHaveLength(count);
  return got;
}

function statusesByInstance(received: Received[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const { event } of received) {
    const id = event.detail['instance-id'];
    out[id] = [...(out[id] ?? []), event.detail.status];
  }
  return out;
}

const TERMINAL = ['Success', 'Failed', 'TimedOut', 'Cancelled'];

describe('AWS simulator events: delivery into SQS', () => {
  it('when invocations run to their ends, then each status change arrives once as the EventBridge event, one terminal event per invocation', async () => {
    const w = await world();
    const [ok = '', failed = '', slow = ''] = registered(w, 3);
    w.simulator.control.scriptRunCommand(w.accountId, ok, { status: 'Success', pendingMs: 50, afterMs: 200 });
    w.simulator.control.scriptRunCommand(w.accountId, failed, {
      status: 'Failed',
      pendingMs: 50,
      afterMs: 300,
    });
    w.simulator.control.scriptRunCommand(w.accountId, slow, {
      status: 'TimedOut',
      pendingMs: 50,
      afterMs: 250,
    });
    w.simulator.control.emitRunCommandEvents(w.accountId, { queueUrl: w.queueUrl });

    const commandId = await send(w, { InstanceIds: [ok, failed, slow] });
    await settled(w, { matched: 9, delivered: 9, lost: 0, failed: 0 });
    const received = await receive(w, 9);

    const byTime = [...received].sort(
      (a, b) => a.event.time.localeCompare(b.event.time) || a.sentAt - b.sentAt,
    );
    const first = byTime[0]?.event;
    expect(first).toMatchObject({
      version: '0',
      'detail-type': 'EC2 Command Invocation Status-change Notification',
      source: 'aws.ssm',
      account: w.accountId,
      region: 'us-east-1',
      detail: { 'command-id': commandId, 'document-name': 'AWS-RunShellScript', status: 'Pending' },
    });
    for (const { event } of received) {
      expect(Object.keys(event).sort()).toEqual(
        ['account', 'detail', 'detail-type', 'id', 'region', 'resources', 'source', 'time', 'version'].sort(),
      );
      expect(event.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      expect(event.detail['requested-date-time']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(event.resources).toEqual([
        `arn:aws:ec2:us-east-1:${w.accountId}:instance/${event.detail['instance-id']}`,
      ]);
      expect(event.detail['command-id']).toBe(commandId);
    }
    expect(new Set(received.map((r) => r.event.id)).size).toBe(9);

    const terminal = received.filter((r) => TERMINAL.includes(r.event.detail.status));
    expect(
      Object.fromEntries(terminal.map((r) => [r.event.detail['instance-id'], r.event.detail.status])),
    ).toEqual({ [ok]: 'Success', [failed]: 'Failed', [slow]: 'TimedOut' });
    expect(terminal).toHaveLength(3);
    // Delivered one batch after another in the order they happened, so each invocation's story is in order.
    const ordered = [...received].sort((a, b) => a.sentAt - b.sentAt);
    const stories = statusesByInstance(ordered);
    expect(stories).toEqual({
      [ok]: ['Pending', 'InProgress', 'Success'],
      [failed]: ['Pending', 'InProgress', 'Failed'],
      [slow]: ['Pending', 'InProgress', 'TimedOut'],
    });
  });

  it('when the rule filters on status and document, then only matching events arrive', async () => {
    const w = await world();
    const ids = registered(w, 4);
    w.simulator.control.scriptRunCommand(w.accountId, '*', {
      status: 'Success',
      pendingMs: 20,
      afterMs: 100,
    });
    w.simulator.control.emitRunCommandEvents(w.accountId, {
      queueUrl: w.queueUrl,
      statuses: ['Success', 'Failed', 'TimedOut', 'Cancelled'],
      documents: ['AWS-RunShellScript'],
    });

    const shell = await send(w, { InstanceIds: ids });
    await send(w, { InstanceIds: ids, DocumentName: 'AWS-RunPowerShellScript' });
    await settled(w, { matched: 4, delivered: 4 });
    const received = await receive(w, 4);

    expect(received.map((r) => r.event.detail.status)).toEqual(['Success', 'Success', 'Success', 'Success']);
    expect(new Set(received.map((r) => r.event.detail['command-id']))).toEqual(new Set([shell]));
    expect(received.map((r) => r.event.detail['instance-id']).sort()).toEqual([...ids].sort());
  });

  it('when every event is lost, then none arrives though all of them happened', async () => {
    const w = await world();
    const ids = registered(w, 5);
    w.simulator.control.scriptRunCommand(w.accountId, '*', { status: 'Success', afterMs: 50 });
    w.simulator.control.emitRunCommandEvents(w.accountId, { queueUrl: w.queueUrl, lossRate: 1 });

    await send(w, { InstanceIds: ids });
    // Each invocation: InProgress at once (no pendingMs), then Success.
    await settled(w, { matched: 10, lost: 10, delivered: 0 });
    await receive(w, 0);
  });

  it('when every event is duplicated, then each arrives twice, as two messages carrying the same event', async () => {
    const w = await world();
    const ids = registered(w, 3);
    w.simulator.control.scriptRunCommand(w.accountId, '*', { status: 'Failed', afterMs: 50 });
    w.simulator.control.emitRunCommandEvents(w.accountId, {
      queueUrl: w.queueUrl,
      statuses: ['Failed'],
      duplicateRate: 1,
    });

    await send(w, { InstanceIds: ids });
    await settled(w, { matched: 3, delivered: 6 });
    const received = await receive(w, 6);

    const copies = new Map<string, string[]>();
    for (const { event } of received)
      copies.set(event.id, [...(copies.get(event.id) ?? []), JSON.stringify(event)]);
    expect(copies.size).toBe(3);
    for (const bodies of copies.values()) {
      expect(bodies).toHaveLength(2);
      expect(bodies[0]).toBe(bodies[1]);
    }
    expect(Object.keys(statusesByInstance(received)).sort()).toEqual([...ids].sort());
  });

  it('when delivery is delayed, then events still arrive complete and in order, no earlier than the delay', async () => {
    const w = await world();
    const ids = registered(w, 4);
    const delayMs = 1500;
    const afterMs = 300;
    w.simulator.control.scriptRunCommand(w.accountId, '*', { status: 'Success', pendingMs: 100, afterMs });
    w.simulator.control.emitRunCommandEvents(w.accountId, { queueUrl: w.queueUrl, delayMs });

    const sentAt = Date.now();
    await send(w, { InstanceIds: ids });
    await settled(w, { matched: 12, delivered: 12 });
    const received = await receive(w, 12);

    const ordered = [...received].sort((a, b) => a.sentAt - b.sentAt);
    expect(statusesByInstance(ordered)).toEqual(
      Object.fromEntries(ids.map((id) => [id, ['Pending', 'InProgress', 'Success']])),
    );
    for (const { event, sentAt: queuedAt } of received) {
      if (event.detail.status === 'Success')
        expect(queuedAt).toBeGreaterThanOrEqual(sentAt + afterMs + delayMs);
      else expect(queuedAt).toBeGreaterThanOrEqual(sentAt + delayMs);
    }
  });

  it('when a command is cancelled, then every open invocation ends with a Cancelled event, through Cancelling when the cancel takes time', async () => {
    const w = await world();
    const [quick = '', delivered = '', waiting = ''] = registered(w, 3);
    w.simulator.control.scriptRunCommand(w.accountId, '*', { status: 'InProgress' });
    w.simulator.control.scriptRunCommand(w.accountId, waiting, {
      status: 'Success',
      pendingMs: 600_000,
      afterMs: 600_000,
    });
    w.simulator.control.emitRunCommandEvents(w.accountId, { queueUrl: w.queueUrl });

    const instantly = await send(w, { InstanceIds: [quick] });
    // Without pendingMs the agent has it at once: InProgress is its first status.
    await settled(w, { matched: 1 });
    await w.ssm.send(new CancelCommandCommand({ CommandId: instantly }));
    await settled(w, { matched: 2, delivered: 2 });
    expect(statusesByInstance(await receive(w, 2))).toEqual({ [quick]: ['InProgress', 'Cancelled'] });

    w.simulator.control.setCancelDelay(w.accountId, 300);
    const slowly = await send(w, { InstanceIds: [delivered, waiting] });
    await settled(w, { matched: 4 });
    await w.ssm.send(new CancelCommandCommand({ CommandId: slowly }));
    await settled(w, { matched: 7, delivered: 7 });
    const received = await receive(w, 5);
    expect(statusesByInstance([...received].sort((a, b) => a.sentAt - b.sentAt))).toEqual({
      [delivered]: ['InProgress', 'Cancelling', 'Cancelled'],
      [waiting]: ['Pending', 'Cancelled'],
    });
  });

  it('when events are switched off, then changes from then on are not emitted, not even once they are on again', async () => {
    const w = await world();
    const ids = registered(w, 2);
    w.simulator.control.scriptRunCommand(w.accountId, '*', { status: 'Success', afterMs: 50 });
    w.simulator.control.emitRunCommandEvents(w.accountId, { queueUrl: w.queueUrl, statuses: ['Success'] });
    const before = await send(w, { InstanceIds: ids });
    await settled(w, { matched: 2, delivered: 2 });

    w.simulator.control.emitRunCommandEvents(w.accountId, undefined);
    const during = await send(w, { InstanceIds: ids });
    await expect
      .poll(() => w.simulator.control.invocations(w.accountId).filter((i) => i.commandId === during))
      .toMatchObject([{ status: 'Success' }, { status: 'Success' }]);
    // A rule created now starts from the current statuses: what ended before it is history.
    w.simulator.control.emitRunCommandEvents(w.accountId, { queueUrl: w.queueUrl, statuses: ['Success'] });
    expect(w.simulator.control.runCommandEventStats(w.accountId)).toMatchObject({ matched: 0, pending: 0 });
    const received = await receive(w, 2);
    expect(received.map((r) => r.event.detail['command-id'])).toEqual([before, before]);
  });

  it('when the simulator clock is injected, then events follow it: a test moving it on gets the change at the simulated moment', async () => {
    const w = await world(manualSim);
    const [id = ''] = registered(w, 1);
    w.simulator.control.scriptRunCommand(w.accountId, id, {
      status: 'Success',
      pendingMs: 10_000,
      afterMs: 30_000,
    });
    w.simulator.control.emitRunCommandEvents(w.accountId, { queueUrl: w.queueUrl, delayMs: 0 });

    const requestedAt = now;
    await send(w, { InstanceIds: [id] });
    await settled(w, { matched: 1, delivered: 1 });
    now += 45_000;
    await settled(w, { matched: 3, delivered: 3 });

    const received = await receive(w, 3);
    const byStatus = Object.fromEntries(received.map((r) => [r.event.detail.status, r.event.time]));
    const at = (ms: number) => new Date(requestedAt + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
    expect(byStatus).toEqual({ Pending: at(0), InProgress: at(10_000), Success: at(30_000) });
  });

  it('when MaxConcurrency holds targets back and the clock jumps past them all, then each one still reports every change at its own moment', async () => {
    const w = await world(manualSim);
    const ids = registered(w, 3);
    w.simulator.control.scriptRunCommand(w.accountId, '*', {
      status: 'Success',
      pendingMs: 10_000,
      afterMs: 30_000,
    });
    w.simulator.control.emitRunCommandEvents(w.accountId, { queueUrl: w.queueUrl, delayMs: 0 });

    const requestedAt = now;
    await send(w, { InstanceIds: ids, MaxConcurrency: '1' });
    await settled(w, { matched: 3, delivered: 3 });
    now += 120_000;
    await settled(w, { matched: 9, delivered: 9, open: 0 });

    const at = (ms: number) => new Date(requestedAt + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const timeline: Record<string, string[]> = {};
    for (const { event } of await receive(w, 9)) {
      const id = event.detail['instance-id'];
      timeline[id] = [...(timeline[id] ?? []), `${event.detail.status}@${event.time}`].sort();
    }
    // One at a time: each target is sent when the one before it ends.
    const [first = '', second = '', third = ''] = ids;
    expect(timeline).toEqual({
      [first]: [`InProgress@${at(10_000)}`, `Pending@${at(0)}`, `Success@${at(30_000)}`],
      [second]: [`InProgress@${at(40_000)}`, `Pending@${at(0)}`, `Success@${at(60_000)}`],
      [third]: [`InProgress@${at(70_000)}`, `Pending@${at(0)}`, `Success@${at(90_000)}`],
    });
  });

  it('when 10,000 invocations run, then every one is followed to its end and each failure arrives once', async () => {
    const w = await world();
    const ids = registered(w, 10_000);
    const failing = new Set(ids.filter((_, i) => i % 500 === 0));
    // Ends spread over a second and a half, so the emitter sees many distinct due moments. Only the
    // failures reach the queue: moto's SendMessage counts every message already queued, so a queue
    // of thousands slows it to a crawl.
    w.simulator.control.scriptRunCommand(w.accountId, '*', (_doc, _params, instanceId) => ({
      status: failing.has(instanceId) ? 'Failed' : 'Success',
      pendingMs: 100,
      afterMs: 100 + (Number.parseInt(instanceId.slice(-3), 16) % 1500),
    }));
    w.simulator.control.emitRunCommandEvents(w.accountId, { queueUrl: w.queueUrl, statuses: ['Failed'] });

    for (let i = 0; i < ids.length; i += 50) await send(w, { InstanceIds: ids.slice(i, i + 50) });
    await settled(w, { open: 0, matched: failing.size, delivered: failing.size, failed: 0 });
    const received = await receive(w, failing.size);
    expect(new Set(received.map((r) => r.event.detail['instance-id']))).toEqual(failing);
  }, 180_000);
});

describe('AWS simulator events: HTTP control API', () => {
  it('when the sandbox switches events on over HTTP, then they arrive, stats are readable, bad rules are refused and DELETE switches them off', async () => {
    const w = await world();
    const [id = ''] = registered(w, 1);
    const call = (method: string, route: string, body?: unknown) =>
      fetch(`${sim.url}/_sim/${route}`, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    w.simulator.control.scriptRunCommand(w.accountId, id, { status: 'Success', afterMs: 50 });

    const bad = await call('POST', 'run-command-events', {
      accountId: w.accountId,
      queueUrl: w.queueUrl,
      lossRate: 2,
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toContain('lossRate');
    const badStatus = await call('POST', 'run-command-events', {
      accountId: w.accountId,
      queueUrl: w.queueUrl,
      statuses: ['Undeliverable'],
    });
    expect(badStatus.status).toBe(400);

    const on = await call('POST', 'run-command-events', {
      accountId: w.accountId,
      queueUrl: w.queueUrl,
      statuses: ['Success'],
      delayMs: 10,
      seed: 'sandbox',
    });
    expect(on.status).toBe(200);
    const commandId = await send(w, { InstanceIds: [id] });
    await settled(w, { matched: 1, delivered: 1 });
    const stats = await call('GET', `run-command-events?accountId=${w.accountId}`);
    expect((await stats.json()) as unknown).toEqual({
      stats: { matched: 1, lost: 0, delivered: 1, failed: 0, pending: 0, open: 0 },
    });
    const [received] = await receive(w, 1);
    expect(received?.event.detail).toMatchObject({ 'command-id': commandId, status: 'Success' });

    expect((await call('DELETE', `run-command-events?accountId=${w.accountId}`)).status).toBe(200);
    expect(w.simulator.control.runCommandEventStats(w.accountId)).toMatchObject({ matched: 0 });
    expect((await call('DELETE', 'run-command-events')).status).toBe(400);
  });

  it('when the queue does not exist, then the messages count as failed with the reason', async () => {
    const w = await world();
    const [id = ''] = registered(w, 1);
    w.simulator.control.emitRunCommandEvents(w.accountId, {
      queueUrl: `${w.queueUrl}-missing`,
      statuses: ['Success'],
    });
    await send(w, { InstanceIds: [id] });
    const stats = await settled(w, { matched: 1, delivered: 0, failed: 1 });
    expect(stats.lastError).toContain('does not exist');
  });
});
