import { DescribeInstancesCommand, EC2Client, StopInstancesCommand } from '@aws-sdk/client-ec2';
import {
  AddTagsToResourceCommand,
  ListTagsForResourceCommand,
  PutParameterCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { Queue } from 'bullmq';
import { Api } from 'grammy';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { launchInstances } from '../support/fleet.js';
import { capturedLogger } from '../support/quiet-log.js';

/**
 * A provision job resumes from what its record in Redis says. Whoever can write Redis could point
 * that record at another member's instance; the worker must check with EC2 before it binds (or
 * starts) anything: real BullMQ jobs, tampered in Redis, run by a real worker against the simulator.
 */

const token = `7700000027:${'X'.repeat(35)}`;
const canary = `sk-CANARY${Date.now()}tamper${'c'.repeat(10)}`;
const accountId = testAccountId();
const prefix = uniquePrefix('provision-tamper');
const redis = testRedis();
const logs = capturedLogger();
const parameterPrefix = 'fbtamper';
const victim = '9251';
const attacker = '9252';
const starter = '9253';
const kinds = ['telegram-bot-token', 'openai-api-key'];
let simulator: AwsSimulator;
let fake: FakeTelegram;
let worker: Running;
let ec2: EC2Client;
let ssm: SSMClient;
let queue: Queue;
let victimInstance: string;
let victimArn: string;

const paramName = (userId: string, kind: string) => `/${parameterPrefix}/users/${userId}/${kind}`;

async function tagsOf(userId: string, kind: string): Promise<Record<string, string | undefined>> {
  const res = await ssm.send(
    new ListTagsForResourceCommand({ ResourceType: 'Parameter', ResourceId: paramName(userId, kind) }),
  );
  return Object.fromEntries((res.TagList ?? []).map((t) => [t.Key ?? '', t.Value]));
}

async function instance(instanceId: string) {
  const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  return res.Reservations?.[0]?.Instances?.[0];
}

async function userInstances(userId: string) {
  const res = await ec2.send(
    new DescribeInstancesCommand({ Filters: [{ Name: 'tag:user', Values: [userId] }] }),
  );
  return (res.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  simulator.control.scriptRunCommand(accountId, '*', { status: 'Success', output: 'bootstrap done' });
  fake = await startFakeTelegram();
  fake.addBot(token, { username: 'fleet_tamper_bot' });
  const clientOptions = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    maxAttempts: 1,
  };
  ec2 = new EC2Client(clientOptions);
  ssm = new SSMClient(clientOptions);
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  for (const userId of [victim, attacker, starter])
    for (const kind of kinds)
      await ssm.send(
        new PutParameterCommand({
          Name: paramName(userId, kind),
          Value: kind === 'openai-api-key' ? canary : `77${userId}:${'T'.repeat(35)}`,
          Type: 'SecureString',
        }),
      );
  // The victim's server, bound to the victim's parameters as a finished provision leaves it.
  [victimInstance = ''] = await launchInstances(ec2, 1, { app: 'fleetbot', env: 'dev', user: victim });
  const described = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [victimInstance] }));
  victimArn = `arn:aws:ec2:us-east-1:${described.Reservations?.[0]?.OwnerId}:instance/${victimInstance}`;
  for (const kind of kinds)
    await ssm.send(
      new AddTagsToResourceCommand({
        ResourceType: 'Parameter',
        ResourceId: paramName(victim, kind),
        Tags: [{ Key: 'InstanceArn', Value: victimArn }],
      }),
    );
  queue = new Queue('provision', { connection: redis, prefix });
  worker = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      PARAMETER_PREFIX: parameterPrefix,
      TELEGRAM_BOT_TOKEN: token,
      TELEGRAM_API_ROOT: fake.apiRoot,
      INSTANCE_AMI_ID: 'ami-12c6146b',
      PROVISION_POLL_MS: '200',
      LOG_LEVEL: 'debug',
    },
    ['--role', 'worker'],
    { logDestination: logs.destination },
  );
});

afterAll(async () => {
  await worker?.stop();
  await queue?.close();
  await fake?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

/**
 * Queues a provision for `userId` as the bot would (with the message it owns), then, while the
 * queue is paused so no worker has read it yet, rewrites its record in Redis to name `instanceId`.
 */
async function tamperedJob(userId: string, mode: 'provision' | 'start', instanceId: string) {
  fake.sendUserMessage(token, { userId: Number(userId), text: '/provision' });
  const message = await new Api(token, { apiRoot: fake.apiRoot }).sendMessage(
    Number(userId),
    'Setting up your server: launching…',
  );
  await queue.pause();
  const data = {
    userId,
    mode,
    requestedBy: `telegram:${userId}`,
    startedAt: Date.now(),
    message: { platform: 'telegram', chatId: userId, messageId: String(message.message_id) },
  };
  const jobId = `provision-${userId}`;
  await queue.add(mode, data, { jobId, attempts: 3, backoff: { type: 'exponential', delay: 5000 } });
  await redis.hset(`${prefix}:provision:${jobId}`, 'data', JSON.stringify({ ...data, instanceId }));
  expect((await queue.getJob(jobId))?.data.instanceId).toBe(instanceId);
  await queue.resume();
  await expect.poll(async () => (await queue.getJob(jobId))?.getState(), { timeout: 30_000 }).toBe('failed');
  const job = await queue.getJob(jobId);
  const text = fake
    .chat(token, Number(userId))
    .messages.find((m) => m.message_id === message.message_id)?.text;
  return { job, text: text ?? '' };
}

describe('a provision record pointing at another member’s instance', () => {
  it('when a resumed provision names the victim’s instance, then it is refused and nothing is bound, launched or terminated', async () => {
    const { job, text } = await tamperedJob(attacker, 'provision', victimInstance);
    expect(text).toBe(
      `Setting up your server was refused: instance ${victimInstance} does not belong to you, so I did not give it access to your secrets and changed nothing.\nThe admins have been told.`,
    );
    // Refused for good at the first attempt: no retry could make it theirs.
    expect(job?.attemptsMade).toBe(1);
    expect(job?.failedReason).toContain(`refused: instance ${victimInstance} does not belong to you`);
    // The record stays as it was found, for whoever looks into it.
    expect(job?.data).toMatchObject({ instanceId: victimInstance });
    expect(job?.data.boundArn).toBeUndefined();
    for (const kind of kinds) {
      expect(await tagsOf(attacker, kind)).not.toHaveProperty('InstanceArn');
      expect((await tagsOf(victim, kind)).InstanceArn).toBe(victimArn);
    }
    expect((await instance(victimInstance))?.State?.Name).toBe('running');
    expect(await userInstances(attacker)).toEqual([]);
    const refusals = logs.lines.filter((l) => l.includes('"security":"binding-refused"'));
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toContain(`"instanceId":"${victimInstance}"`);
    expect(refusals[0]).toContain(`user=${victim}`);
  });

  it('when a resumed start names the victim’s stopped instance, then it is refused and the instance stays stopped', async () => {
    await ec2.send(new StopInstancesCommand({ InstanceIds: [victimInstance] }));
    await expect.poll(async () => (await instance(victimInstance))?.State?.Name).toBe('stopped');
    const starts = simulator.control.calls(accountId, 'StartInstances').length;
    const { text } = await tamperedJob(starter, 'start', victimInstance);
    expect(text).toContain(
      `Starting your server was refused: instance ${victimInstance} does not belong to you`,
    );
    expect(simulator.control.calls(accountId, 'StartInstances')).toHaveLength(starts);
    expect((await instance(victimInstance))?.State?.Name).toBe('stopped');
    for (const kind of kinds) expect(await tagsOf(starter, kind)).not.toHaveProperty('InstanceArn');
  });

  it('when it is over, then no log line holds a secret', async () => {
    expect(logs.lines.length).toBeGreaterThan(0);
    expect(logs.lines.filter((l) => l.includes(canary))).toEqual([]);
  });
});
