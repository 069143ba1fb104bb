import { EC2Client } from '@aws-sdk/client-ec2';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { type OutageProxy, startOutageProxy } from '../peers/outage-proxy.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { launchInstances } from '../support/fleet.js';
import { capturedLogger } from '../support/quiet-log.js';
import { pressApprove } from '../support/slack-admin.js';

/**
 * A chat platform that goes away while a job reports into it: Slack during a deploy, Telegram during a
 * provision, each down for 60 s (30 s answering 503, 30 s refusing connections) and each rate limiting
 * in a 429 storm. The job finishes regardless; its message shows the final word exactly once, never a
 * stale state after a newer one, and no request comes before a Retry-After.
 */

const accountId = testAccountId();
const prefix = uniquePrefix('chat-faults');
const redis = testRedis();
const logs = capturedLogger();
const secret = 'chat-faults-signing-secret';
const botToken = `7700000042:${'F'.repeat(35)}`;
const member = 9101;
const rateLimitedMember = 9102;
const outageHalfMs = 30_000;
let simulator: AwsSimulator;
let slack: FakeSlack;
let telegram: FakeTelegram;
let slackProxy: OutageProxy;
let telegramProxy: OutageProxy;
let running: Running;
let instanceIds: string[] = [];

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  slack = await startFakeSlack();
  telegram = await startFakeTelegram();
  telegram.addBot(botToken, { username: 'fleet_faults_bot' });
  slackProxy = await startOutageProxy(slack.port);
  telegramProxy = await startOutageProxy(Number(new URL(telegram.apiRoot).port));
  const aws = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  instanceIds = (
    await launchInstances(new EC2Client(aws), 20, { app: 'fleetbot', env: 'dev', user: '40000' })
  ).sort();
  // The fleet above is running at once; members' servers boot as EC2 ones do.
  simulator.control.setBootTiming(accountId, { pendingMs: 800, initializingMs: 1200 });
  const ssm = new SSMClient(aws);
  for (const userId of [member, rateLimitedMember])
    for (const [kind, value] of [
      ['telegram-bot-token', `77${userId}:${'T'.repeat(35)}`],
      ['openai-api-key', `sk-faults${'k'.repeat(30)}`],
    ])
      await ssm.send(
        new PutParameterCommand({
          Name: `/fbfaults/users/${userId}/${kind}`,
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
      PARAMETER_PREFIX: 'fbfaults',
      SLACK_BOT_TOKEN: 'xoxb-chat-faults',
      SLACK_SIGNING_SECRET: secret,
      SLACK_API_URL: `${slackProxy.url}/api/`,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ADMIN_USER_IDS: 'UANN',
      TELEGRAM_BOT_TOKEN: botToken,
      TELEGRAM_API_ROOT: telegramProxy.url,
      TELEGRAM_ALLOWED_USER_IDS: `${member},${rateLimitedMember}`,
      INSTANCE_AMI_ID: 'ami-12c6146b',
      PROVISION_POLL_MS: '200',
      ROLLOUT_POLL_MS: '300',
      DASHBOARD_PASSWORD: 'unused-dashboard-password',
      DASHBOARD_LISTEN: '127.0.0.1:0',
      SHUTDOWN_GRACE_MS: '2000',
    },
    ['--role', 'all'],
    { logDestination: logs.destination },
  );
});

afterAll(async () => {
  await Promise.all(Object.values(queues).map((q) => q.close()));
  await slackProxy?.set('up');
  await telegramProxy?.set('up');
  await running?.stop();
  await slackProxy?.close();
  await telegramProxy?.close();
  await slack?.close();
  await telegram?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

const queues = {
  rollout: new Queue('rollout', { connection: redis, prefix }),
  provision: new Queue('provision', { connection: redis, prefix }),
};
/** BullMQ's own record of a job: once it is completed, the job has said its last word. */
const jobState = async (queue: keyof typeof queues, jobId: string) =>
  (await (await queues[queue].getJob(jobId))?.getState()) ?? 'missing';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** 60 s without the platform: first it answers 503, then nothing listens at all. */
async function outage(proxy: OutageProxy): Promise<{ endedAt: number }> {
  await proxy.set('error');
  await pause(outageHalfMs);
  await proxy.set('refused');
  await pause(outageHalfMs);
  await proxy.set('up');
  return { endedAt: Date.now() };
}

/** Percentages of the progress edits in the order Slack accepted them. */
const percentages = (updates: SlackCall[]) =>
  updates.flatMap((c) => {
    const m = /\] (\d+)% of/.exec(String(c.params.text));
    return m ? [Number(m[1])] : [];
  });

describe('Slack during a deploy', () => {
  const events = () => `http://127.0.0.1:${running.ports.slack}/slack/events`;
  const slash = (text: string) =>
    sendSlashCommand(
      events(),
      secret,
      typedCommand(text, { user: 'UANN', channel: 'COPS', responseUrl: slack.responseUrl() }),
    );
  const posted = (predicate: (c: SlackCall) => boolean) =>
    slack.waitFor((c) => c.status === 200 && c.response.ok === true && predicate(c), 20_000);

  async function planAndApprove(command: string): Promise<{ ts: string; jobId: string }> {
    expect((await slash(command)).status).toBe(200);
    const plan = await posted(
      (c) => c.method === 'chat.postMessage' && String(c.params.text).startsWith('Plan:'),
    );
    const ts = String(plan.response.ts);
    const res = await pressApprove(events(), secret, slack, plan, {
      userId: 'UANN',
      channelId: 'COPS',
      messageText: 'Plan',
    });
    expect(res.status).toBe(200);
    const approved = await posted(
      (c) => c.method === 'chat.postEphemeral' && String(c.params.text).startsWith('Approved'),
    );
    return { ts, jobId: /job (rollout-[a-f0-9]+)/.exec(String(approved.params.text))?.[1] ?? '' };
  }

  const updatesOf = (ts: string) =>
    slack
      .calls('chat.update')
      .filter((c) => c.params.ts === ts && c.status === 200 && c.response.ok === true);

  it('when Slack is down for 60 s and the deploy ends inside the outage, then the summary arrives once it is back, exactly once', async () => {
    for (const [i, id] of instanceIds.entries())
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 2000 + 200 * i });
    const { ts, jobId } = await planAndApprove('/deploy v5.0.0 all --concurrency 10');
    // Progress has started to show: the first edit with a percentage.
    await posted(
      (c) => c.method === 'chat.update' && c.params.ts === ts && /% of 20/.test(String(c.params.text)),
    );

    const down = outage(slackProxy);
    // The deploy finishes while Slack is away; its summary cannot be shown yet.
    await expect
      .poll(
        () =>
          simulator.control.invocations(accountId).filter((i) => i.parameters.version?.[0] === 'v5.0.0')
            .length,
        {
          timeout: 30_000,
        },
      )
      .toBe(20);
    const { endedAt } = await down;
    const summary = await posted(
      (c) =>
        c.method === 'chat.update' &&
        c.params.ts === ts &&
        String(c.params.text).includes('succeeded on all 20'),
    );
    expect(summary.at).toBeGreaterThanOrEqual(endedAt);

    const sent = simulator.control
      .invocations(accountId)
      .filter((i) => i.parameters.version?.[0] === 'v5.0.0');
    expect(new Set(sent.map((i) => i.instanceId)).size).toBe(20);
    // Retried with backoff, not hammered: a busy loop would make thousands of attempts in 30 s.
    expect(slackProxy.attemptsWhileDown().length).toBeGreaterThan(0);
    expect(slackProxy.attemptsWhileDown().length).toBeLessThan(30);
    // The job has said its last word once BullMQ holds it as completed: nothing can follow.
    await expect.poll(() => jobState('rollout', jobId), { timeout: 60_000 }).toBe('completed');
    const updates = updatesOf(ts);
    expect(updates.filter((c) => String(c.params.text).includes('succeeded on all 20'))).toHaveLength(1);
    // Nothing stale after the outage: the summary is the first and the last edit Slack accepted since.
    expect(updates.filter((c) => c.at >= endedAt)).toEqual([summary]);
    expect(percentages(updates)).toEqual([...percentages(updates)].sort((a, b) => a - b));
    expect(slack.channel('COPS').messages.find((m) => m.ts === ts)?.text).toContain('succeeded on all 20');
  }, 180_000);

  it('when Slack answers 429 to every edit for a while, then no edit comes before its Retry-After and the summary still arrives once', async () => {
    slack.reset();
    for (const id of instanceIds)
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 1500 });
    const { ts, jobId } = await planAndApprove('/deploy v5.1.0 all --concurrency 10');
    slack.failNext('chat.update', { retryAfter: 3, times: 4 });
    const summary = await slack.waitFor(
      (c) =>
        c.method === 'chat.update' &&
        c.params.ts === ts &&
        c.response.ok === true &&
        String(c.params.text).includes('succeeded on all 20'),
      60_000,
    );
    await expect.poll(() => jobState('rollout', jobId), { timeout: 60_000 }).toBe('completed');
    const edits = slack.calls('chat.update').filter((c) => c.params.ts === ts);
    const limited = edits.filter((c) => c.status === 429);
    expect(limited).toHaveLength(4);
    for (const hit of limited) {
      const next = edits.find((c) => c.at > hit.at);
      // The next request leaves after the 429 was answered plus 3 s; 10 ms for timer rounding.
      expect((next?.at ?? 0) - hit.at).toBeGreaterThanOrEqual(3000 - 10);
    }
    expect(
      edits.filter((c) => c.response.ok === true && String(c.params.text).includes('succeeded on all 20')),
    ).toEqual([summary]);
  }, 120_000);
});

describe('Telegram during a provision', () => {
  const editsOf = (userId: number, messageId: number) =>
    telegram
      .calls(botToken, 'editMessageText')
      .filter(
        (c) => String(c.params.chat_id) === String(userId) && Number(c.params.message_id) === messageId,
      );
  const ok = (c: { response?: { ok: boolean } }) => c.response?.ok === true;

  async function provision(userId: number): Promise<number> {
    const before = telegram.chat(botToken, userId).sent.length;
    telegram.sendUserMessage(botToken, { userId, text: '/provision', firstName: 'F' });
    const message = await telegram.waitFor(
      () => telegram.chat(botToken, userId).sent.slice(before)[0],
      30_000,
    );
    return message.message_id;
  }

  it('when the Bot API is down for 60 s and the server gets ready inside the outage, then "ready" arrives once it is back, exactly once, and the bot answers again', async () => {
    // The bootstrap finishes only once Telegram is away, so "ready" falls inside the outage.
    let bootstrapped = false;
    simulator.control.scriptRunCommand(accountId, '*', () =>
      bootstrapped
        ? { status: 'Success', output: 'bootstrap done' }
        : { status: 'Failed', responseCode: 1, output: 'bootstrap: running' },
    );
    const messageId = await provision(member);
    await telegram.waitFor(() => editsOf(member, messageId).find(ok), 30_000);

    const down = outage(telegramProxy);
    bootstrapped = true;
    await expect
      .poll(
        () =>
          simulator.control
            .invocations(accountId)
            .some((i) => i.documentName === 'fleetbot-bootstrap-check' && i.status === 'Success'),
        { timeout: 60_000 },
      )
      .toBe(true);
    const { endedAt } = await down;
    const ready = await telegram.waitFor(
      () =>
        editsOf(member, messageId).find(
          (c) => ok(c) && String(c.params.text).startsWith('Your server is ready'),
        ),
      60_000,
    );
    expect(ready.at).toBeGreaterThanOrEqual(endedAt);

    // The bot's own long poll recovered too: a new command is answered.
    const before = telegram.chat(botToken, member).sent.length;
    telegram.sendUserMessage(botToken, { userId: member, text: '/status', firstName: 'F' });
    const status = await telegram.waitFor(
      () => telegram.chat(botToken, member).sent.slice(before)[0],
      60_000,
    );
    expect(status.text).toContain('running');
    const delivered = editsOf(member, messageId).filter(ok);
    expect(delivered.filter((c) => String(c.params.text).startsWith('Your server is ready'))).toHaveLength(1);
    expect(delivered.filter((c) => c.at >= endedAt)).toEqual([ready]);
    expect(telegramProxy.attemptsWhileDown().length).toBeLessThan(60);
    await expect
      .poll(() => jobState('provision', `provision-${member}`), { timeout: 60_000 })
      .toBe('completed');
    expect(editsOf(member, messageId).filter(ok)).toEqual(delivered);
  }, 240_000);

  it('when the Bot API answers 429 to every edit for a while, then no edit comes before its retry_after and "ready" arrives once', async () => {
    const messageId = await provision(rateLimitedMember);
    telegram.failNext(botToken, 'editMessageText', { retryAfter: 3, times: 3, messageId });
    const ready = await telegram.waitFor(
      () =>
        editsOf(rateLimitedMember, messageId).find(
          (c) => ok(c) && String(c.params.text).startsWith('Your server is ready'),
        ),
      90_000,
    );
    await expect
      .poll(() => jobState('provision', `provision-${rateLimitedMember}`), { timeout: 60_000 })
      .toBe('completed');
    const edits = editsOf(rateLimitedMember, messageId);
    const limited = edits.filter((c) => c.response?.ok === false && c.response.error_code === 429);
    expect(limited).toHaveLength(3);
    for (const hit of limited) {
      const next = edits.find((c) => c.at > hit.at);
      expect((next?.at ?? 0) - hit.at).toBeGreaterThanOrEqual(3000 - 10);
    }
    expect(edits.filter((c) => ok(c) && String(c.params.text).startsWith('Your server is ready'))).toEqual([
      ready,
    ]);
  }, 180_000);
});
