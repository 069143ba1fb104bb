import { EC2Client } from '@aws-sdk/client-ec2';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { Queue } from 'bullmq';
import type { Message } from 'grammy/types';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, type CallRecord, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { launchInstances } from '../support/fleet.js';
import { expectPaced, pacerSlots } from '../support/pacer-slots.js';
import { capturedLogger } from '../support/quiet-log.js';
import { planIdOf, pressApprove } from '../support/slack-admin.js';

/**
 * An AWS throttling storm, as seen in a real run: for 60 s, 80% of all calls are throttled
 * (ThrottlingException from SSM, RequestLimitExceeded from EC2). It starts once a deploy to 200
 * instances has sent its first batches, while two members' servers come up. Nothing fails for good:
 * the deploy and both provisions finish after the storm, every instance gets the deploy exactly
 * once, the SSM budget holds for retries too, and their messages say they are waiting on AWS
 * while it lasts, and no longer once it is over.
 */

const logs = capturedLogger();
const secret = 'aws-throttling-signing-secret';
const ssmRate = 10;
const stormMs = 60_000;
const waitingLine = 'waiting on AWS (throttled), retrying…';
const redis = testRedis();
let slack: FakeSlack;
let telegram: FakeTelegram;

/** One fleetbot (bot and worker) on its own AWS account, Redis prefix and Telegram bot. */
interface Fleetbot {
  accountId: string;
  prefix: string;
  token: string;
  simulator: AwsSimulator;
  running: Running;
  queues: Record<'rollout' | 'provision', Queue>;
  fleetIds: string[];
}
const started: Fleetbot[] = [];

async function startFleetbot(options: {
  label: string;
  fleetSize: number;
  members: readonly number[];
  env: Record<string, string>;
}): Promise<Fleetbot> {
  const accountId = testAccountId();
  const prefix = uniquePrefix(options.label);
  const token = `77000000${70 + started.length}:${'S'.repeat(35)}`;
  telegram.addBot(token, { username: `fleet_${options.label.replace(/-/g, '_')}_bot` });
  const simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  const aws = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  const ec2 = new EC2Client(aws);
  const fleetIds: string[] = [];
  for (let group = 0; group * 50 < options.fleetSize; group++) {
    const count = Math.min(50, options.fleetSize - group * 50);
    fleetIds.push(
      ...(await launchInstances(ec2, count, { app: 'fleetbot', env: 'dev', user: String(31000 + group) })),
    );
  }
  ec2.destroy();
  const ssm = new SSMClient(aws);
  for (const userId of options.members)
    for (const [kind, value] of [
      ['telegram-bot-token', `77${userId}:${'T'.repeat(35)}`],
      ['openai-api-key', `sk-storm${'k'.repeat(30)}`],
    ])
      await ssm.send(
        new PutParameterCommand({
          Name: `/fbstorm/users/${userId}/${kind}`,
          Value: value,
          Type: 'SecureString',
        }),
      );
  ssm.destroy();
  simulator.control.scriptRunCommand(accountId, '*', { status: 'Success', afterMs: 1000 });
  const running = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      PARAMETER_PREFIX: 'fbstorm',
      SLACK_BOT_TOKEN: 'xoxb-aws-throttling',
      SLACK_SIGNING_SECRET: secret,
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ADMIN_USER_IDS: 'UANN',
      TELEGRAM_BOT_TOKEN: token,
      TELEGRAM_API_ROOT: telegram.apiRoot,
      TELEGRAM_ALLOWED_USER_IDS: options.members.join(','),
      INSTANCE_AMI_ID: 'ami-12c6146b',
      PROVISION_POLL_MS: '200',
      ROLLOUT_POLL_MS: '250',
      SSM_REQUESTS_PER_SECOND: String(ssmRate),
      DASHBOARD_PASSWORD: 'unused-dashboard-password',
      DASHBOARD_LISTEN: '127.0.0.1:0',
      SHUTDOWN_GRACE_MS: '2000',
      // Debug, for the SSM pacer's slots.
      LOG_LEVEL: 'debug',
      ...options.env,
    },
    ['--role', 'all'],
    { logDestination: logs.destination },
  );
  const fleetbot: Fleetbot = {
    accountId,
    prefix,
    token,
    simulator,
    running,
    queues: {
      rollout: new Queue('rollout', { connection: redis, prefix }),
      provision: new Queue('provision', { connection: redis, prefix }),
    },
    fleetIds: fleetIds.sort(),
  };
  started.push(fleetbot);
  return fleetbot;
}

beforeAll(async () => {
  slack = await startFakeSlack();
  telegram = await startFakeTelegram();
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
});

afterAll(async () => {
  for (const f of started) {
    f.simulator.control.clearFaults(f.accountId);
    await Promise.all(Object.values(f.queues).map((q) => q.close()));
    await f.running.stop();
    await f.simulator.close();
    await dropPrefix(redis, f.prefix);
  }
  await slack?.close();
  await telegram?.close();
  await redis.quit();
});

/** BullMQ's record of a job: its state and how many attempts it took. */
async function jobRecord(f: Fleetbot, queue: 'rollout' | 'provision', jobId: string) {
  const job = await f.queues[queue].getJob(jobId);
  return { state: (await job?.getState()) ?? 'missing', attemptsMade: job?.attemptsMade };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function planAndApprove(
  f: Fleetbot,
  command: string,
): Promise<{ ts: string; jobId: string; approvedAt: number }> {
  const events = `http://127.0.0.1:${f.running.ports.slack}/slack/events`;
  const posted = (predicate: (c: SlackCall) => boolean) =>
    slack.waitFor((c) => c.status === 200 && c.response.ok === true && predicate(c), 20_000);
  const slash = await sendSlashCommand(
    events,
    secret,
    typedCommand(command, { user: 'UANN', channel: 'COPS', responseUrl: slack.responseUrl() }),
  );
  expect(slash.status).toBe(200);
  const plan = await posted(
    (c) =>
      c.method === 'chat.postMessage' &&
      String(c.params.text).startsWith(`Plan: Deploy ${command.split(' ')[1]}`),
  );
  const ts = String(plan.response.ts);
  const planId = planIdOf(plan);
  const approvedAt = Date.now();
  await pressApprove(events, secret, slack, plan, { userId: 'UANN', channelId: 'COPS', messageText: '' });
  const approved = await posted(
    (c) =>
      c.method === 'chat.postEphemeral' &&
      String(c.params.text).startsWith('Approved') &&
      String(c.params.text).includes(planId),
  );
  return { ts, jobId: /job (rollout-[a-f0-9]+)/.exec(String(approved.params.text))?.[1] ?? '', approvedAt };
}

/** Sends /provision and returns the progress message the worker will edit. */
async function provision(f: Fleetbot, userId: number): Promise<number> {
  const before = telegram.chat(f.token, userId).sent.length;
  telegram.sendUserMessage(f.token, { userId, text: '/provision', firstName: 'S' });
  const message = (await telegram.waitFor(
    () => telegram.chat(f.token, userId).sent.slice(before)[0],
    20_000,
  )) as Message.TextMessage;
  expect(message.text).toMatch(/^Setting up your server: launching…/);
  return message.message_id;
}

const memberText = (f: Fleetbot, userId: number, messageId: number) =>
  telegram.chat(f.token, userId).messages.find((m) => m.message_id === messageId)?.text ?? '';
const memberEdits = (f: Fleetbot, userId: number, messageId: number) =>
  telegram
    .chat(f.token, userId)
    .edits.filter((e) => e.messageId === messageId)
    .map((e) => e.text ?? '');
const slackText = (ts: string) => slack.channel('COPS').messages.find((m) => m.ts === ts)?.text ?? '';
const slackEdits = (ts: string) =>
  slack
    .calls('chat.update')
    .filter((c) => c.params.ts === ts && c.response.ok === true)
    .map((c) => String(c.params.text));

/** The deploy's own SSM calls, every attempt included; the provisions' bootstrap checks are not paced. */
function deployCalls(f: Fleetbot, version: string, approvedAt: number): CallRecord[] {
  const sent = f.simulator.control
    .invocations(f.accountId)
    .filter((i) => i.parameters.version?.[0] === version);
  const commands = new Set(sent.map((i) => i.commandId));
  const fleet = new Set(f.fleetIds);
  return f.simulator.control.calls(f.accountId).filter((c) => {
    const params = c.params as {
      DocumentName?: string;
      CommandId?: string;
      Filters?: { Key?: string; Values?: string[] }[];
    };
    if (c.operation === 'SendCommand') return params.DocumentName === 'fleetbot-deploy';
    if (c.operation === 'GetCommandInvocation') return commands.has(params.CommandId ?? '');
    // The agent check before each wave names fleet instances only (a provision's names its own),
    // and comes after the approval (the plan's own agent sweep, before it, is a read for people).
    if (c.operation === 'DescribeInstanceInformation')
      return (
        c.at >= approvedAt &&
        (params.Filters?.[0]?.Values ?? []).every((id) => fleet.has(id)) &&
        params.Filters?.[0]?.Key === 'InstanceIds'
      );
    return ['ListCommandInvocations', 'ListCommands', 'CancelCommand'].includes(c.operation);
  });
}

describe('an AWS throttling storm', () => {
  const members = [9301, 9302];
  let f: Fleetbot;

  beforeAll(async () => {
    f = await startFleetbot({
      label: 'aws-storm',
      fleetSize: 200,
      members,
      env: {
        // The second member's launch waits 10 s for its slot, which puts it inside the storm.
        LAUNCHES_PER_SECOND: '0.1',
        PROVISION_RUNNING_TIMEOUT_SECONDS: '200',
        PROVISION_CHECKS_TIMEOUT_SECONDS: '200',
        PROVISION_BOOTSTRAP_TIMEOUT_SECONDS: '200',
      },
    });
    // Members' servers (launched from here on) pass their status checks slowly, as real ones do,
    // so their provisions are still polling when the storm comes.
    f.simulator.control.setBootTiming(f.accountId, { pendingMs: 3000, initializingMs: 40_000 });
  });

  it('when 80% of AWS calls are throttled for 60 s mid-deploy and during provisions, then all of them finish after it, each instance deployed exactly once, within the SSM budget, saying they wait on AWS meanwhile', async () => {
    const { simulator, accountId } = f;
    const version = 'v7.0.0';
    simulator.control.resetCalls(accountId);
    const logMark = logs.lines.length;
    const { ts, jobId, approvedAt } = await planAndApprove(
      f,
      `/deploy ${version} all --concurrency 20 --max-errors 0`,
    );
    const messages = new Map<number, number>();
    for (const userId of members) messages.set(userId, await provision(f, userId));

    // The storm comes once the deploy's first batches are out.
    const sentOk = () =>
      simulator.control
        .calls(accountId, 'SendCommand')
        .filter(
          (c) =>
            c.status === 200 && (c.params as { DocumentName?: string }).DocumentName === 'fleetbot-deploy',
        ).length;
    await expect.poll(sentOk, { timeout: 60_000, interval: 50 }).toBeGreaterThanOrEqual(2);
    simulator.control.injectFault(accountId, { operation: '*', kind: 'throttle', rate: 0.8 });
    const sentBeforeStorm = sentOk();
    await pause(stormMs);
    simulator.control.clearFaults(accountId);
    expect(sentBeforeStorm).toBeLessThan(10);

    await slack.waitFor(() => slackText(ts).includes('succeeded on all 200 instances'), 150_000);
    for (const userId of members)
      await telegram.waitFor(
        () => memberText(f, userId, messages.get(userId) ?? 0).startsWith('Your server is ready'),
        150_000,
      );

    // Every instance got the deploy exactly once.
    const received = simulator.control
      .invocations(accountId)
      .filter((i) => i.parameters.version?.[0] === version)
      .map((i) => i.instanceId);
    expect(received.sort()).toEqual(f.fleetIds);
    // The storm reached the deploy, and each of its 10 batches was sent once all the same.
    const calls = deployCalls(f, version, approvedAt);
    expect(calls.filter((c) => c.status === 400).length).toBeGreaterThan(0);
    expect(calls.filter((c) => c.operation === 'SendCommand' && c.status === 200)).toHaveLength(10);
    // Every attempt, retries included, took its own slot from the shared SSM pacer.
    expectPaced(
      calls.map((c) => c.at),
      pacerSlots(logs.lines.slice(logMark), `${f.prefix}:pace:ssm`),
      ssmRate,
    );

    // One server each, from one successful launch each.
    expect(simulator.control.calls(accountId, 'RunInstances').filter((c) => c.status === 200)).toHaveLength(
      members.length,
    );

    // Nothing failed for good: BullMQ holds each job completed after its first attempt.
    await expect
      .poll(() => jobRecord(f, 'rollout', jobId), { timeout: 30_000 })
      .toEqual({
        state: 'completed',
        attemptsMade: 1,
      });
    for (const userId of members)
      await expect
        .poll(() => jobRecord(f, 'provision', `provision-${userId}`), { timeout: 30_000 })
        .toEqual({
          state: 'completed',
          attemptsMade: 1,
        });

    // The messages said they were waiting on AWS during the storm, and no longer at the end.
    const deployEdits = slackEdits(ts);
    expect(deployEdits.some((text) => text.includes(waitingLine))).toBe(true);
    expect(deployEdits.at(-1)).toContain('succeeded on all 200 instances');
    expect(slackText(ts)).not.toContain('waiting on AWS');
    const [first = 0] = members;
    expect(memberEdits(f, first, messages.get(first) ?? 0).some((text) => text.includes(waitingLine))).toBe(
      true,
    );
    for (const userId of members)
      expect(memberEdits(f, userId, messages.get(userId) ?? 0).at(-1)).toMatch(
        /^Your server is ready \(instance i-[0-9a-f]+, took \d+(m\d+)?s\)\.$/,
      );
  }, 240_000);
});

describe('AWS failing past the limit', () => {
  const member = 9311;
  let f: Fleetbot;

  beforeAll(async () => {
    f = await startFleetbot({
      label: 'aws-limit',
      fleetSize: 40,
      members: [member],
      env: { ROLLOUT_AWS_WAIT_SECONDS: '10', PROVISION_RUNNING_TIMEOUT_SECONDS: '5' },
    });
  });

  it('when every SendCommand is throttled for longer than ROLLOUT_AWS_WAIT_SECONDS, then the deploy gives up, and its last edit names the AWS error', async () => {
    const { simulator, accountId } = f;
    simulator.control.injectFault(accountId, { operation: 'SendCommand', kind: 'throttle', rate: 1 });
    const { ts, jobId } = await planAndApprove(f, '/deploy v7.1.0 all --concurrency 20 --max-errors 0');
    await slack.waitFor(() => slackText(ts).includes('gave up waiting on AWS'), 60_000);
    simulator.control.clearFaults(accountId);
    const text = slackText(ts);
    expect(text).toMatch(
      new RegExp(
        `^Deploy v7\\.1\\.0 to all running fleet instances: gave up waiting on AWS \\(job ${jobId}, took \\d+(m\\d+)?s\\)\\.\n`,
      ),
    );
    expect(text).toMatch(
      /AWS kept failing with ThrottlingException \(throttled\) for \d+(m\d+)?s; a rollout waits at most 10s \(ROLLOUT_AWS_WAIT_SECONDS\)\./,
    );
    expect(text).toContain('never sent 40');
    expect(text).not.toContain(waitingLine);
    expect(slackEdits(ts).some((t) => t.includes(waitingLine))).toBe(true);
    expect(simulator.control.invocations(accountId)).toEqual([]);
    // It ended by itself, once: BullMQ does not start it over to wait again.
    await expect
      .poll(() => jobRecord(f, 'rollout', jobId), { timeout: 30_000 })
      .toEqual({
        state: 'completed',
        attemptsMade: 1,
      });
  }, 90_000);

  it('when every launch is throttled for longer than the stage allows, then the provision fails, and the member is told which AWS error', async () => {
    const { simulator, accountId } = f;
    simulator.control.resetCalls(accountId);
    simulator.control.injectFault(accountId, { operation: 'RunInstances', kind: 'throttle', rate: 1 });
    const messageId = await provision(f, member);
    await telegram.waitFor(
      () => memberText(f, member, messageId).startsWith('Your server could not'),
      60_000,
    );
    simulator.control.clearFaults(accountId);
    expect(memberText(f, member, messageId)).toMatch(
      /^Your server could not be launched within 5 seconds: AWS kept failing with RequestLimitExceeded \(throttled\) for \d+(m\d+)?s\.\nThe admins have been told\./,
    );
    await expect
      .poll(() => jobRecord(f, 'provision', `provision-${member}`), { timeout: 30_000 })
      .toEqual({
        state: 'failed',
        attemptsMade: 1,
      });
    expect(simulator.control.calls(accountId, 'RunInstances').filter((c) => c.status === 200)).toEqual([]);
  }, 90_000);
});
