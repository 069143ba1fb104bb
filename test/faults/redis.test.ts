import { randomBytes } from 'node:crypto';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it, onTestFailed } from 'vitest';
import { openQueues, type Queues } from '../../src/jobs/queues.js';
import { type PrivateRedis, startPrivateRedis } from '../http/private-redis.js';
import { awsEnv, testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import {
  blockActionsPayload,
  sendInteraction,
  sendSlashCommand,
  typedCommand,
} from '../peers/slack-signer.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { launchInstances } from '../support/fleet.js';
import {
  type FleetbotProcess,
  logEntries,
  startFleetbotProcess,
  waitForLog,
} from '../support/fleetbot-process.js';
import { capturedLogger } from '../support/quiet-log.js';

/**
 * fleetbot as an operator runs it (one process, every role) on a Redis of its own that goes away:
 * stopped while commands arrive, then restarted (SIGTERM, AOF on, same port and data directory) in
 * the middle of a 200-instance deploy and in the middle of a provision. Chat answers come from the
 * fake Slack and Telegram servers, sends from the AWS simulator's record. The tests run in order
 * against the same process; the last one stops it and reads everything it wrote.
 */

const accountId = testAccountId();
const prefix = uniquePrefix('redis-faults');
const token = `7900000009:${'R'.repeat(35)}`;
const signingSecret = 'redis-faults-signing-secret';
const admin = 'UADMIN';
const channel = 'CFAULTS';
/** Sends commands while Redis is down, then again once it is back. */
const member = 7001;
/** Provisions while Redis restarts. */
const latecomer = 7002;
const fleetSize = 200;
/** Pasted while Redis is down: it must be deleted, never stored, and never show up anywhere. */
const canary = `sk-redisfault${randomBytes(12).toString('hex')}`;
const storeDown = 'fleetbot cannot reach its job store right now';

let redis: PrivateRedis;
let simulator: AwsSimulator;
let slack: FakeSlack;
let telegram: FakeTelegram;
let ec2: EC2Client;
let queues: Queues;
let fleetbot: FleetbotProcess;
let eventsUrl: string;
let fleet: string[] = [];

const killNow = () => {
  if (fleetbot && fleetbot.child.exitCode === null && fleetbot.child.signalCode === null)
    fleetbot.child.kill('SIGKILL');
};

beforeAll(async () => {
  redis = await startPrivateRedis(['--appendonly', 'yes']);
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  slack = await startFakeSlack();
  telegram = await startFakeTelegram();
  telegram.addBot(token);
  const aws = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  ec2 = new EC2Client(aws);
  const ssm = new SSMClient(aws);
  for (const userId of [member, latecomer])
    for (const kind of ['telegram-bot-token', 'openai-api-key'])
      await ssm.send(
        new PutParameterCommand({
          Name: `/fbfaults/users/${userId}/${kind}`,
          Value: `v-${userId}`,
          Type: 'SecureString',
        }),
      );
  ssm.destroy();
  for (let wave = 0; wave < fleetSize / 50; wave++) {
    fleet.push(
      ...(await launchInstances(ec2, 50, {
        app: 'fleetbot',
        env: 'dev',
        user: String(60000 + wave),
        wave: 'w200',
      })),
    );
  }
  fleet = fleet.sort();
  // Deploys take a while on each instance, so a restart can land between waves; checks answer at once.
  simulator.control.scriptRunCommand(accountId, '*', (document) =>
    document === 'fleetbot-deploy' ? { status: 'Success', afterMs: 1500 } : { status: 'Success' },
  );
  // Provisions boot for a moment, so the member sees them go through their stages.
  simulator.control.setBootTiming(accountId, { pendingMs: 500, initializingMs: 500 });
  // Its own errors while Redis is away are expected: logged out of sight, not printed.
  queues = openQueues(redis.redis, prefix, capturedLogger().log);

  process.once('exit', killNow);
  fleetbot = startFleetbotProcess(
    {
      ...awsEnv(simulator.url),
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      PARAMETER_PREFIX: 'fbfaults',
      TELEGRAM_BOT_TOKEN: token,
      TELEGRAM_API_ROOT: telegram.apiRoot,
      TELEGRAM_ALLOWED_USER_IDS: `${member},${latecomer}`,
      SLACK_BOT_TOKEN: 'xoxb-redis-faults',
      SLACK_SIGNING_SECRET: signingSecret,
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ADMIN_USER_IDS: admin,
      DASHBOARD_LISTEN: '127.0.0.1:0',
      DASHBOARD_PASSWORD: 'redis-faults-dashboard',
      INSTANCE_AMI_ID: 'ami-12c6146b',
      PROVISION_POLL_MS: '250',
      ROLLOUT_POLL_MS: '500',
      // Restarted edits go out at once; the default workspace budget would hold the final edit back.
      SLACK_UPDATES_PER_MINUTE: '600',
      LOG_LEVEL: 'info',
    },
    ['--role', 'all'],
  );
  const started = await waitForLog(fleetbot, (e) => e.msg === 'fleetbot started', 60_000);
  const slackPort = (started.ports as { slack?: number }).slack;
  expect(slackPort).toBeGreaterThan(0);
  eventsUrl = `http://127.0.0.1:${slackPort}/slack/events`;
}, 120_000);

afterAll(async () => {
  killNow();
  await fleetbot?.exit;
  process.off('exit', killNow);
  await queues?.close();
  ec2?.destroy();
  await telegram?.close();
  await slack?.close();
  await simulator?.close();
  await redis?.stop();
});

const logged = (msg: string) => logEntries(fleetbot).filter((e) => e.msg === msg).length;

/**
 * Stops Redis (SIGTERM, as a supervisor would) and starts it again on the same port and data once both
 * of fleetbot's connections noticed; resolves when both are back.
 */
async function restartRedis(whileDown: () => Promise<void> = async () => {}): Promise<void> {
  const lost = logged('Redis connection lost; reconnecting');
  const restored = logged('Redis connection restored');
  await redis.shutdown();
  await expect.poll(() => logged('Redis connection lost; reconnecting'), { timeout: 30_000 }).toBe(lost + 2);
  await whileDown();
  await redis.start();
  await expect.poll(() => logged('Redis connection restored'), { timeout: 30_000 }).toBe(restored + 2);
}

const slash = (line: string) =>
  sendSlashCommand(
    eventsUrl,
    signingSecret,
    typedCommand(line, { user: admin, channel, responseUrl: slack.responseUrl() }),
  );

const ephemerals = (): string[] =>
  slack
    .calls('chat.postEphemeral')
    .filter((c) => c.params.user === admin)
    .map((c) => String(c.params.text));

const planPosted = (version: string) =>
  slack.waitFor(
    (c) => c.method === 'chat.postMessage' && String(c.params.text).startsWith(`Plan: Deploy ${version}`),
    60_000,
  );

/** The command line behind a plan's Approve button. */
function approveCommand(plan: SlackCall): string {
  const blocks = plan.params.blocks as { type: string; elements?: { value?: string }[] }[];
  const value = blocks.find((b) => b.type === 'actions')?.elements?.[0]?.value;
  expect(value).toMatch(/^\/approve [a-f0-9]{12}$/);
  return String(value);
}

async function liveInstances(userId: number) {
  const res = await ec2.send(
    new DescribeInstancesCommand({ Filters: [{ Name: 'tag:user', Values: [String(userId)] }] }),
  );
  return (res.Reservations ?? [])
    .flatMap((r) => r.Instances ?? [])
    .filter((i) => i.State?.Name !== 'terminated');
}

async function keysUnder(pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.redis.scan(cursor, 'MATCH', `${prefix}:${pattern}`, 'COUNT', 500);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

describe('fleetbot when its Redis goes away', () => {
  beforeEach(() => {
    // What fleetbot was doing is most of the story when a wait runs out.
    onTestFailed(() => {
      console.info(
        `fleetbot stdout (tail):\n${fleetbot.out().slice(-8000)}\nstderr (tail):\n${fleetbot.err().slice(-2000)}`,
      );
    });
  });

  it('when Redis is down as /deploy, /provision and a pasted secret arrive, then each is answered at once that nothing was started or stored, and the same commands work once Redis is back', async () => {
    const stored = () =>
      simulator.control.calls(accountId, 'PutParameter').filter((c) => c.status === 200).length;
    const storedBefore = stored();
    let duringOutage: (string | undefined)[] = [];
    // Each command is sent once both connections noticed Redis is gone, and answered before it is back.
    await restartRedis(async () => {
      const ack = await slash('/deploy v1.2.3 all');
      expect(ack.status).toBe(200);
      // Slack shows the admin an error unless a slash command is acknowledged within 3 s: the limit is the feature.
      expect(ack.elapsedMs).toBeLessThan(3000);
      await expect
        .poll(ephemerals, { timeout: 30_000 })
        .toEqual([`${storeDown}, so nothing was started. Try again in a minute.`]);

      telegram.sendUserMessage(token, { userId: member, text: '/provision', firstName: 'Ann' });
      await telegram.waitForMessage(
        token,
        member,
        `${storeDown}, so nothing was started. Try again in a minute.`,
        30_000,
      );

      const pasted = telegram.sendUserMessage(token, { userId: member, text: canary, firstName: 'Ann' });
      await telegram.waitForMessage(
        token,
        member,
        `${storeDown}, so nothing was stored. I deleted your message: send it again in a minute.`,
        30_000,
      );
      expect(telegram.chat(token, member).deleted).toContain(pasted.message_id);
      duringOutage = telegram.chat(token, member).messages.map((m) => m.text);
    });

    // Nothing half-done: no plan, no job, no audit record, no secret written.
    expect(await keysUnder('plan:*')).toEqual([]);
    expect(await keysUnder('rollout-key:*')).toEqual([]);
    expect(await redis.redis.xlen(`${prefix}:audit`)).toBe(0);
    expect(await queues.provisionInProgress(String(member))).toBe(false);
    expect(await queues.recentRollouts(10)).toEqual([]);
    expect(stored()).toBe(storedBefore);
    expect(slack.calls('chat.postMessage')).toEqual([]);
    expect(duringOutage.some((text) => text?.startsWith('Setting up your server'))).toBe(false);

    // fleetbot was not restarted: its connections came back by themselves, and the same commands work.
    await slash('/deploy v1.2.3 all');
    expect(String((await planPosted('v1.2.3')).params.text)).toContain(
      `${fleetSize} running instances match`,
    );

    const again = telegram.sendUserMessage(token, { userId: member, text: canary, firstName: 'Ann' });
    await telegram.waitForMessage(token, member, /^Stored your openai-api-key/, 30_000);
    expect(telegram.chat(token, member).deleted).toContain(again.message_id);

    telegram.sendUserMessage(token, { userId: member, text: '/provision', firstName: 'Ann' });
    await telegram.waitForMessage(token, member, /^Your server is ready/, 90_000);
    expect(await liveInstances(member)).toHaveLength(1);
  }, 240_000);

  it('when Redis restarts in the middle of a 200-instance deploy, then the deploy carries on, every instance receives it exactly once, and the final message arrives once', async () => {
    await slash(`/deploy v2.0.0 tag:wave=w200 --concurrency 40 --max-errors 0`);
    const plan = await planPosted('v2.0.0');
    const planTs = String(plan.response.ts);
    await sendInteraction(
      eventsUrl,
      signingSecret,
      blockActionsPayload({
        actionId: 'cmd:0',
        value: approveCommand(plan),
        buttonText: 'Approve',
        userId: admin,
        channelId: channel,
        messageTs: planTs,
        messageText: String(plan.params.text),
        responseUrl: slack.responseUrl(),
      }),
    );
    await expect
      .poll(() => ephemerals().find((t) => t.startsWith('Approved.')), { timeout: 30_000 })
      .toBeDefined();
    const jobId = /job (rollout-[a-f0-9]{12})/.exec(
      ephemerals().find((t) => t.startsWith('Approved.')) ?? '',
    )?.[1];
    expect(jobId).toBeDefined();

    const received = () =>
      simulator.control.invocations(accountId).filter((i) => i.parameters.version?.[0] === 'v2.0.0');
    // The first wave is out; four more follow, each after the previous one finished.
    await expect.poll(() => received().length, { timeout: 60_000 }).toBeGreaterThanOrEqual(40);
    const sentBeforeRestart = received().length;
    expect(sentBeforeRestart).toBeLessThan(fleetSize);
    await restartRedis(async () => {
      // Down until the wave in flight has finished, when a free-running worker would send the next one.
      await expect
        .poll(() => received().every((i) => i.status === 'Success'), { timeout: 60_000 })
        .toBe(true);
      expect(received(), 'held while Redis is away: nothing new sent').toHaveLength(sentBeforeRestart);
    });

    const finalText = 'Deploy v2.0.0 to instances tagged wave=w200: succeeded on all 200 instances';
    const text = () => slack.channel(channel).messages.find((m) => m.ts === planTs)?.text ?? '';
    await expect.poll(text, { timeout: 180_000 }).toContain(finalText);
    await expect
      .poll(async () => (await queues.rolloutJob(jobId ?? ''))?.state, { timeout: 30_000 })
      .toBe('completed');

    const ids = received().map((i) => i.instanceId);
    expect(ids, 'one invocation per instance').toHaveLength(fleetSize);
    expect([...new Set(ids)].sort(), 'exactly the targeted instances').toEqual(fleet);
    expect(received().filter((i) => i.status !== 'Success')).toEqual([]);
    const job = await queues.rolloutJob(jobId ?? '');
    const batches = job?.data?.batches ?? [];
    expect(batches.map((b) => b.state)).toEqual(Array(5).fill('done'));
    // One SendCommand per batch, each the one its record names: no batch was sent twice.
    const commands = new Map(received().map((i) => [i.commandId, i.comment]));
    expect(commands.size).toBe(batches.length);
    for (const [index, batch] of batches.entries())
      expect(commands.get(batch.commandId ?? ''), `batch ${index}`).toBe(`${jobId}:${index}`);
    expect(
      slack
        .calls('chat.update')
        .filter((c) => c.params.ts === planTs && String(c.params.text).includes(finalText)),
      'the final message, once',
    ).toHaveLength(1);
  }, 300_000);

  it('when Redis restarts in the middle of a provision, then it carries on without a second launch and the member is told once that the server is ready', async () => {
    // Long enough boots that the restart lands while the server is still coming up.
    simulator.control.setBootTiming(accountId, { pendingMs: 3000, initializingMs: 3000 });
    const launches = () =>
      simulator.control.calls(accountId, 'RunInstances').filter((c) => c.status === 200).length;
    const launchesBefore = launches();
    telegram.sendUserMessage(token, { userId: latecomer, text: '/provision', firstName: 'Lee' });
    await telegram.waitForMessage(token, latecomer, /^Setting up your server/, 60_000);
    await expect.poll(launches, { timeout: 60_000 }).toBe(launchesBefore + 1);
    // Down until the server runs: the job saw it launch, and its next steps wait for Redis.
    await restartRedis(() =>
      expect
        .poll(async () => (await liveInstances(latecomer))[0]?.State?.Name, { timeout: 60_000 })
        .toBe('running'),
    );

    await telegram.waitForMessage(token, latecomer, /^Your server is ready/, 180_000);
    expect(launches(), 'one launch').toBe(launchesBefore + 1);
    expect(await liveInstances(latecomer)).toHaveLength(1);
    const ready = telegram
      .chat(token, latecomer)
      .edits.filter((e) => e.text?.startsWith('Your server is ready'));
    expect(ready, 'the final message, once').toHaveLength(1);
  }, 300_000);

  it('when fleetbot lived through Redis outages and restarts, then every line it wrote is JSON and none holds the pasted secret', async () => {
    fleetbot.child.kill('SIGTERM');
    expect(await fleetbot.exit).toBe(0);
    const lines = [fleetbot.out(), fleetbot.err()]
      .flatMap((text) => text.split('\n'))
      .filter((l) => l !== '');
    const notJson = lines.filter((line) => {
      try {
        return typeof JSON.parse(line) !== 'object';
      } catch {
        return true;
      }
    });
    expect(notJson).toEqual([]);
    expect(logged('Redis connection lost; reconnecting')).toBeGreaterThanOrEqual(6);
    expect(logged('fleetbot stopped')).toBe(1);
    expect(lines.filter((l) => l.includes(canary))).toEqual([]);
  }, 60_000);
});
