import { DescribeInstanceAttributeCommand, DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { ListTagsForResourceCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import type { Message } from 'grammy/types';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, startFakeSlack } from '../peers/slack-api.js';
import {
  blockActionsPayload,
  sendInteraction,
  sendSlashCommand,
  typedCommand,
} from '../peers/slack-signer.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { capturedLogger } from '../support/quiet-log.js';

/**
 * The whole product (bot, worker) against the AWS simulator, the fake Bot API and Redis: a member's
 * server from /provision to ready, failures, and the lifecycle commands.
 */

const token = `7700000007:${'V'.repeat(35)}`;
const canary = `sk-CANARY${Date.now()}provision${'c'.repeat(10)}`;
const happy = 9001;
const failing = 9002;
const slow = 9003;
const bare = 9004;
const unlucky = 9005;
const accountId = testAccountId();
const prefix = uniquePrefix('provision');
const redis = testRedis();
const logs = capturedLogger();
const alertChannel = 'CALERTS';
let simulator: AwsSimulator;
let fake: FakeTelegram;
let slack: FakeSlack;
let running: Running;
let ec2: EC2Client;
let ssm: SSMClient;

/** Which instances have finished bootstrapping: the check document succeeds 1.5 s after its first call. */
const firstCheck = new Map<string, number>();
let bootstrapMs = 1500;
/** What the restart document answers; the real one prints the secrets helper's status line. */
let restartOutcome: { status: 'Failed'; responseCode: number; output: string } | undefined;

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  simulator.control.setBootTiming(accountId, { pendingMs: 800, initializingMs: 1200 });
  simulator.control.scriptRunCommand(accountId, '*', (document, _parameters, instanceId) => {
    if (document === 'fleetbot-restart-service')
      return (
        restartOutcome ?? { status: 'Success', output: 'restart: assistant is active\nfleetbot-secrets: ok' }
      );
    if (document !== 'fleetbot-bootstrap-check') return { status: 'Success' };
    if (failingInstances.has(instanceId))
      return {
        status: 'Failed',
        responseCode: 1,
        output: 'bootstrap: failed\nE: Unable to locate package assistant',
      };
    const first = firstCheck.get(instanceId) ?? Date.now();
    firstCheck.set(instanceId, first);
    return Date.now() - first >= bootstrapMs
      ? { status: 'Success', output: 'bootstrap done' }
      : { status: 'Failed', responseCode: 1, output: 'bootstrap: running' };
  });
  fake = await startFakeTelegram();
  fake.addBot(token, { username: 'fleet_provision_bot' });
  slack = await startFakeSlack();
  const clientOptions = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  ec2 = new EC2Client(clientOptions);
  ssm = new SSMClient(clientOptions);
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  for (const userId of [happy, failing, slow, unlucky])
    for (const [kind, value] of [
      ['telegram-bot-token', `77${userId}:${'T'.repeat(35)}`],
      ['openai-api-key', canary],
    ])
      await ssm.send(
        new PutParameterCommand({
          Name: `/fbprov/users/${userId}/${kind}`,
          Value: value,
          Type: 'SecureString',
        }),
      );
  running = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      PARAMETER_PREFIX: 'fbprov',
      TELEGRAM_BOT_TOKEN: token,
      TELEGRAM_API_ROOT: fake.apiRoot,
      TELEGRAM_ALLOWED_USER_IDS: [happy, failing, slow, bare, unlucky].join(','),
      SLACK_BOT_TOKEN: 'xoxb-provision-test',
      SLACK_SIGNING_SECRET: 'provision-signing-secret',
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ALERT_CHANNEL_ID: alertChannel,
      SLACK_ADMIN_USER_IDS: 'UADMIN',
      INSTANCE_AMI_ID: 'ami-12c6146b',
      INSTANCE_SERVICE_VERSION: 'v1.4.0',
      PROVISION_POLL_MS: '200',
      // Members' own limits are tested in test/bot/member-limits.test.ts; here they would only
      // refuse the repeated provisions these tests make.
      PROVISION_COOLDOWN_SECONDS: '0',
      LAUNCHES_PER_MEMBER_PER_DAY: '100',
      MEMBER_COMMANDS_PER_MINUTE: '1000',
      MEMBER_SERVER_ACTIONS_PER_HOUR: '1000',
      PROVISION_CHECKS_TIMEOUT_SECONDS: '20',
      PROVISION_BOOTSTRAP_TIMEOUT_SECONDS: '20',
      LOG_LEVEL: 'debug',
    },
    ['--role', 'bot'],
    { logDestination: logs.destination },
  );
  // The worker runs as a separate process would: its own main, same Redis and AWS.
  workers.push(await startWorker({}));
});

const failingInstances = new Set<string>();
const workers: Running[] = [];

async function startWorker(extra: Record<string, string>): Promise<Running> {
  return main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      PARAMETER_PREFIX: 'fbprov',
      TELEGRAM_BOT_TOKEN: token,
      TELEGRAM_API_ROOT: fake.apiRoot,
      SLACK_BOT_TOKEN: 'xoxb-provision-test',
      SLACK_SIGNING_SECRET: 'provision-signing-secret',
      SLACK_API_URL: slack.apiUrl,
      SLACK_ALERT_CHANNEL_ID: alertChannel,
      INSTANCE_AMI_ID: 'ami-12c6146b',
      INSTANCE_SERVICE_VERSION: 'v1.4.0',
      PROVISION_POLL_MS: '200',
      // Members' own limits are tested in test/bot/member-limits.test.ts; here they would only
      // refuse the repeated provisions these tests make.
      PROVISION_COOLDOWN_SECONDS: '0',
      LAUNCHES_PER_MEMBER_PER_DAY: '100',
      MEMBER_COMMANDS_PER_MINUTE: '1000',
      MEMBER_SERVER_ACTIONS_PER_HOUR: '1000',
      PROVISION_CHECKS_TIMEOUT_SECONDS: '20',
      PROVISION_BOOTSTRAP_TIMEOUT_SECONDS: '20',
      LOG_LEVEL: 'debug',
      ...extra,
    },
    ['--role', 'worker'],
    { logDestination: logs.destination },
  );
}

afterAll(async () => {
  for (const w of workers) await w.stop();
  await running?.stop();
  await fake?.close();
  await slack?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

async function send(userId: number, text: string, timeoutMs = 5000): Promise<Message.TextMessage> {
  const before = fake.chat(token, userId).sent.length;
  fake.sendUserMessage(token, { userId, text, firstName: 'P' });
  return (await fake.waitFor(
    () => fake.chat(token, userId).sent.slice(before)[0],
    timeoutMs,
  )) as Message.TextMessage;
}

const currentText = (userId: number, messageId: number) =>
  fake.chat(token, userId).messages.find((m) => m.message_id === messageId)?.text ?? '';

async function userInstances(userId: number) {
  const res = await ec2.send(
    new DescribeInstancesCommand({ Filters: [{ Name: 'tag:user', Values: [String(userId)] }] }),
  );
  return (res.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}

describe('/provision', () => {
  it('when a member with both secrets provisions, then one message walks every stage to ready, at most one edit per 3 s', async () => {
    // Each stage outlasts the 3 s edit interval, as real boots do, so every stage gets its own edit.
    simulator.control.setBootTiming(accountId, { pendingMs: 3500, initializingMs: 3500 });
    bootstrapMs = 3500;
    const message = await send(happy, '/provision');
    expect(message.text).toBe(
      'Setting up your server: launching… → running → health checks → bootstrapping → ready',
    );
    const again = await send(happy, '/provision');
    expect(again.text).toBe('Setting up your server is already in progress.');

    await fake.waitFor(
      () => currentText(happy, message.message_id).startsWith('Your server is ready'),
      40_000,
    );
    expect(currentText(happy, message.message_id)).toMatch(
      /^Your server is ready \(instance i-[0-9a-f]+, took \d+s\)\.$/,
    );
    const edits = fake.chat(token, happy).edits.filter((e) => e.messageId === message.message_id);
    const texts = edits.map((e) => e.text ?? '');
    expect(texts.some((t) => t.includes('health checks…'))).toBe(true);
    expect(texts.some((t) => t.includes('bootstrapping…'))).toBe(true);
    expect(texts.some((t) => t.includes('running…'))).toBe(true);
    for (let i = 1; i < edits.length; i++)
      expect((edits[i]?.at ?? 0) - (edits[i - 1]?.at ?? 0)).toBeGreaterThanOrEqual(2990);
    simulator.control.setBootTiming(accountId, { pendingMs: 800, initializingMs: 1200 });
    bootstrapMs = 1500;
  }, 60_000);

  it('when the server is ready, then exactly one instance carries the member tag, IMDSv2 and the version, and the parameters name its ARN', async () => {
    const instances = (await userInstances(happy)).filter((i) => i.State?.Name !== 'terminated');
    expect(instances).toHaveLength(1);
    const instance = instances[0];
    const tags = Object.fromEntries((instance?.Tags ?? []).map((t) => [t.Key, t.Value]));
    expect(tags).toMatchObject({
      app: 'fleetbot',
      'managed-by': 'fleetbot',
      user: String(happy),
      env: 'dev',
      version: 'v1.4.0',
    });
    expect(instance?.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 });
    const parameterTags = await ssm.send(
      new ListTagsForResourceCommand({
        ResourceType: 'Parameter',
        ResourceId: `/fbprov/users/${happy}/openai-api-key`,
      }),
    );
    expect(parameterTags.TagList).toContainEqual({
      Key: 'InstanceArn',
      Value: `arn:aws:ec2:us-east-1:${accountId}:instance/${instance?.InstanceId}`,
    });
    const userData = await ec2.send(
      new DescribeInstanceAttributeCommand({ InstanceId: instance?.InstanceId, Attribute: 'userData' }),
    );
    const script = Buffer.from(userData.UserData?.Value ?? '', 'base64').toString();
    expect(script).toContain(`/fbprov/users/${happy}/openai-api-key`);
    expect(script).not.toContain(canary);
  });

  it('when the member provisions again, then they get the status of the server they have', async () => {
    const reply = await send(happy, '/provision');
    expect(reply.text).toMatch(/^You already have a server\.\nServer i-[0-9a-f]+: running/);
  });

  it('when secrets are missing, then nothing is launched and the member is told which', async () => {
    const reply = await send(bare, '/provision');
    expect(reply.text).toBe(
      'You must store these secrets first: telegram-bot-token, openai-api-key. Paste each one into this chat.',
    );
    expect(await userInstances(bare)).toEqual([]);
  });

  it('when the bootstrap fails, then the member sees the last log lines, the instance is terminated and admins are told', async () => {
    const message = await send(failing, '/provision');
    // The instance id is known once launched; its bootstrap check then fails for good.
    let launched = '';
    await expect
      .poll(async () => (launched = (await userInstances(failing))[0]?.InstanceId ?? ''), { timeout: 20_000 })
      .not.toBe('');
    failingInstances.add(launched);
    await fake.waitFor(
      () => currentText(failing, message.message_id).startsWith('Setting up your assistant failed'),
      40_000,
    );
    expect(currentText(failing, message.message_id)).toContain('E: Unable to locate package assistant');
    expect(currentText(failing, message.message_id)).toContain('The admins have been told.');
    const alert = await slack.waitFor(
      (c) => c.method === 'chat.postMessage' && c.params.channel === alertChannel,
      10_000,
    );
    expect(String(alert.params.text)).toContain(`Provisioning for Telegram user ${failing} failed`);
    expect(String(alert.params.text)).toContain(`instance ${launched} was terminated`);
    await expect
      .poll(async () => (await userInstances(failing))[0]?.State?.Name, { timeout: 5000 })
      .toBe('terminated');
  }, 60_000);
});

describe('lifecycle', () => {
  it('when the member asks /status, then state, checks, version and uptime are shown', async () => {
    const reply = await send(happy, '/status');
    expect(reply.text).toMatch(
      /^Server i-[0-9a-f]+: running\nChecks: system ok, instance ok\nVersion: v1\.4\.0\nLaunched: .* UTC\nUp: \d+s$/,
    );
  });

  it('when the member restarts, then the restart document runs on their own instance with the service name', async () => {
    const reply = await send(happy, '/restart');
    expect(reply.text).toMatch(/^Restarting your assistant on (i-[0-9a-f]+) \(command [0-9a-f-]+\)\.$/);
    const sent = simulator.control.calls(accountId, 'SendCommand').at(-1);
    expect(sent?.params).toMatchObject({
      DocumentName: 'fleetbot-restart-service',
      Parameters: { service: ['assistant'] },
    });
    expect(sent?.params.InstanceIds).toEqual([/(i-[0-9a-f]+)/.exec(reply.text)?.[1]]);
    // A worker follows the command and edits the same message with how the start went.
    await fake.waitFor(() => currentText(happy, reply.message_id).startsWith('Your assistant on'), 20_000);
    expect(currentText(happy, reply.message_id)).toMatch(
      /^Your assistant on i-[0-9a-f]+ restarted and read your current secrets\.$/,
    );
  });

  it('when the assistant cannot read a secret as it starts, then the restart message names the secret', async () => {
    restartOutcome = {
      status: 'Failed',
      responseCode: 1,
      output: [
        'restart: failed: assistant is failed',
        'fleetbot-secrets: failed: openai-api-key is not stored (ParameterNotFound)',
        'Job for assistant.service failed because the control process exited with error code.',
      ].join('\n'),
    };
    try {
      const reply = await send(happy, '/restart');
      await fake.waitFor(() => currentText(happy, reply.message_id).startsWith('Your assistant on'), 20_000);
      expect(currentText(happy, reply.message_id)).toMatch(
        /^Your assistant on i-[0-9a-f]+ did not start again:\nfleetbot-secrets: failed: openai-api-key is not stored \(ParameterNotFound\)\nFix what it names \(a missing secret: \/set it\), then \/restart\.$/,
      );
    } finally {
      restartOutcome = undefined;
    }
  });

  it('when the member replaces a secret while the server runs, then the bot offers a restart that runs on their instance', async () => {
    const before = fake.chat(token, happy).sent.length;
    fake.sendUserMessage(token, { userId: happy, text: `sk-${'n'.repeat(40)}`, firstName: 'P' });
    const [stored, offer] = (await fake.waitFor(() => {
      const replies = fake.chat(token, happy).sent.slice(before);
      return replies.length >= 2 ? replies : undefined;
    }, 5000)) as Message.TextMessage[];
    expect(stored?.text).toMatch(/^Stored your openai-api-key \(…[0-9a-f]{4}\)/);
    expect(offer?.text).toBe(
      'Your server still uses the old value. Restart your assistant so it reads the new one?',
    );
    const restartsBefore = simulator.control.calls(accountId, 'SendCommand').length;
    const repliesBefore = fake.chat(token, happy).sent.length;
    fake.pressButton(token, {
      chatId: happy,
      userId: happy,
      messageId: offer?.message_id ?? 0,
      data: '/restart',
    });
    const restarting = await fake.waitFor(() => fake.chat(token, happy).sent.slice(repliesBefore)[0], 5000);
    expect(restarting.text).toMatch(/^Restarting your assistant on i-[0-9a-f]+/);
    expect(
      simulator.control.calls(accountId, 'SendCommand').slice(restartsBefore).at(-1)?.params,
    ).toMatchObject({
      DocumentName: 'fleetbot-restart-service',
      Parameters: { service: ['assistant'] },
    });
  });

  it('when the member stops and starts, then the start walks the readiness stages again', async () => {
    expect((await send(happy, '/stop')).text).toMatch(
      /^Stopping your server i-[0-9a-f]+\. Send \/start to bring it back\.$/,
    );
    await expect
      .poll(
        async () => (await userInstances(happy)).find((i) => i.State?.Name !== 'terminated')?.State?.Name,
        {
          timeout: 10_000,
        },
      )
      .toBe('stopped');
    const message = await send(happy, '/start');
    expect(message.text).toContain('Starting your server: starting…');
    await fake.waitFor(
      () => currentText(happy, message.message_id).startsWith('Your server is ready'),
      40_000,
    );
  }, 60_000);

  it('when a member destroys with the button, then the instance terminates and the ARN tag is removed', async () => {
    const question = await send(happy, '/destroy');
    expect(question.text).toContain('Terminate your server');
    const before = fake.chat(token, happy).sent.length;
    fake.pressButton(token, {
      chatId: happy,
      userId: happy,
      messageId: question.message_id,
      data: '/destroy-confirmed',
    });
    const done = await fake.waitFor(() => fake.chat(token, happy).sent.slice(before)[0], 5000);
    expect(done.text).toMatch(/^Your server i-[0-9a-f]+ is being terminated\.$/);
    await expect
      .poll(async () => (await userInstances(happy)).every((i) => i.State?.Name === 'terminated'))
      .toBe(true);
    const parameterTags = await ssm.send(
      new ListTagsForResourceCommand({
        ResourceType: 'Parameter',
        ResourceId: `/fbprov/users/${happy}/openai-api-key`,
      }),
    );
    expect(parameterTags.TagList?.find((t) => t.Key === 'InstanceArn')).toBeUndefined();
    expect((await send(happy, '/status')).text).toBe('You have no server yet. Send /provision to get one.');
  });
});

describe('stage timeouts', () => {
  it('when health checks stay initializing past their timeout, then the member is told which stage and why', async () => {
    const slowWorker = await startWorker({
      PROVISION_CHECKS_TIMEOUT_SECONDS: '2',
      INSTANCE_ON_FAILURE: 'keep',
    });
    workers.push(slowWorker);
    await workers[0]?.stop();
    simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 60_000 });
    const message = await send(slow, '/provision');
    await fake.waitFor(() => currentText(slow, message.message_id).includes('did not reach'), 40_000);
    expect(currentText(slow, message.message_id)).toContain(
      'Your server did not reach its health checks within 2 seconds.',
    );
    expect((await userInstances(slow))[0]?.State?.Name).toBe('running');
    const alert = await slack.waitFor(
      (c) => String(c.params.text).includes(`Telegram user ${slow} failed`),
      10_000,
    );
    expect(String(alert.params.text)).toContain('was kept for an admin to inspect');
  }, 60_000);
});

describe('failure modes', () => {
  beforeAll(async () => {
    for (const w of workers.splice(0)) await w.stop();
    workers.push(
      await startWorker({ PROVISION_CHECKS_TIMEOUT_SECONDS: '10', PROVISION_BOOTSTRAP_TIMEOUT_SECONDS: '3' }),
    );
    simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 500 });
  });
  afterEach(() => simulator.control.clearFaults(accountId));

  /** Provisions `unlucky` and returns the text the progress message ends with. */
  async function provisionFails(): Promise<string> {
    slack.reset();
    const message = await send(unlucky, '/provision');
    await fake.waitFor(
      () => currentText(unlucky, message.message_id).includes('The admins have been told.'),
      30_000,
    );
    return currentText(unlucky, message.message_id);
  }
  const alert = async () =>
    String(
      (await slack.waitFor((c) => String(c.params.text).includes(`Telegram user ${unlucky} failed`), 10_000))
        .params.text,
    );
  const liveInstances = async () =>
    (await userInstances(unlucky)).filter(
      (i) => !['terminated', 'shutting-down'].includes(i.State?.Name ?? ''),
    );

  it.each([
    [
      'InsufficientInstanceCapacity',
      'AWS has no capacity for this server type right now, so nothing was launched.',
    ],
    ['InvalidAMIID.NotFound', 'The server image is not available, so nothing was launched.'],
  ])(
    'when RunInstances answers %s, then the member is told why in plain words and nothing runs',
    async (code, words) => {
      simulator.control.injectFault(accountId, { operation: 'RunInstances', kind: 'error', code });
      expect(await provisionFails()).toBe(
        `${words}\nThe admins have been told. You can try /provision again later.`,
      );
      expect(await alert()).toContain('nothing was launched');
      expect(await liveInstances()).toEqual([]);
    },
    40_000,
  );

  it('when a health check reports impaired, then the member is told which check failed and the instance is terminated', async () => {
    simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 500, impaired: 'instance' });
    expect(await provisionFails()).toContain(
      'Your server failed its health checks (system ok, instance impaired).',
    );
    expect(await alert()).toMatch(/instance i-[0-9a-f]+ was terminated/);
    await expect.poll(liveInstances, { timeout: 5000 }).toEqual([]);
    simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 500 });
  }, 40_000);

  it('when the SSM agent never registers, then the member is told its setup could not be checked', async () => {
    // What SSM answers for an instance whose agent it does not know.
    simulator.control.injectFault(accountId, {
      operation: 'SendCommand',
      kind: 'error',
      code: 'InvalidInstanceId',
      message: 'Instances not in a valid state for account',
    });
    expect(await provisionFails()).toContain(
      'Your server never connected to AWS Systems Manager within 3 seconds, so its setup could not be checked.',
    );
    expect(await alert()).toMatch(/instance i-[0-9a-f]+ was terminated/);
    await expect.poll(liveInstances, { timeout: 5000 }).toEqual([]);
  }, 40_000);
});

describe('admin view', () => {
  const admin = async (text: string) => {
    slack.reset();
    const res = await sendSlashCommand(
      `http://127.0.0.1:${running.ports.slack}/slack/events`,
      'provision-signing-secret',
      typedCommand(text, { user: 'UADMIN', channel: 'COPS', responseUrl: slack.responseUrl() }),
    );
    expect(res.status).toBe(200);
    const call = await slack.waitFor(
      (c) => c.method === 'chat.postMessage' || c.method === 'chat.postEphemeral',
      10_000,
    );
    return { text: String(call.params.text), call };
  };
  const slowInstance = async () => (await userInstances(slow))[0]?.InstanceId ?? '';

  it('when an admin asks for /fleet, then instances are listed with counts, version, age and agent state', async () => {
    const { text } = await admin('/fleet');
    expect(text).toMatch(/^\d+ instances?: .*\d+ running/);
    expect(text).toContain('user         instance             state      version    age      agent');
    expect(text).toMatch(
      new RegExp(`${slow}\\s+${await slowInstance()}\\s+running\\s+v1\\.4\\.0\\s+\\S+\\s+online`),
    );
    expect((await admin('/fleet stopped')).text).toBe('No instance matches stopped.');
    expect((await admin('/fleet $(reboot)')).text).toContain('Usage: /fleet');
  });

  it('when an admin asks for a session, then the exact start-session command comes back, with port forwarding on request', async () => {
    const id = await slowInstance();
    const shell = (await admin(`/session ${slow}`)).text;
    expect(shell).toContain(
      `aws ssm start-session --region us-east-1 --target ${id} --document-name SSM-SessionManagerRunShell`,
    );
    // The operator policy infra/fleetbot.yaml creates: <Prefix>-<Env>-session-operator.
    // PARAMETER_PREFIX fbprov, FLEETBOT_ENV dev (the default).
    expect(shell).toContain(
      'the IAM managed policy fbprov-dev-session-operator (stack output SessionOperatorPolicyArn)',
    );
    const forward = (await admin(`/session ${id} 8080`)).text;
    expect(forward).toContain(
      `aws ssm start-session --region us-east-1 --target ${id} --document-name AWS-StartPortForwardingSession --parameters '{"portNumber":["8080"],"localPortNumber":["8080"]}'`,
    );
    expect(forward).toContain('fbprov-dev-session-operator (stack output SessionOperatorPolicyArn)');
    expect((await admin('/session 424242')).text).toBe('No fleet instance found for 424242.');
    expect((await admin(`/session ${id} 70000`)).text).toContain('a port from 1 to 65535');
  });

  it("when another member runs lifecycle commands, then they never reach someone else's server", async () => {
    expect((await send(bare, '/status')).text).toBe('You have no server yet. Send /provision to get one.');
    expect((await send(bare, '/destroy-confirmed')).text).toBe(
      'You have no server yet. Send /provision to get one.',
    );
    expect((await send(bare, '/restart')).text).toBe('You have no server yet. Send /provision to get one.');
    expect((await userInstances(slow))[0]?.State?.Name).toBe('running');
  });

  it('when an admin destroys a member server with the button, then it terminates', async () => {
    const id = await slowInstance();
    const question = await admin(`/destroy-for ${slow}`);
    expect(question.text).toBe(`Terminate ${id}, the server of Telegram user ${slow}?`);
    slack.reset();
    await sendInteraction(
      `http://127.0.0.1:${running.ports.slack}/slack/events`,
      'provision-signing-secret',
      blockActionsPayload({
        actionId: 'cmd:0',
        value: `/destroy-for-confirmed ${slow}`,
        userId: 'UADMIN',
        channelId: 'COPS',
        messageTs: String(question.call.response.ts),
        responseUrl: slack.responseUrl(),
        buttonText: 'Terminate it',
      }),
    );
    const done = await slack.waitFor((c) => c.method === 'chat.postMessage', 10_000);
    expect(String(done.params.text)).toBe(`${id} (Telegram user ${slow}) is being terminated.`);
    await expect.poll(async () => (await userInstances(slow))[0]?.State?.Name).toBe('terminated');
  });
});
