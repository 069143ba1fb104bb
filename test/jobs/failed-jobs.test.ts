import { EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { Queue } from 'bullmq';
import type { Message } from 'grammy/types';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { failureReason } from '../../src/jobs/failure-text.js';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { capturedLogger } from '../support/quiet-log.js';
import { planIdOf, pressApprove } from '../support/slack-admin.js';

/**
 * Jobs that fail for good, end to end (signed Slack requests, the fake Bot API, the AWS simulator,
 * Redis): each says so in the chat message it owns, and says while it still retries. The retry
 * policy is production's (rollouts: 5 attempts, 2 s doubling; provisions: 3, 5 s doubling), so
 * these tests take about half a minute each; they wait for signals, never for a clock.
 */

const accountId = testAccountId();
const prefix = uniquePrefix('failed-jobs');
const redis = testRedis();
const logs = capturedLogger();
const secret = 'failed-jobs-signing-secret';
const token = `7700000042:${'F'.repeat(35)}`;
const member = 9101;
const channel = 'COPS';
// An AWS message that echoes a secret-shaped value: it must never reach a chat.
const leaked = `sk-LEAKED${'x'.repeat(30)}`;
const jobEndsWithinMs = 150_000;
let simulator: AwsSimulator;
let slack: FakeSlack;
let telegram: FakeTelegram;
let running: Running;
let rollouts: Queue;
let provisions: Queue;

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  slack = await startFakeSlack();
  telegram = await startFakeTelegram();
  telegram.addBot(token, { username: 'fleet_failed_jobs_bot' });
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  const clientOptions = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  await new EC2Client(clientOptions).send(
    new RunInstancesCommand({
      ImageId: 'ami-12c6146b',
      InstanceType: 't3.small',
      MinCount: 3,
      MaxCount: 3,
      TagSpecifications: [
        {
          ResourceType: 'instance',
          Tags: [
            { Key: 'app', Value: 'fleetbot' },
            { Key: 'env', Value: 'dev' },
            { Key: 'user', Value: '41000' },
          ],
        },
      ],
    }),
  );
  const ssm = new SSMClient(clientOptions);
  for (const [kind, value] of [
    ['telegram-bot-token', `77${member}:${'T'.repeat(35)}`],
    ['openai-api-key', `sk-${'m'.repeat(40)}`],
  ])
    await ssm.send(
      new PutParameterCommand({
        Name: `/fbfail/users/${member}/${kind}`,
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
      PARAMETER_PREFIX: 'fbfail',
      TELEGRAM_BOT_TOKEN: token,
      TELEGRAM_API_ROOT: telegram.apiRoot,
      TELEGRAM_ALLOWED_USER_IDS: String(member),
      SLACK_BOT_TOKEN: 'xoxb-failed-jobs',
      SLACK_SIGNING_SECRET: secret,
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ADMIN_USER_IDS: 'UANN,UBOB',
      SLACK_ALLOWED_CHANNEL_IDS: channel,
      INSTANCE_AMI_ID: 'ami-12c6146b',
      ROLLOUT_POLL_MS: '150',
      PROVISION_POLL_MS: '200',
      // Members' own limits are tested in test/bot/member-limits.test.ts; here they would only
      // refuse the repeated provisions these tests make.
      PROVISION_COOLDOWN_SECONDS: '0',
      LAUNCHES_PER_MEMBER_PER_DAY: '100',
      MEMBER_COMMANDS_PER_MINUTE: '1000',
      MEMBER_SERVER_ACTIONS_PER_HOUR: '1000',
      SHUTDOWN_GRACE_MS: '2000',
      DASHBOARD_PASSWORD: 'unused-dashboard-password',
      DASHBOARD_LISTEN: '127.0.0.1:0',
    },
    ['--role', 'all'],
    { logDestination: logs.destination },
  );
  rollouts = new Queue('rollout', { connection: redis, prefix });
  provisions = new Queue('provision', { connection: redis, prefix });
});

afterEach(() => simulator.control.clearFaults(accountId));

afterAll(async () => {
  await rollouts?.close();
  await provisions?.close();
  await running?.stop();
  await telegram?.close();
  await slack?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

const events = () => `http://127.0.0.1:${running.ports.slack}/slack/events`;

async function slash(text: string, user = 'UANN') {
  const res = await sendSlashCommand(
    events(),
    secret,
    typedCommand(text, { user, channel, responseUrl: slack.responseUrl() }),
  );
  expect(res.status).toBe(200);
}

const posted = (predicate: (c: SlackCall) => boolean) =>
  slack.waitFor(
    (c) => (c.method === 'chat.postMessage' || c.method === 'chat.postEphemeral') && predicate(c),
    30_000,
  );

/** The channel message as it is now, every chat.update applied. */
const slackText = (ts: string) => slack.channel(channel).messages.find((m) => m.ts === ts)?.text ?? '';

const editsOf = (ts: string) =>
  slack
    .calls('chat.update')
    .filter((c) => c.params.ts === ts)
    .map((c) => ({ status: c.status, text: String(c.params.text) }));

async function finalState(queue: Queue, jobId: string) {
  await expect
    .poll(async () => (await queue.getJob(jobId))?.getState(), { timeout: jobEndsWithinMs, interval: 500 })
    .toBe('failed');
  const job = await queue.getJob(jobId);
  return { attemptsMade: job?.attemptsMade, failedReason: job?.failedReason ?? '' };
}

describe('a rollout whose SendCommand AWS keeps refusing', () => {
  it('when every attempt fails, then the plan message says so at each retry and at the end, with what was sent, and /job says the same', async () => {
    // InvalidDocument is one of SendCommand's own errors (HTTP 400 in the SSM API reference): an
    // answer, not trouble, so the rollout does not wait it out and the job's retries run out.
    simulator.control.injectFault(accountId, {
      kind: 'error',
      operation: 'SendCommand',
      code: 'InvalidDocument',
      status: 400,
      message: `Document fleetbot-deploy is not valid for parameter ${leaked}`,
    });
    await slash('/deploy v9.9.1 all --concurrency 1');
    const plan = await posted((c) => c.method === 'chat.postMessage' && c.params.channel === channel);
    const ts = String(plan.response.ts);
    expect(planIdOf(plan)).not.toBe('');
    await pressApprove(events(), secret, slack, plan, {
      userId: 'UBOB',
      channelId: channel,
      messageText: '',
    });
    const approved = await posted(
      (c) => c.method === 'chat.postEphemeral' && String(c.params.text).startsWith('Approved'),
    );
    const jobId = /job (rollout-[a-f0-9]+)/.exec(String(approved.params.text))?.[1] ?? '';
    expect(jobId).not.toBe('');

    // While attempts remain, the message says the job will retry.
    const retry = await slack.waitFor(
      (c) =>
        c.method === 'chat.update' &&
        c.params.ts === ts &&
        String(c.params.text).includes('hit an error on attempt 1 of 5 and will retry'),
      60_000,
    );
    expect(String(retry.params.text)).toContain('0 of 3 instances reached');
    // The last edit goes the same way as progress: a 429 is waited out and the edit sent again.
    await slack.waitFor(
      (c) =>
        c.method === 'chat.update' && c.params.ts === ts && String(c.params.text).includes('attempt 4 of 5'),
      jobEndsWithinMs,
    );
    slack.failNext('chat.update', { retryAfter: 1 });

    const failed = await finalState(rollouts, jobId);
    expect(failed.attemptsMade).toBe(5);
    // The job keeps AWS's own error.
    expect(failed.failedReason).toContain('Document fleetbot-deploy is not valid');
    const expected = [
      `Deploy v9.9.1 to all running fleet instances (job ${jobId}): failed: Document fleetbot-deploy is not valid for parameter [redacted]`,
      '0 of 3 instances reached (0 of 3 batches sent); 3 never sent (1 batch whose send failed).',
    ].join('\n');
    await slack.waitFor(
      (c) =>
        c.method === 'chat.update' &&
        c.params.ts === ts &&
        c.status === 200 &&
        String(c.params.text).includes('): failed: '),
      30_000,
    );
    expect(slackText(ts)).toBe(expected);
    const edits = editsOf(ts);
    expect(edits.filter((e) => e.status === 429)).toHaveLength(1);
    expect(
      edits.filter((e) => e.text.includes('will retry')).map((e) => /attempt (\d) of 5/.exec(e.text)?.[1]),
    ).toEqual(['1', '2', '3', '4']);
    expect(simulator.control.invocations(accountId)).toEqual([]);

    await slash(`/job ${jobId}`);
    const answer = await posted(
      (c) => c.method === 'chat.postMessage' && String(c.params.text).startsWith(jobId),
    );
    const text = String(answer.params.text);
    expect(text).toMatch(
      new RegExp(`^${jobId}: Deploy v9\\.9\\.1 to all running fleet instances, failed\\n`),
    );
    expect(text).toContain(expected);
    expect(text).not.toContain('0 running');

    for (const call of slack.calls()) expect(JSON.stringify(call.params)).not.toContain(leaked);
  }, 240_000);
});

describe('a failed job whose message cannot be edited', () => {
  it('when the edit is refused for good, then the worker logs it and the job still fails with its own error', async () => {
    simulator.control.injectFault(accountId, {
      kind: 'error',
      operation: 'SendCommand',
      code: 'InvalidDocument',
      status: 400,
      message: 'Document fleetbot-deploy is not valid',
    });
    // Written as the bot would enqueue it, but pointing at a message Slack does not have (deleted,
    // say), with fast retries: what is under test is the end of the last attempt, not the policy.
    const planId = 'abcdef012345';
    const jobId = `rollout-${planId}`;
    await rollouts.add(
      'deploy',
      {
        planId,
        request: {
          operation: 'deploy',
          version: 'v9.9.2',
          reboot: 'never',
          targets: 'all',
          concurrency: '10',
          maxErrors: '0',
          canary: 0,
        },
        requestedBy: 'UANN',
        approvedBy: 'UBOB',
        message: { platform: 'slack', chatId: channel, messageId: '1700000000.000001' },
        startedAt: Date.now(),
      },
      { jobId, attempts: 2, backoff: { type: 'fixed', delay: 200 } },
    );
    const failed = await finalState(rollouts, jobId);
    expect(failed.attemptsMade).toBe(2);
    expect(failed.failedReason).toBe('Document fleetbot-deploy is not valid');
    const edits = slack.calls('chat.update').filter((c) => c.params.ts === '1700000000.000001');
    expect(edits.map((c) => c.response.error)).toEqual(['message_not_found', 'message_not_found']);
    await expect
      .poll(() => logs.lines.filter((l) => l.includes('could not report a failed job attempt')).length)
      .toBe(2);
  }, 120_000);
});

describe('a provision whose launch AWS keeps refusing', () => {
  async function send(text: string): Promise<Message.TextMessage> {
    const before = telegram.chat(token, member).sent.length;
    telegram.sendUserMessage(token, { userId: member, text, firstName: 'M' });
    return (await telegram.waitFor(
      () => telegram.chat(token, member).sent.slice(before)[0],
      20_000,
    )) as Message.TextMessage;
  }
  const telegramText = (messageId: number) =>
    telegram.chat(token, member).messages.find((m) => m.message_id === messageId)?.text ?? '';

  it('when EC2 refuses the launch outright, then the member is told at once, with AWS’s code, that nothing was launched', async () => {
    // EC2 answers a caller its IAM policy does not allow with UnauthorizedOperation (HTTP 403):
    // an answer no retry changes.
    simulator.control.injectFault(accountId, {
      kind: 'error',
      operation: 'RunInstances',
      code: 'UnauthorizedOperation',
      status: 403,
      message: 'You are not authorized to perform this operation.',
      count: 1,
    });
    simulator.control.resetCalls(accountId);
    const message = await send('/provision');
    expect(message.text).toMatch(/^Setting up your server: launching…/);
    const jobId = `provision-${member}`;
    const failed = await finalState(provisions, jobId);
    expect(failed.attemptsMade).toBe(1);
    const expected = [
      'AWS refused to launch the server (UnauthorizedOperation), so nothing was launched.',
      'The admins have been told. You can try /provision again later.',
    ].join('\n');
    await telegram.waitFor(() => telegramText(message.message_id) === expected, 30_000);
    expect(simulator.control.calls(accountId, 'RunInstances')).toHaveLength(1);
    await provisions.remove(jobId);
  }, 240_000);

  it('when a step after the launch keeps failing, then the member’s message says it will retry, then that it failed, at which stage and that the server exists', async () => {
    // The member's secrets cannot be bound to the new server: an error the job does not explain.
    simulator.control.injectFault(accountId, {
      kind: 'error',
      operation: 'AddTagsToResource',
      code: 'AccessDeniedException',
      status: 400,
      message: 'User is not authorized to perform: ssm:AddTagsToResource',
    });
    simulator.control.resetCalls(accountId);
    try {
      const message = await send('/provision');
      expect(message.text).toMatch(/^Setting up your server: launching…/);
      const jobId = `provision-${member}`;
      await telegram.waitFor(
        () =>
          telegram
            .chat(token, member)
            .edits.find(
              (e) =>
                e.messageId === message.message_id &&
                (e.text ?? '').startsWith(
                  'Setting up your server hit an error on attempt 1 of 3 and will retry',
                ),
            ),
        60_000,
      );
      const failed = await finalState(provisions, jobId);
      expect(failed.attemptsMade).toBe(3);
      // One server, adopted by each retry rather than launched again.
      const launches = simulator.control.calls(accountId, 'RunInstances').filter((c) => c.status === 200);
      expect(launches).toHaveLength(1);
      await telegram.waitFor(
        () => telegramText(message.message_id).startsWith(`Setting up your server failed (job ${jobId}): `),
        30_000,
      );
      const text = telegramText(message.message_id);
      expect(text).toContain('AccessDeniedException');
      expect(text).toMatch(
        /\nIt got as far as [a-z ]+\. Your server i-[0-9a-f]+ exists but may not be ready: \/status shows it\.$/,
      );
      const edits = telegram
        .chat(token, member)
        .edits.filter((e) => e.messageId === message.message_id)
        .map((e) => e.text ?? '');
      expect(edits.filter((t) => t.includes('will retry'))).toHaveLength(2);
      expect(edits.at(-1)).toBe(text);
    } finally {
      simulator.control.clearFaults(accountId);
    }
  }, 240_000);
});

describe('the reason a failure text gives', () => {
  it('when an error message carries secrets, spans lines or runs long, then one short line without the secrets is shown', () => {
    const botToken = `123456789:${'A'.repeat(35)}`;
    expect(failureReason(new Error(`Bad value ${botToken} for key sk-${'z'.repeat(24)}\n at stack`))).toBe(
      'Bad value [redacted] for key [redacted]',
    );
    expect(failureReason(new Error('\n\n  AccessDenied: not allowed  \nmore'))).toBe(
      'AccessDenied: not allowed',
    );
    const long = failureReason(new Error('x'.repeat(500)));
    expect(long).toHaveLength(200);
    expect(long.endsWith('…')).toBe(true);
    expect(failureReason(new Error(''))).toBe('no reason was given');
    expect(failureReason('the job is not a valid rollout: planId')).toBe(
      'the job is not a valid rollout: planId',
    );
  });
});
