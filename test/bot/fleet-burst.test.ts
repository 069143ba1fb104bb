import { EC2Client } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { launchInstances } from '../support/fleet.js';
import { capturedLogger } from '../support/quiet-log.js';

/**
 * A burst of /fleet from Slack, over signed HTTP to the real Bolt receiver, against the AWS
 * simulator: every request is answered from one shared fleet read, counted where AWS would count it.
 */

const accountId = testAccountId();
const prefix = uniquePrefix('fleet-burst');
const redis = testRedis();
const logs = capturedLogger();
const secret = 'fleet-burst-signing-secret';
const burst = 60;
// More than one DescribeInstanceInformation chunk (50 ids), so the sweep's chunking is counted too.
const usersWithServers = 11;
const serversPerUser = 5;
const fleetSize = usersWithServers * serversPerUser;
/** Generous: this is about how many calls the burst costs, not how fast it is answered. */
const answeredWithinMs = 150_000;
let simulator: AwsSimulator;
let slack: FakeSlack;
let running: Running;

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  slack = await startFakeSlack();
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  const ec2 = new EC2Client({
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  for (let user = 0; user < usersWithServers; user++)
    await launchInstances(ec2, serversPerUser, { app: 'fleetbot', env: 'dev', user: String(70000 + user) });
  ec2.destroy();
  running = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      SLACK_BOT_TOKEN: 'xoxb-fleet-burst',
      SLACK_SIGNING_SECRET: secret,
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ADMIN_USER_IDS: 'UANN',
      SLACK_ALLOWED_CHANNEL_IDS: 'COPS',
      // Long enough that the whole burst falls in one cache period, however slow the machine.
      FLEET_CACHE_SECONDS: '60',
      DASHBOARD_PASSWORD: 'unused-dashboard-password',
    },
    ['--role', 'bot'],
    { logDestination: logs.destination },
  );
});

afterAll(async () => {
  await running?.stop();
  await slack?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

const fleetAnswer = (c: SlackCall) =>
  (c.method === 'chat.postMessage' || c.method === 'chat.postEphemeral') &&
  String(c.params.text).startsWith(`${fleetSize} instances: ${fleetSize} running`);

describe('a burst of /fleet', () => {
  it(`when ${burst} admins' /fleet arrive at once, then all are answered from one EC2 listing and one agent sweep`, async () => {
    simulator.control.resetCalls(accountId);
    slack.reset();
    const events = `http://127.0.0.1:${running.ports.slack}/slack/events`;

    const acks = await Promise.all(
      Array.from({ length: burst }, () =>
        sendSlashCommand(
          events,
          secret,
          typedCommand('/fleet', { user: 'UANN', channel: 'COPS', responseUrl: slack.responseUrl() }),
        ),
      ),
    );
    expect(acks.map((a) => a.status)).toEqual(Array(burst).fill(200));

    await expect
      .poll(() => slack.calls().filter(fleetAnswer).length, { timeout: answeredWithinMs, interval: 250 })
      .toBe(burst);
    for (const answer of slack.calls().filter(fleetAnswer)) {
      expect(answer.params.channel).toBe('COPS');
      expect(String(answer.params.text)).toMatch(/\n70000\s+i-[0-9a-f]+\s+running\s.*\sonline\n/);
    }

    // moto answers the whole listing in one page, so one sweep is one call.
    expect(simulator.control.calls(accountId, 'DescribeInstances')).toHaveLength(1);
    const sweeps = simulator.control.calls(accountId, 'DescribeInstanceInformation');
    expect(sweeps).toHaveLength(Math.ceil(fleetSize / 50));
    expect(sweeps.map((s) => s.status)).toEqual(sweeps.map(() => 200));
  }, 180_000);

  it('when another /fleet arrives within the cache period, then it is answered without any AWS call', async () => {
    simulator.control.resetCalls(accountId);
    slack.reset();
    const res = await sendSlashCommand(
      `http://127.0.0.1:${running.ports.slack}/slack/events`,
      secret,
      typedCommand('/fleet running', { user: 'UANN', channel: 'COPS', responseUrl: slack.responseUrl() }),
    );
    expect(res.status).toBe(200);
    await slack.waitFor(fleetAnswer, answeredWithinMs);
    expect(simulator.control.calls(accountId)).toEqual([]);
  }, 180_000);
});
