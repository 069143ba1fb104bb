import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { capturedLogger } from '../support/quiet-log.js';

/**
 * Redis is not a trusted source: a rollout job written straight into it (by a compromised or buggy
 * client) with a bad version, bad targets or an approver who is not an admin is failed by the worker
 * before any AWS call, at its first attempt, and the failure shows in /job, on the dashboard and in
 * the job's own message.
 */

const accountId = testAccountId();
const prefix = uniquePrefix('bad-jobs');
const redis = testRedis();
const logs = capturedLogger();
const secret = 'bad-jobs-signing-secret';
const channel = 'COPS';
const dashboardPassword = 'bad-jobs-dashboard';
let simulator: AwsSimulator;
let slack: FakeSlack;
let running: Running;
let rollouts: Queue;

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  slack = await startFakeSlack();
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  running = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      SLACK_BOT_TOKEN: 'xoxb-bad-jobs',
      SLACK_SIGNING_SECRET: secret,
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ADMIN_USER_IDS: 'UANN,UBOB',
      DASHBOARD_PASSWORD: dashboardPassword,
      DASHBOARD_LISTEN: '127.0.0.1:0',
      SHUTDOWN_GRACE_MS: '2000',
    },
    ['--role', 'all'],
    { logDestination: logs.destination },
  );
  rollouts = new Queue('rollout', { connection: redis, prefix });
});

afterAll(async () => {
  await rollouts?.close();
  await running?.stop();
  await slack?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

beforeEach(() => {
  slack.reset();
  simulator.control.resetCalls(accountId);
});

async function postMessage(text: string): Promise<string> {
  const res = await fetch(`${slack.apiUrl}chat.postMessage`, {
    method: 'POST',
    headers: { authorization: 'Bearer xoxb-bad-jobs', 'content-type': 'application/json; charset=utf-8' },
    body: JSON.stringify({ channel, text }),
  });
  return String(((await res.json()) as { ts?: string }).ts);
}

/** A job as the bot would enqueue it, with one field replaced, written with BullMQ directly. */
async function writeJob(change: Record<string, unknown>, request: Record<string, unknown> = {}) {
  const planId = randomBytes(6).toString('hex');
  const ts = await postMessage('Plan: deploy');
  await rollouts.add(
    'deploy',
    {
      planId,
      request: {
        operation: 'deploy',
        version: 'v1.0.0',
        reboot: 'never',
        targets: 'all',
        concurrency: '10',
        maxErrors: '0',
        canary: 0,
        ...request,
      },
      requestedBy: 'UANN',
      approvedBy: 'UBOB',
      message: { platform: 'slack', chatId: channel, messageId: ts },
      startedAt: Date.now(),
      ...change,
    },
    { jobId: `rollout-${planId}`, attempts: 5, backoff: { type: 'fixed', delay: 500 } },
  );
  return { jobId: `rollout-${planId}`, ts };
}

async function failedJob(jobId: string) {
  await expect
    .poll(async () => (await rollouts.getJob(jobId))?.getState(), { timeout: 60_000 })
    .toBe('failed');
  const job = await rollouts.getJob(jobId);
  return { attemptsMade: job?.attemptsMade, failedReason: job?.failedReason ?? '' };
}

async function jobCommand(jobId: string): Promise<string> {
  const res = await sendSlashCommand(
    `http://127.0.0.1:${running.ports.slack}/slack/events`,
    secret,
    typedCommand(`/job ${jobId}`, { user: 'UANN', channel, responseUrl: slack.responseUrl() }),
  );
  expect(res.status).toBe(200);
  // /job is read-only, so its answer is posted in the channel.
  const answer = await slack.waitFor(
    (c) => c.method === 'chat.postMessage' && String(c.params.text).startsWith(jobId),
    20_000,
  );
  return String(answer.params.text);
}

async function dashboardFailedReasons(): Promise<Map<string, string>> {
  const res = await fetch(
    `http://127.0.0.1:${running.ports.dashboard}/jobs/api/queues?activeQueue=rollout&status=failed&page=1`,
    { headers: { authorization: `Basic ${Buffer.from(`ops:${dashboardPassword}`).toString('base64')}` } },
  );
  expect(res.status).toBe(200);
  const body = (await res.json()) as {
    queues: { name: string; jobs: { id: string; failedReason?: string }[] }[];
  };
  const jobs = body.queues.find((q) => q.name === 'rollout')?.jobs ?? [];
  return new Map(jobs.map((j) => [j.id, j.failedReason ?? '']));
}

const awsCalls = () => simulator.control.calls(accountId).length;

describe('rollout jobs written straight into Redis', () => {
  it.each([
    ['a version that is not one', { version: 'v1.0.0;reboot' }, /version/],
    ['targets that are not targets', { targets: 'tag:ring=$(id)' }, /targets/],
  ])(
    'when a job carries %s, then the worker fails it at once without calling AWS, and says so',
    async (_, request, reason) => {
      const { jobId, ts } = await writeJob({}, request);
      const failed = await failedJob(jobId);
      expect(failed.attemptsMade).toBe(1);
      expect(failed.failedReason).toMatch(reason);
      expect(awsCalls()).toBe(0);
      expect(await jobCommand(jobId)).toMatch(new RegExp(`${jobId}.*failed[\\s\\S]*${reason.source}`));
      expect((await dashboardFailedReasons()).get(jobId)).toMatch(reason);
      // Values from Redis are not echoed back: the reason names the field, not what was in it.
      expect(failed.failedReason).not.toContain('$(id)');
      expect(failed.failedReason).not.toContain(';reboot');
      // The job's message, where the message reference itself was sound, tells the channel.
      await slack.waitFor(
        (c) => c.method === 'chat.update' && c.params.ts === ts && /refused/.test(String(c.params.text)),
        20_000,
      );
    },
    90_000,
  );

  it('when the approver is not a fleet admin, then the worker fails it at once without calling AWS, and says so', async () => {
    const { jobId, ts } = await writeJob({ approvedBy: 'UMALLORY' });
    const failed = await failedJob(jobId);
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toContain('approved by UMALLORY, who is not a fleet admin');
    expect(awsCalls()).toBe(0);
    expect(await jobCommand(jobId)).toContain('approved by UMALLORY, who is not a fleet admin');
    expect((await dashboardFailedReasons()).get(jobId)).toContain('not a fleet admin');
    const edit = await slack.waitFor((c) => c.method === 'chat.update' && c.params.ts === ts, 20_000);
    expect(String(edit.params.text)).toContain('refused');
  }, 90_000);

  it('when a job is not even shaped like a rollout, then it fails at once and /job still shows it', async () => {
    const jobId = `rollout-${randomBytes(6).toString('hex')}`;
    await rollouts.add('deploy', { planId: 'x', surprise: true }, { jobId, attempts: 5 });
    const failed = await failedJob(jobId);
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toMatch(/not a valid rollout/);
    expect(awsCalls()).toBe(0);
    expect(await jobCommand(jobId)).toBe(
      `${jobId}: not a valid rollout, failed\nStopped: the job is not a valid rollout: planId, request, requestedBy, approvedBy, message`,
    );
  }, 90_000);
});
