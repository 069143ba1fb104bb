import {
  CreateLaunchTemplateCommand,
  DescribeInstancesCommand,
  DescribeSubnetsCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import { ListTagsForResourceCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import type { Message } from 'grammy/types';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createFleet } from '../../src/aws/fleet.js';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, type CallRecord, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { capturedLogger } from '../support/quiet-log.js';
import { deploySecretBinder } from '../support/secret-binder.js';

/**
 * What real AWS does and moto does not, end to end (bot, worker, AWS simulator, fake Bot API, Redis):
 * DescribeInstanceStatus not knowing an instance RunInstances just launched, a parameter that was
 * forgotten before its server was destroyed, and RunInstances refusals (no capacity, a reused
 * ClientToken, an instance profile IAM has not propagated yet).
 */

const token = `7700000017:${'E'.repeat(35)}`;
const canary = `sk-CANARY${Date.now()}awserrors${'c'.repeat(10)}`;
const accountId = testAccountId();
const prefix = uniquePrefix('provision-aws-errors');
const redis = testRedis();
const logs = capturedLogger();
const profileName = 'fleetbot-instance';
const users = {
  first: 9101,
  second: 9102,
  forgetful: 9103,
  denied: 9104,
  fallback: 9105,
  noCapacity: 9106,
  mismatch: 9107,
  propagating: 9108,
  badProfile: 9109,
  bound: 9110,
  refused: 9111,
};
/** The simulator's clock runs ahead of the real one by this much: tests move time instead of sleeping. */
let skewMs = 0;
let simulator: AwsSimulator;
let fake: FakeTelegram;
let bot: Running;
let worker: Running | undefined;
let ec2: EC2Client;
let ssm: SSMClient;
let subnets: string[] = [];

const baseEnv = () => ({
  AWS_REGION: 'us-east-1',
  AWS_ENDPOINT_URL: simulator.url,
  REDIS_URL: testRedisUrl,
  REDIS_PREFIX: prefix,
  PARAMETER_PREFIX: 'fbawserr',
  TELEGRAM_BOT_TOKEN: token,
  TELEGRAM_API_ROOT: fake.apiRoot,
  INSTANCE_AMI_ID: 'ami-12c6146b',
  INSTANCE_TYPE: 't3.small,t3a.small',
  INSTANCE_SUBNET_ID: subnets.join(','),
  INSTANCE_PROFILE_NAME: profileName,
  INSTANCE_SERVICE_VERSION: 'v1.4.0',
  PROVISION_POLL_MS: '200',
  // Members' own limits are tested in test/bot/member-limits.test.ts; here they would only
  // refuse the repeated provisions these tests make.
  PROVISION_COOLDOWN_SECONDS: '0',
  LAUNCHES_PER_MEMBER_PER_DAY: '100',
  MEMBER_COMMANDS_PER_MINUTE: '1000',
  MEMBER_SERVER_ACTIONS_PER_HOUR: '1000',
  PROVISION_CHECKS_TIMEOUT_SECONDS: '60',
  PROVISION_BOOTSTRAP_TIMEOUT_SECONDS: '30',
  LOG_LEVEL: 'debug',
});

async function startWorker(extra: Record<string, string> = {}): Promise<Running> {
  return main({ ...baseEnv(), ...extra }, ['--role', 'worker'], { logDestination: logs.destination });
}

/** IAM through the simulator (moto): RunInstances with a profile name moto does not know fails. */
async function createInstanceProfile(name: string): Promise<void> {
  const res = await fetch(simulator.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization:
        'AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0',
    },
    body: new URLSearchParams({
      Action: 'CreateInstanceProfile',
      InstanceProfileName: name,
      Version: '2010-05-08',
    }),
  });
  if (!res.ok) throw new Error(`CreateInstanceProfile answered ${res.status}: ${await res.text()}`);
}

beforeAll(async () => {
  simulator = await startAwsSimulator({
    motoUrl: inject('motoUrl'),
    defaultAccountId: accountId,
    clock: () => Date.now() + skewMs,
  });
  simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 500 });
  // Every bootstrap check finds setup done: what is under test is how instances get there.
  simulator.control.scriptRunCommand(accountId, '*', { status: 'Success', output: 'bootstrap done' });
  fake = await startFakeTelegram();
  fake.addBot(token, { username: 'fleet_awserrors_bot' });
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
  await createInstanceProfile(profileName);
  const described = await ec2.send(
    new DescribeSubnetsCommand({ Filters: [{ Name: 'default-for-az', Values: ['true'] }] }),
  );
  subnets = (described.Subnets ?? [])
    .map((s) => s.SubnetId ?? '')
    .filter(Boolean)
    .sort()
    .slice(0, 2);
  expect(subnets).toHaveLength(2);
  for (const userId of Object.values(users))
    for (const [kind, value] of [
      ['telegram-bot-token', `77${userId}:${'T'.repeat(35)}`],
      ['openai-api-key', canary],
    ])
      await ssm.send(
        new PutParameterCommand({
          Name: `/fbawserr/users/${userId}/${kind}`,
          Value: value,
          Type: 'SecureString',
        }),
      );
  bot = await main(
    { ...baseEnv(), TELEGRAM_ALLOWED_USER_IDS: Object.values(users).join(',') },
    ['--role', 'bot'],
    { logDestination: logs.destination },
  );
  worker = await startWorker({ INSTANCE_PROFILE_WAIT_SECONDS: '120' });
});

afterAll(async () => {
  await worker?.stop();
  await bot?.stop();
  await fake?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

async function send(userId: number, text: string): Promise<Message.TextMessage> {
  const before = fake.chat(token, userId).sent.length;
  fake.sendUserMessage(token, { userId, text, firstName: 'E' });
  return (await fake.waitFor(
    () => fake.chat(token, userId).sent.slice(before)[0],
    10_000,
  )) as Message.TextMessage;
}

/** Presses a button on `question` and returns the bot's next new message. */
async function press(
  userId: number,
  question: Message.TextMessage,
  data: string,
): Promise<Message.TextMessage> {
  const before = fake.chat(token, userId).sent.length;
  fake.pressButton(token, { chatId: userId, userId, messageId: question.message_id, data });
  return (await fake.waitFor(
    () => fake.chat(token, userId).sent.slice(before)[0],
    10_000,
  )) as Message.TextMessage;
}

const currentText = (userId: number, messageId: number) =>
  fake.chat(token, userId).messages.find((m) => m.message_id === messageId)?.text ?? '';

const waitForText = (userId: number, message: Message.TextMessage, pattern: RegExp, timeoutMs = 40_000) =>
  fake.waitFor(() => pattern.test(currentText(userId, message.message_id)), timeoutMs);

async function userInstances(userId: number) {
  const res = await ec2.send(
    new DescribeInstancesCommand({ Filters: [{ Name: 'tag:user', Values: [String(userId)] }] }),
  );
  return (res.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}

const liveInstances = async (userId: number) =>
  (await userInstances(userId)).filter((i) => !['terminated', 'shutting-down'].includes(i.State?.Name ?? ''));

/** The `InstanceId.N` values of a recorded EC2 call. */
const idsOf = (call: CallRecord) =>
  Object.entries(call.params)
    .filter(([key]) => /^InstanceId\.\d+$/.test(key))
    .map(([, value]) => String(value));

const statusCalls = () => simulator.control.calls(accountId, 'DescribeInstanceStatus');
const runCalls = () => simulator.control.calls(accountId, 'RunInstances');

describe('health poll while EC2 does not know a new instance yet', () => {
  afterEach(() => {
    simulator.control.setVisibilityLag(accountId, { instanceStatusMs: 0 });
    simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 500 });
  });

  it('when one waiting instance was just launched, then the other provision still gets its status on the same tick and both reach ready', async () => {
    // A boots for two hours of simulator time, so it waits in "health checks" until the clock is moved.
    simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 2 * 3_600_000 });
    const first = await send(users.first, '/provision');
    await waitForText(users.first, first, /health checks…/);
    const [a] = await liveInstances(users.first);
    const idA = a?.InstanceId ?? '';
    expect(idA).toMatch(/^i-/);

    // An hour on, DescribeInstanceStatus knows instances launched more than 30 minutes ago: A, not B.
    simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 500 });
    skewMs += 3_600_000;
    simulator.control.setVisibilityLag(accountId, { instanceStatusMs: 1_800_000 });
    const statusBefore = statusCalls().length;
    const second = await send(users.second, '/provision');
    let idB = '';
    await expect
      .poll(async () => (idB = (await liveInstances(users.second))[0]?.InstanceId ?? ''), { timeout: 20_000 })
      .not.toBe('');

    // The poll naming both fails whole; the same tick asks again for A alone, and A gets its status.
    const retried = () => {
      const calls = statusCalls().slice(statusBefore);
      const i = calls.findIndex((c) => c.status === 400 && idsOf(c).includes(idA) && idsOf(c).includes(idB));
      return i >= 0 && calls[i + 1]?.status === 200 && idsOf(calls[i + 1] as CallRecord).join() === idA;
    };
    await expect.poll(retried, { timeout: 20_000 }).toBe(true);

    // Another hour: A's checks pass. B launched an hour ago is still unknown (lag 90 minutes).
    simulator.control.setVisibilityLag(accountId, { instanceStatusMs: 5_400_000 });
    skewMs += 3_600_000;
    await waitForText(users.first, first, /^Your server is ready/);
    // A became ready while every status call naming B failed: B was never seen, and B still waits.
    expect(
      statusCalls()
        .slice(statusBefore)
        .filter((c) => idsOf(c).includes(idB))
        .every((c) => c.status === 400),
    ).toBe(true);
    expect(currentText(users.second, second.message_id)).toMatch(/^Setting up your server: /);

    // EC2 catches up: B goes on from where it waited.
    simulator.control.setVisibilityLag(accountId, { instanceStatusMs: 0 });
    await waitForText(users.second, second, /^Your server is ready/);
    expect(currentText(users.second, second.message_id)).toContain(idB);
    expect(logs.lines.filter((l) => l.includes('status poll failed'))).toEqual([]);
  }, 90_000);
});

describe('fleet.health when EC2 names no id', () => {
  afterEach(() => simulator.control.clearFaults(accountId));

  it('when InvalidInstanceID.NotFound names none of the ids, then each half is asked on its own and the rest still get their health', async () => {
    const fleet = createFleet(ec2, { region: 'us-east-1', env: 'dev', instanceType: 't3.small' });
    const ids = [
      (await liveInstances(users.first))[0]?.InstanceId ?? '',
      (await liveInstances(users.second))[0]?.InstanceId ?? '',
    ];
    expect(ids.every((id) => id.startsWith('i-'))).toBe(true);
    const notFound = {
      operation: 'DescribeInstanceStatus',
      kind: 'error' as const,
      code: 'InvalidInstanceID.NotFound',
    };

    let before = statusCalls().length;
    simulator.control.injectFault(accountId, { ...notFound, count: 1 });
    const both = await fleet.health(ids);
    expect([...both.keys()].sort()).toEqual([...ids].sort());
    expect(
      statusCalls()
        .slice(before)
        .map((c) => [idsOf(c), c.status]),
    ).toEqual([
      [ids, 400],
      [[ids[0]], 200],
      [[ids[1]], 200],
    ]);

    // The first half fails again on its own: that one id gets no health this time, the other does.
    before = statusCalls().length;
    simulator.control.injectFault(accountId, { ...notFound, count: 2 });
    const one = await fleet.health(ids);
    expect([...one.keys()]).toEqual([ids[1]]);
    expect(
      statusCalls()
        .slice(before)
        .map((c) => c.status),
    ).toEqual([400, 400, 200]);
  });
});

describe('/destroy after /forget', () => {
  async function provisioned(userId: number): Promise<string> {
    const message = await send(userId, '/provision');
    await waitForText(userId, message, /^Your server is ready/);
    return (await liveInstances(userId))[0]?.InstanceId ?? '';
  }

  async function forgetAll(userId: number) {
    for (const kind of ['openai-api-key', 'telegram-bot-token']) {
      const question = await send(userId, `/forget ${kind}`);
      expect(question.text).toContain(`Delete your stored ${kind}?`);
      expect((await press(userId, question, `/forget-confirmed ${kind}`)).text).toBe(`Deleted your ${kind}.`);
    }
  }

  it('when the member forgot their secrets and then destroys, then the reply comes and the instance is terminated', async () => {
    const instanceId = await provisioned(users.forgetful);
    await forgetAll(users.forgetful);
    const untagsBefore = simulator.control.calls(accountId, 'RemoveTagsFromResource').length;
    const question = await send(users.forgetful, '/destroy');
    expect(question.text).toContain(`Terminate your server ${instanceId}?`);
    const done = await press(users.forgetful, question, '/destroy-confirmed');
    expect(done.text).toBe(`Your server ${instanceId} is being terminated.`);
    await expect.poll(async () => liveInstances(users.forgetful)).toEqual([]);
    // moto answers InvalidResourceId for a parameter that no longer exists, as SSM does.
    const untags = simulator.control.calls(accountId, 'RemoveTagsFromResource').slice(untagsBefore);
    expect(untags.map((c) => c.status)).toEqual([400, 400]);
  }, 60_000);

  it('when unbinding fails for another reason, then the member still hears the server is going and why the link stays', async () => {
    const instanceId = await provisioned(users.denied);
    simulator.control.injectFault(accountId, {
      operation: 'RemoveTagsFromResource',
      kind: 'error',
      code: 'AccessDeniedException',
      count: 1,
    });
    const question = await send(users.denied, '/destroy');
    const done = await press(users.denied, question, '/destroy-confirmed');
    expect(done.text).toBe(
      `Your server ${instanceId} is being terminated. Your stored secrets could not be unlinked from it (AWS answered AccessDeniedException); no other server can read them, and your next server links them to itself.`,
    );
    await expect.poll(async () => liveInstances(users.denied)).toEqual([]);
    const tags = await ssm.send(
      new ListTagsForResourceCommand({
        ResourceType: 'Parameter',
        ResourceId: `/fbawserr/users/${users.denied}/telegram-bot-token`,
      }),
    );
    expect(tags.TagList?.find((t) => t.Key === 'InstanceArn')?.Value).toContain(instanceId);
    // The refusal hit the first parameter only; the next one was still unbound.
    const next = await ssm.send(
      new ListTagsForResourceCommand({
        ResourceType: 'Parameter',
        ResourceId: `/fbawserr/users/${users.denied}/openai-api-key`,
      }),
    );
    expect(next.TagList?.find((t) => t.Key === 'InstanceArn')).toBeUndefined();
  }, 60_000);
});

describe('RunInstances refusals', () => {
  afterEach(() => simulator.control.clearFaults(accountId));

  /** Provisions and returns the text the progress message ends with once the admins were told. */
  async function provisionFails(userId: number): Promise<string> {
    const message = await send(userId, '/provision');
    await waitForText(userId, message, /The admins have been told\./);
    return currentText(userId, message.message_id);
  }

  const placementOf = (c: CallRecord) => [c.params.InstanceType, c.params.SubnetId];

  it('when the first type has no capacity in either subnet, then the next type is launched with its own ClientToken', async () => {
    const before = runCalls().length;
    simulator.control.injectFault(accountId, {
      operation: 'RunInstances',
      kind: 'error',
      code: 'InsufficientInstanceCapacity',
      message:
        'We currently do not have sufficient t3.small capacity in the Availability Zone you requested.',
      count: 2,
    });
    const message = await send(users.fallback, '/provision');
    await waitForText(users.fallback, message, /^Your server is ready/);
    const calls = runCalls().slice(before);
    expect(calls.map(placementOf)).toEqual([
      ['t3.small', subnets[0]],
      ['t3.small', subnets[1]],
      ['t3a.small', subnets[0]],
    ]);
    expect(calls.map((c) => c.status)).toEqual([400, 400, 200]);
    const tokens = calls.map((c) => String(c.params.ClientToken));
    expect(new Set(tokens).size).toBe(3);
    for (const t of tokens) expect(t.length).toBeLessThanOrEqual(64);
    const [instance] = await liveInstances(users.fallback);
    expect(instance?.InstanceType).toBe('t3a.small');
    expect(instance?.SubnetId).toBe(subnets[0]);
  }, 60_000);

  it('when no type has capacity in any subnet, then every placement is tried once and the member is told there is none right now', async () => {
    const before = runCalls().length;
    simulator.control.injectFault(accountId, {
      operation: 'RunInstances',
      kind: 'error',
      code: 'InsufficientInstanceCapacity',
    });
    expect(await provisionFails(users.noCapacity)).toBe(
      'AWS has no capacity for t3.small or t3a.small in any of the 2 configured subnets right now, so nothing was launched.\nThe admins have been told. You can try /provision again later.',
    );
    const calls = runCalls().slice(before);
    expect(calls.map(placementOf)).toEqual([
      ['t3.small', subnets[0]],
      ['t3.small', subnets[1]],
      ['t3a.small', subnets[0]],
      ['t3a.small', subnets[1]],
    ]);
    expect(new Set(calls.map((c) => c.params.ClientToken)).size).toBe(4);
    expect(await liveInstances(users.noCapacity)).toEqual([]);
  }, 60_000);

  it('when EC2 answers IdempotentParameterMismatch, then nothing is retried or launched and the member is told why', async () => {
    const before = runCalls().length;
    simulator.control.injectFault(accountId, {
      operation: 'RunInstances',
      kind: 'error',
      code: 'IdempotentParameterMismatch',
      message: 'The client token you have provided is associated with a resource that is already deleted.',
      count: 1,
    });
    expect(await provisionFails(users.mismatch)).toBe(
      'AWS refused the launch: its request token was already used with other settings (IdempotentParameterMismatch), so no second server was launched.\nThe admins have been told. You can try /provision again later.',
    );
    expect(runCalls().slice(before)).toHaveLength(1);
    expect(await liveInstances(users.mismatch)).toEqual([]);
  }, 60_000);

  const profileRefusal = {
    operation: 'RunInstances',
    kind: 'error' as const,
    code: 'InvalidParameterValue',
    message: `Value (${profileName}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name`,
  };

  it('when the instance profile is not usable yet, then the member sees the launch waiting for it, and the launch goes through once it is', async () => {
    const before = runCalls().length;
    const fault = simulator.control.injectFault(accountId, profileRefusal);
    const message = await send(users.propagating, '/provision');
    await waitForText(users.propagating, message, /waiting for AWS to accept the server's access role/);
    const refused = runCalls().slice(before).length;
    expect(refused).toBeGreaterThanOrEqual(1);
    simulator.control.clearFaults(accountId);
    expect(fault).toMatch(/^fault-/);
    await waitForText(users.propagating, message, /^Your server is ready/);
    const calls = runCalls().slice(before);
    expect(calls.at(-1)?.status).toBe(200);
    expect(calls.slice(0, -1).every((c) => c.status === 400)).toBe(true);
    // The same placement each time, so the same ClientToken, with the profile named.
    expect(new Set(calls.map((c) => c.params.ClientToken)).size).toBe(1);
    expect(calls.every((c) => c.params['IamInstanceProfile.Name'] === profileName)).toBe(true);
    expect(await liveInstances(users.propagating)).toHaveLength(1);
  }, 90_000);

  describe('with a short wait for the instance profile', () => {
    beforeAll(async () => {
      await worker?.stop();
      worker = await startWorker({ INSTANCE_PROFILE_WAIT_SECONDS: '2' });
    });

    it('when the instance profile is never accepted, then the launch gives up after its wait and says so', async () => {
      const before = runCalls().length;
      simulator.control.injectFault(accountId, profileRefusal);
      expect(await provisionFails(users.badProfile)).toBe(
        "AWS did not accept the server's access role (instance profile) within 2 seconds (InvalidParameterValue), so nothing was launched.\nThe admins have been told. You can try /provision again later.",
      );
      const calls = runCalls().slice(before);
      expect(calls.length).toBeGreaterThanOrEqual(2);
      expect(calls.every((c) => c.status === 400)).toBe(true);
      expect(await liveInstances(users.badProfile)).toEqual([]);
      // No secret ever reached a log line.
      expect(logs.lines.join('\n')).not.toContain(canary);
    }, 60_000);
  });
});

describe("binding through the stack's secret binder", () => {
  let templateId = '';
  const boundTo = async (userId: number, kind: string) => {
    const tags = await ssm.send(
      new ListTagsForResourceCommand({
        ResourceType: 'Parameter',
        ResourceId: `/fbawserr/users/${userId}/${kind}`,
      }),
    );
    return tags.TagList?.find((t) => t.Key === 'InstanceArn')?.Value;
  };

  beforeAll(async () => {
    const created = await ec2.send(
      new CreateLaunchTemplateCommand({
        LaunchTemplateName: 'fbawserr-instance',
        LaunchTemplateData: { ImageId: 'ami-12c6146b', InstanceType: 't3.small' },
      }),
    );
    templateId = created.LaunchTemplate?.LaunchTemplateId ?? '';
    await worker?.stop();
    worker = await startWorker({
      INSTANCE_LAUNCH_TEMPLATE: 'fbawserr-instance',
      SECRET_BINDER_FUNCTION: 'fbawserr-secret-binder',
    });
  });

  it('when a member provisions, then the binder ties their parameters to the new instance and logs it', async () => {
    deploySecretBinder(simulator.control, accountId, {
      prefix: 'fbawserr',
      env: 'dev',
      launchTemplateId: templateId,
    });
    const message = await send(users.bound, '/provision');
    await waitForText(users.bound, message, /^Your server is ready/);
    const [instance] = await liveInstances(users.bound);
    const arn = `arn:aws:ec2:us-east-1:${accountId}:instance/${instance?.InstanceId}`;
    for (const kind of ['telegram-bot-token', 'openai-api-key'])
      expect(await boundTo(users.bound, kind)).toBe(arn);
    expect(simulator.control.functionLogs(accountId, 'fbawserr-secret-binder').join('\n')).toContain(
      `"bound":"${instance?.InstanceId}","userId":"${users.bound}"`,
    );
  }, 60_000);

  it('when the binder refuses the instance, then nothing is bound, the member is told why, and the instance goes', async () => {
    // A stack whose template is another one: the instance fleetbot launched is not the fleet's.
    deploySecretBinder(simulator.control, accountId, {
      prefix: 'fbawserr',
      env: 'dev',
      launchTemplateId: 'lt-0123456789abcdef0',
    });
    const message = await send(users.refused, '/provision');
    await waitForText(users.refused, message, /The admins have been told\./);
    expect(currentText(users.refused, message.message_id)).toMatch(
      /^The secret binder refused to give your new server access to your secrets: it was not launched from the fleet launch template\./,
    );
    for (const kind of ['telegram-bot-token', 'openai-api-key'])
      expect(await boundTo(users.refused, kind)).toBeUndefined();
    await expect.poll(async () => liveInstances(users.refused), { timeout: 30_000 }).toEqual([]);
    expect(logs.lines.join('\n')).not.toContain(canary);
  }, 60_000);
});
