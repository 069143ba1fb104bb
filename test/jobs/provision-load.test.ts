import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createFleet } from '../../src/aws/fleet.js';
import { createRunCommand } from '../../src/aws/run-command.js';
import { createSecretStore } from '../../src/aws/secret-store.js';
import type { OutgoingMessage } from '../../src/core/chat.js';
import { createHealthPoller } from '../../src/jobs/health-poller.js';
import { type ProvisionDeps, type ProvisionJob, processProvision } from '../../src/jobs/provision.js';
import type { ProvisionPayload } from '../../src/jobs/queues.js';
import { main, type Running } from '../../src/main.js';
import { createPacer } from '../../src/store/rate-limits.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { expectPaced, pacerSlots } from '../support/pacer-slots.js';
import { capturedLogger } from '../support/quiet-log.js';

/** Provisioning under crashes, racing workers and fifty members at once, read from the simulator's call log. */

const token = `7800000008:${'L'.repeat(35)}`;
const accountId = testAccountId();
const prefix = uniquePrefix('provision-load');
const redis = testRedis();
const logs = capturedLogger();
const members = Array.from({ length: 50 }, (_, i) => 9100 + i);
const crashUser = 9099;
const pollMs = 250;
let simulator: AwsSimulator;
let fake: FakeTelegram;
let ec2: EC2Client;
let ssm: SSMClient;
const processes: Running[] = [];

const env = () => ({
  AWS_REGION: 'us-east-1',
  AWS_ENDPOINT_URL: simulator.url,
  REDIS_URL: testRedisUrl,
  REDIS_PREFIX: prefix,
  PARAMETER_PREFIX: 'fbload',
  TELEGRAM_BOT_TOKEN: token,
  TELEGRAM_API_ROOT: fake.apiRoot,
  TELEGRAM_ALLOWED_USER_IDS: members.join(','),
  INSTANCE_AMI_ID: 'ami-12c6146b',
  PROVISION_POLL_MS: String(pollMs),
  // Debug, for the launch pacer's slots.
  LOG_LEVEL: 'debug',
});

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  simulator.control.setBootTiming(accountId, { pendingMs: 1000, initializingMs: 1000 });
  fake = await startFakeTelegram();
  fake.addBot(token);
  const options = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  ec2 = new EC2Client(options);
  ssm = new SSMClient(options);
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  for (const userId of [...members, crashUser])
    for (const kind of ['telegram-bot-token', 'openai-api-key'])
      await ssm.send(
        new PutParameterCommand({
          Name: `/fbload/users/${userId}/${kind}`,
          Value: `v-${userId}`,
          Type: 'SecureString',
        }),
      );
});

afterAll(async () => {
  for (const p of processes) await p.stop();
  await fake?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

async function liveInstances(userId: number) {
  const res = await ec2.send(
    new DescribeInstancesCommand({ Filters: [{ Name: 'tag:user', Values: [String(userId)] }] }),
  );
  return (res.Reservations ?? [])
    .flatMap((r) => r.Instances ?? [])
    .filter((i) => i.State?.Name !== 'terminated');
}

describe('crash safety', () => {
  it('when a worker dies between launch and recording the instance, then the retried job adopts it instead of launching again', async () => {
    const edits: OutgoingMessage[] = [];
    const fleet = createFleet(ec2, {
      region: 'us-east-1',
      env: 'dev',
      amiId: 'ami-12c6146b',
      instanceType: 't3.small',
    });
    const poller = createHealthPoller(fleet, pollMs, logs.log);
    const deps: ProvisionDeps = {
      fleet,
      runCommand: createRunCommand(ssm),
      secrets: createSecretStore(ssm, { prefix: 'fbload', kmsKeyId: 'alias/aws/ssm' }),
      poller,
      launchPacer: createPacer(redis, `${prefix}:pace:crash`, 2),
      outboxes: {
        console: {
          send: async () => undefined,
          edit: async (_ref, message) => {
            edits.push(message);
          },
        },
      },
      settings: {
        parameterPrefix: 'fbload',
        requiredSecrets: ['telegram-bot-token', 'openai-api-key'],
        onFailure: 'terminate',
        pollMs,
        timeoutsMs: { running: 20_000, checks: 20_000, bootstrap: 20_000 },
        bootstrapCheckDocument: 'fleetbot-bootstrap-check',
        serviceName: 'assistant',
        editIntervalMs: 10,
      },
      log: logs.log,
    };
    const payload: ProvisionPayload = {
      userId: String(crashUser),
      mode: 'provision',
      requestedBy: 'test',
      startedAt: Date.now(),
      message: { platform: 'console', chatId: 'c', messageId: '1' },
    };
    const crashing: ProvisionJob = {
      id: `provision-${crashUser}`,
      timestamp: 1,
      data: { ...payload },
      updateData: async () => {
        throw new Error('worker died');
      },
    };
    await expect(processProvision(crashing, deps)).rejects.toThrow('worker died');
    expect(await liveInstances(crashUser)).toHaveLength(1);

    // BullMQ hands the job, with its last saved data (no instance id), to the next worker.
    const retried: ProvisionJob = {
      ...crashing,
      data: { ...payload },
      updateData: async (next) => {
        retried.data = next;
      },
    };
    const result = await processProvision(retried, deps);
    const live = await liveInstances(crashUser);
    expect(live).toHaveLength(1);
    expect(result.instanceId).toBe(live[0]?.InstanceId);
    expect(retried.data.instanceId).toBe(live[0]?.InstanceId);
    expect(simulator.control.calls(accountId, 'RunInstances').filter((c) => c.status === 200)).toHaveLength(
      1,
    );
    expect(edits.at(-1)?.text).toMatch(/^Your server is ready/);
    poller.stop();
  }, 60_000);
});

describe('fifty members at once, two workers', () => {
  it('when fifty members provision together, then all are ready with one instance each, launches are paced and status polls are batched', async () => {
    processes.push(await main(env(), ['--role', 'bot'], { logDestination: logs.destination }));
    processes.push(await main(env(), ['--role', 'worker'], { logDestination: logs.destination }));
    processes.push(await main(env(), ['--role', 'worker'], { logDestination: logs.destination }));
    // Boots long enough that many provisions wait at once, as with real EC2.
    simulator.control.setBootTiming(accountId, { pendingMs: 4000, initializingMs: 4000 });
    simulator.control.resetCalls(accountId);
    const messages = await Promise.all(
      members.map(async (userId) => {
        const before = fake.chat(token, userId).sent.length;
        fake.sendUserMessage(token, { userId, text: '/provision', firstName: 'L' });
        // grammY handles updates one at a time, so under a burst the last member waits for all the others.
        return fake.waitFor(() => fake.chat(token, userId).sent.slice(before)[0], 60_000);
      }),
    );
    await fake.waitFor(
      () =>
        members.every((userId, i) =>
          fake
            .chat(token, userId)
            .messages.find((m) => m.message_id === messages[i]?.message_id)
            ?.text?.startsWith('Your server is ready'),
        ),
      90_000,
    );

    for (const userId of members) expect(await liveInstances(userId)).toHaveLength(1);
    const launches = simulator.control.calls(accountId, 'RunInstances').map((c) => c.at);
    expect(launches).toHaveLength(50);
    // At most 2 launches per second across both workers, as EC2 meters them: read from the slots the
    // shared pacer handed out, since arrival times on a loaded machine bunch up after a stall.
    expectPaced(launches, pacerSlots(logs.lines, `${prefix}:pace:run-instances`), 2);
    // One batched DescribeInstanceStatus per tick per worker, not one per instance per tick: read as
    // how many instances each call carried (a call per instance would carry exactly one), so the check
    // counts calls and never depends on how fast a loaded machine ticks.
    const instancesPerPoll = simulator.control
      .calls(accountId, 'DescribeInstanceStatus')
      .map((c) => Object.keys(c.params).filter((k) => k.startsWith('InstanceId.')).length);
    const checked = instancesPerPoll.reduce((sum, n) => sum + n, 0);
    expect(checked / instancesPerPoll.length).toBeGreaterThan(3);
    expect(Math.max(...instancesPerPoll)).toBeGreaterThan(10);
  }, 180_000);
});
