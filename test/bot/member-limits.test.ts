import { DescribeInstancesCommand, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { PutParameterCommand as PutSsmParameter } from '@aws-sdk/client-ssm';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { allCommands } from '../../src/bot/commands/index.js';
import { guestTextAnswer } from '../../src/bot/intake/intake.js';
import type { Caller } from '../../src/core/caller.js';
import { createReply } from '../../src/core/chat.js';
import { createMetrics } from '../../src/metrics.js';
import { createAuditTrail } from '../../src/store/audit.js';
import { memberLimitKeys } from '../../src/store/member-limits.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { type TestBot, testAws, testBot, testConfig } from '../support/bot.js';
import { memoryOutbox, runAs } from '../support/memory-chat.js';
import { sampleValue } from '../support/prometheus.js';
import { capturedLogger } from '../support/quiet-log.js';

/**
 * Members' command limits and guests' refusals, through two bot processes' dispatchers on one Redis
 * and the AWS simulator. Windows end by Redis expiring their keys (never by waiting them out).
 */

const prefix = uniquePrefix('limits');
const accountId = testAccountId();
// One connection per "process", as two bot processes would have.
const redisA = testRedis();
const redisB = testRedis();
const metrics = createMetrics();
const logs = capturedLogger();
let simulator: AwsSimulator;
let aws: ReturnType<typeof testAws>;
let botA: TestBot;
let botB: TestBot;

const member = (id: number): Caller => ({
  platform: 'telegram',
  userId: String(id),
  displayName: `m${id}`,
  role: 'user',
});
const guest: Caller = { platform: 'telegram', userId: '6199', displayName: 'g', role: 'guest' };
const admin: Caller = { platform: 'slack', userId: 'ULIMITS', displayName: 'ops', role: 'admin' };
const members = [6101, 6102, 6103, 6104];

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl') });
  aws = testAws(simulator.url, accountId);
  const config = testConfig({
    REDIS_PREFIX: prefix,
    PARAMETER_PREFIX: 'fblimits',
    TELEGRAM_ALLOWED_USER_IDS: members.join(','),
    SLACK_ADMIN_USER_IDS: 'ULIMITS',
    INSTANCE_AMI_ID: 'ami-12c6146b',
    MEMBER_COMMANDS_PER_MINUTE: '4',
    MEMBER_SERVER_ACTIONS_PER_HOUR: '3',
    PROVISION_COOLDOWN_SECONDS: '600',
    LAUNCHES_PER_MEMBER_PER_DAY: '3',
    GUEST_REPLIES_PER_WINDOW: '3',
  });
  botA = testBot(config, redisA, aws, logs.log, metrics);
  botB = testBot(config, redisB, aws, logs.log, metrics);
});

afterAll(async () => {
  await botA?.close();
  await botB?.close();
  await simulator?.close();
  await dropPrefix(redisA, prefix);
  await redisA.quit();
  await redisB.quit();
});

/** Ends a window the way time would: Redis expires the key. */
async function expire(redis: Redis, key: string) {
  await redis.pexpire(key, 1);
  await expect.poll(() => redis.exists(key)).toBe(0);
}

async function launchFor(userId: number): Promise<string> {
  const res = await aws.ec2.send(
    new RunInstancesCommand({
      ImageId: 'ami-12c6146b',
      MinCount: 1,
      MaxCount: 1,
      TagSpecifications: [
        {
          ResourceType: 'instance',
          Tags: [
            { Key: 'app', Value: 'fleetbot' },
            { Key: 'user', Value: String(userId) },
            { Key: 'env', Value: 'dev' },
          ],
        },
      ],
    }),
  );
  return res.Instances?.[0]?.InstanceId ?? '';
}

async function liveInstances(userId: number): Promise<number> {
  const res = await aws.ec2.send(
    new DescribeInstancesCommand({ Filters: [{ Name: 'tag:user', Values: [String(userId)] }] }),
  );
  return (res.Reservations ?? [])
    .flatMap((r) => r.Instances ?? [])
    .filter((i) => !['terminated', 'shutting-down'].includes(i.State?.Name ?? '')).length;
}

const sendCommands = (document: string) =>
  simulator.control
    .calls(accountId, 'SendCommand')
    .filter((c) => c.params.DocumentName === document && c.status === 200).length;

describe('declarations', () => {
  it('when a command is not read-only and not for admins only, then it declares a limit', () => {
    const undeclared = allCommands
      .filter((c) => c.requires !== 'admin' && !c.readOnly && !c.limit)
      .map((c) => c.name);
    expect(undeclared).toEqual([]);
    const free = allCommands.filter((c) => ['help', 'whoami', 'status', 'secrets'].includes(c.name));
    expect(free.map((c) => c.limit)).toEqual([undefined, undefined, undefined, undefined]);
  });
});

describe('member limits', () => {
  it('when a member spams /restart, then restarts past the hourly limit are refused with when to retry and never reach SSM', async () => {
    const instanceId = await launchFor(6101);
    const answers: string[] = [];
    for (let i = 0; i < 6; i++) answers.push(...(await runAs(botA.dispatch, member(6101), '/restart')));
    expect(answers.slice(0, 3).every((a) => a.startsWith(`Restarting your assistant on ${instanceId}`))).toBe(
      true,
    );
    expect(answers.slice(3)).toEqual(
      Array(3).fill(
        '/restart was not run, nothing changed: you can act on your server 3 times an hour. Try again in 1 h.',
      ),
    );
    expect(sendCommands('fleetbot-restart-service')).toBe(3);
    // Refusals of one member share one audit record that counts them.
    const records = (await createAuditTrail(redisA, prefix, 1000).recent(50)).filter(
      (r) => r.actor === '6101' && r.decision.startsWith('limited'),
    );
    expect(records).toHaveLength(1);
    expect(records[0]?.outcome).toMatch(
      /^refused 3 commands from member 6101 since .* UTC \(\/restart x3\)$/,
    );
    const body = (await metrics.scrape()).body;
    expect(
      sampleValue(body, 'fleetbot_commands_refused_total{reason="server_actions_per_hour",role="user"}'),
    ).toBe(3);
  });

  it('when a member sends commands with bad input, then nothing is charged and their budget stays whole', async () => {
    const user = member(6102);
    for (let i = 0; i < 20; i++)
      expect((await runAs(botA.dispatch, user, '/forget nothing'))[0]).toContain('Usage');
    for (let i = 0; i < 5; i++)
      expect((await runAs(botA.dispatch, user, '/provision now'))[0]).toContain('Usage');
    const keys = memberLimitKeys(prefix, 'telegram:6102');
    expect(await redisA.exists(keys.minute, keys.hour, keys.cooldown, keys.day)).toBe(0);
    for (let i = 0; i < 4; i++)
      expect((await runAs(botA.dispatch, user, '/set openai-api-key'))[0]).toMatch(
        /^Send your openai-api-key/,
      );
    expect(await runAs(botA.dispatch, user, '/set openai-api-key')).toEqual([
      expect.stringMatching(
        /^\/set was not run, nothing changed: you can run 4 such commands a minute\. Try again in (\d+ s|1 min)\.$/,
      ),
    ]);
  });

  it('when two bot processes serve one member at once, then they share one budget', async () => {
    const user = member(6103);
    const answers = (
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          runAs((i % 2 === 0 ? botA : botB).dispatch, user, '/set telegram-bot-token'),
        ),
      )
    ).flat();
    expect(answers.filter((a) => a.startsWith('Send your telegram-bot-token'))).toHaveLength(4);
    expect(answers.filter((a) => a.includes('you can run 4 such commands a minute'))).toHaveLength(6);
    expect((await runAs(botB.dispatch, user, '/set telegram-bot-token'))[0]).toContain('Try again in');
    await expire(redisA, memberLimitKeys(prefix, 'telegram:6103').minute);
    expect((await runAs(botB.dispatch, user, '/set telegram-bot-token'))[0]).toMatch(
      /^Send your telegram-bot-token/,
    );
  });

  it('when a member loops /provision and /destroy, then the cooldown and then the daily quota refuse the launch, nothing queued', async () => {
    const user = member(6104);
    const keys = memberLimitKeys(prefix, 'telegram:6104');
    const provisions = new Queue('provision', { connection: redisA, prefix });
    const queued = async () => (await provisions.getJobCounts('waiting', 'active', 'delayed')).waiting ?? 0;
    const put = (kind: string) =>
      aws.ssm.send(
        new PutSsmParameter({
          Name: `/fblimits/users/6104/${kind}`,
          Value: `v-${kind}`,
          Type: 'SecureString',
        }),
      );
    await put('openai-api-key');
    // Refused by the command itself (a secret missing): no cooldown, no launch counted.
    expect((await runAs(botA.dispatch, user, '/provision'))[0]).toMatch(
      /^You must store these secrets first/,
    );
    expect(await redisA.exists(keys.cooldown, keys.day)).toBe(0);
    await put('telegram-bot-token');
    await redisA.del(keys.minute, keys.hour);

    for (let launch = 1; launch <= 3; launch++) {
      expect(await runAs(botA.dispatch, user, '/provision')).toEqual([
        expect.stringMatching(/^Setting up your server: launching…/),
      ]);
      expect(await botA.queues.provisionInProgress('6104')).toBe(true);
      expect(await redisA.get(keys.day)).toBe(String(launch));
      // The worker's part, as it would end: the job done, the member's server running.
      await provisions.remove('provision-6104');
      await launchFor(6104);
      expect((await runAs(botA.dispatch, user, '/destroy'))[0]).toContain('Terminate your server');
      expect((await runAs(botB.dispatch, user, '/destroy-confirmed'))[0]).toMatch(/is being terminated\.$/);
      await expect.poll(async () => (await botA.queues.provisionInProgress('6104')) === false).toBe(true);
      await expect.poll(() => liveInstances(6104)).toBe(0);
      // The refusal names the limit that holds longest: the cooldown, then (day's quota used) the day.
      const refused = await runAs(botB.dispatch, user, '/provision');
      expect(refused).toEqual([
        expect.stringMatching(
          launch < 3
            ? /^\/provision was not run, nothing changed: a server can be launched once every 10 min\. You can launch a server again in (9|10) min\.$/
            : /^\/provision was not run, nothing changed: daily launch limit reached \(3\)\. Try again after 00:00 UTC \(in [\d hmin]+\)\.$/,
        ),
      ]);
      expect(await queued()).toBe(0);
      expect(await redisA.get(keys.day)).toBe(String(launch));
      await expire(redisA, keys.cooldown);
      // The per-minute and hourly budgets are not what this test is about.
      await redisA.del(keys.minute, keys.hour);
    }
    const refused = await runAs(botA.dispatch, user, '/provision');
    expect(refused).toEqual([
      expect.stringMatching(
        /^\/provision was not run, nothing changed: daily launch limit reached \(3\)\. Try again after 00:00 UTC \(in [\d hmin]+\)\.$/,
      ),
    ]);
    expect(await queued()).toBe(0);
    expect(await botA.queues.provisionInProgress('6104')).toBe(false);
    // An admin's launch for the member is not held by the member's limits, nor counted in them.
    expect((await runAs(botB.dispatch, admin, '/provision-for 6104'))[0]).toMatch(/^Setting up your server/);
    expect(await botA.queues.provisionInProgress('6104')).toBe(true);
    expect(await redisA.get(keys.day)).toBe('3');
    await provisions.remove('provision-6104');
    await provisions.close();
    const body = (await metrics.scrape()).body;
    expect(sampleValue(body, 'fleetbot_commands_refused_total{reason="launch_cooldown",role="user"}')).toBe(
      2,
    );
    expect(
      sampleValue(body, 'fleetbot_commands_refused_total{reason="launch_daily_quota",role="user"}'),
    ).toBe(2);
  });
});

describe('guests', () => {
  it('when a guest sends 100 refused commands, then the audit keeps one record with the count and the bot answers a bounded number of times', async () => {
    const trail = createAuditTrail(redisA, prefix, 1000);
    await runAs(botA.dispatch, admin, '/invite 1');
    const lines = ['/provision', '/restart', '/invite 1', '/nonsense'];
    const answers = (
      await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          runAs((i % 2 === 0 ? botA : botB).dispatch, guest, lines[i % 4] ?? '/provision'),
        ),
      )
    ).flat();
    expect(answers).toHaveLength(4);
    expect(answers.filter((a) => a.startsWith('You sent many commands'))).toEqual([
      expect.stringMatching(/I will not answer more of them for (9|10) min\./),
    ]);
    const records = await trail.recent(1000);
    const guestRecords = records.filter((r) => r.actor === '6199');
    expect(guestRecords).toHaveLength(1);
    expect(guestRecords[0]?.outcome).toMatch(
      /^refused 100 commands from guest 6199 since .* UTC \(\/invite x25, \/provision x25, \/restart x25, unknown commands x25\)$/,
    );
    // What others did is still there.
    expect(records.some((r) => r.actor === 'ULIMITS' && r.command === 'invite')).toBe(true);
    const body = (await metrics.scrape()).body;
    expect(sampleValue(body, 'fleetbot_commands_refused_total{reason="not_allowed",role="guest"}')).toBe(75);
    expect(sampleValue(body, 'fleetbot_commands_refused_total{reason="unknown_command",role="guest"}')).toBe(
      25,
    );

    // A new window: answered again, and recorded in a record of its own.
    await expire(redisA, `${prefix}:audit:refusals:telegram:6199`);
    expect(await runAs(botB.dispatch, guest, '/provision')).toEqual([
      '/provision is for members only. Ask an admin for an invite.',
    ]);
    const after = (await trail.recent(1000)).filter((r) => r.actor === '6199');
    expect(after).toHaveLength(2);
    expect(after[0]).toMatchObject({ command: 'provision', decision: 'denied: needs user, caller is guest' });
    expect(after[0]?.outcome).toBeUndefined();
  });

  it('when a guest floods plain text, then every message is deleted, none of it is kept, and the answers stay bounded', async () => {
    const trail = createAuditTrail(redisA, prefix, 1000);
    const texter: Caller = { ...guest, userId: '6198' };
    const canary = `sk-CANARY${Date.now()}guesttext${'g'.repeat(12)}`;
    let deleted = 0;
    const answers = (
      await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const outbox = memoryOutbox();
          await (i % 2 === 0 ? botA : botB).dispatch({
            caller: texter,
            text: `${canary}${i}`,
            reply: createReply(outbox, { platform: 'telegram', chatId: '6198', userId: '6198' }),
            original: {
              async delete() {
                deleted++;
                return true;
              },
            },
          });
          return outbox.sent.map((m) => m.message.text);
        }),
      )
    ).flat();
    expect(deleted).toBe(40);
    expect(answers).toHaveLength(4);
    expect(answers.filter((a) => a === guestTextAnswer)).toHaveLength(3);
    expect(answers.filter((a) => a.startsWith('You sent many commands'))).toHaveLength(1);
    const records = (await trail.recent(1000)).filter((r) => r.actor === '6198');
    expect(records).toHaveLength(1);
    expect(records[0]?.outcome).toMatch(
      /^refused 40 commands from guest 6198 since .* UTC \(messages x40\)$/,
    );
    expect(JSON.stringify(records)).not.toContain('CANARY');
    expect(logs.lines.join('\n')).not.toContain('CANARY');
  });
});
