import { DescribeInstanceAttributeCommand, DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetParameterCommand, ListTagsForResourceCommand, SSMClient } from '@aws-sdk/client-ssm';
import type { Message, Update } from 'grammy/types';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { sampleValue } from '../support/prometheus.js';
import { capturedLogger } from '../support/quiet-log.js';
import { redisKeysMatching } from '../support/redis-sweep.js';

/**
 * A new member from invite to a ready server without typing a token: fleetbot's bot may manage bots
 * (Bot API 9.6), so the member creates their assistant's bot with one tap and fleetbot fetches, stores,
 * binds, restricts and rotates its token itself. The whole product (bot and worker roles) runs against
 * the fake Bot API, the AWS simulator, Slack for the admin, and Redis.
 */

const token = `7800000008:${'M'.repeat(35)}`;
const member = 9801;
const accountId = testAccountId();
const prefix = uniquePrefix('managed-bots');
const redis = testRedis();
const logs = capturedLogger();
const signingSecret = 'managed-bots-signing-secret';
let simulator: AwsSimulator;
let fake: FakeTelegram;
let slack: FakeSlack;
let running: Running;
let ec2: EC2Client;
let ssm: SSMClient;

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 300 });
  simulator.control.scriptRunCommand(accountId, '*', () => ({
    status: 'Success',
    output: 'bootstrap: done',
  }));
  fake = await startFakeTelegram();
  fake.addBot(token, { username: 'fleet_manager_bot', can_manage_bots: true });
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
  running = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      PARAMETER_PREFIX: 'fbmanaged',
      TELEGRAM_BOT_TOKEN: token,
      TELEGRAM_API_ROOT: fake.apiRoot,
      SLACK_BOT_TOKEN: 'xoxb-managed-bots-test',
      SLACK_SIGNING_SECRET: signingSecret,
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
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
      PROVISION_CHECKS_TIMEOUT_SECONDS: '30',
      PROVISION_BOOTSTRAP_TIMEOUT_SECONDS: '30',
      DASHBOARD_LISTEN: '127.0.0.1:0',
      DASHBOARD_PASSWORD: 'managed-bots-dashboard',
      METRICS_PUBLIC: 'true',
      LOG_LEVEL: 'debug',
    },
    ['--role', 'bot,worker,dashboard'],
    { logDestination: logs.destination },
  );
});

afterAll(async () => {
  await running?.stop();
  await fake?.close();
  await slack?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

/** Sends a message as the member and waits for the bot's `count` next messages. */
async function send(text: string, count = 1, timeoutMs = 15_000): Promise<Message.TextMessage[]> {
  const before = fake.chat(token, member).sent.length;
  fake.sendUserMessage(token, { userId: member, text, firstName: 'Mia', username: 'mia' });
  return (await fake.waitFor(() => {
    const replies = fake.chat(token, member).sent.slice(before);
    return replies.length >= count ? replies : undefined;
  }, timeoutMs)) as Message.TextMessage[];
}

async function admin(text: string): Promise<string> {
  slack.reset();
  const res = await sendSlashCommand(
    `http://127.0.0.1:${running.ports.slack}/slack/events`,
    signingSecret,
    typedCommand(text, { user: 'UADMIN', channel: 'COPS', responseUrl: slack.responseUrl() }),
  );
  expect(res.status).toBe(200);
  const call = await slack.waitFor(
    (c) => c.method === 'chat.postMessage' || c.method === 'chat.postEphemeral',
    10_000,
  );
  return String(call.params.text);
}

const parameterName = (kind: string) => `/fbmanaged/users/${member}/${kind}`;

async function storedValue(kind: string): Promise<string | undefined> {
  return ssm
    .send(new GetParameterCommand({ Name: parameterName(kind), WithDecryption: true }))
    .then((r) => r.Parameter?.Value)
    .catch(() => undefined);
}

async function tagsOf(kind: string): Promise<Record<string, string>> {
  const res = await ssm.send(
    new ListTagsForResourceCommand({ ResourceType: 'Parameter', ResourceId: parameterName(kind) }),
  );
  return Object.fromEntries((res.TagList ?? []).map((t) => [t.Key, t.Value]));
}

async function memberInstance() {
  const res = await ec2.send(
    new DescribeInstancesCommand({ Filters: [{ Name: 'tag:user', Values: [String(member)] }] }),
  );
  return (res.Reservations ?? [])
    .flatMap((r) => r.Instances ?? [])
    .find((i) => i.State?.Name !== 'terminated');
}

/** Every update the bot fetched, as getUpdates answered it. */
function deliveredUpdates(): Update[] {
  return fake
    .calls(token, 'getUpdates')
    .flatMap((c) => (c.response?.ok ? (c.response.result as Update[]) : []));
}

async function duplicatesCounted(): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${running.ports.dashboard}/metrics`);
  return sampleValue(await res.text(), 'fleetbot_chat_duplicate_updates_total{platform="telegram"}');
}

const menuNames = (chatId: number) => fake.menuFor(token, chatId).map((c) => c.command);

/** Tokens the member's assistant bot has had, filled in as the flow goes. */
const tokens: string[] = [];
const canaryKey = `sk-CANARY${Date.now()}managed${'k'.repeat(12)}`;

describe('one-tap assistant bot', () => {
  it('when the bot starts, then guests see only the guest commands in the menu', async () => {
    await fake.waitFor(() => (fake.commandsFor(token).length > 0 ? true : undefined), 10_000);
    expect(fake.commandsFor(token).map((c) => c.command)).toEqual(['help', 'start', 'whoami']);
  });

  it('when a new member joins with an invite, then the welcome carries the create-bot button and the menu becomes the member menu', async () => {
    const code = /start=([A-Z0-9]{12})/.exec(await admin('/invite 1'))?.[1];
    expect(code).toBeDefined();
    const [welcome] = await send(`/start ${code}`);
    expect(welcome?.text).toMatch(/^Welcome, you are a member now\. First, tap "Create my assistant bot"/);
    const keyboard = fake.chat(token, member).replyKeyboard;
    expect(keyboard && 'keyboard' in keyboard ? keyboard.keyboard : undefined).toEqual([
      [
        {
          text: 'Create my assistant bot',
          request_managed_bot: {
            request_id: 1,
            suggested_name: 'mia assistant',
            suggested_username: 'mia_assistant_bot',
          },
        },
      ],
    ]);
    await fake.waitFor(() => (menuNames(member).includes('provision') ? true : undefined), 10_000);
    expect(menuNames(member)).toEqual(
      expect.arrayContaining(['help', 'set', 'secrets', 'rotate', 'access', 'provision', 'restart']),
    );
    expect(menuNames(member)).not.toContain('deploy');
  });

  it('when the member taps the button, then the new bot token goes straight to Parameter Store, tagged, and the bot is restricted to them', async () => {
    const before = fake.chat(token, member).sent.length;
    const created = fake.createManagedBot(token, { userId: member });
    tokens.push(created.token);
    const [ready] = (await fake.waitFor(() => {
      const replies = fake.chat(token, member).sent.slice(before);
      return replies.length >= 1 ? replies : undefined;
    }, 15_000)) as Message.TextMessage[];
    expect(ready?.text).toMatch(
      /^Your assistant's bot @mia_assistant_bot is ready and its token is stored \(…[0-9a-f]{4}\); it never appeared in this chat\. Only you can talk to it/,
    );
    expect(await storedValue('telegram-bot-token')).toBe(created.token);
    const described = await ssm.send(new GetParameterCommand({ Name: parameterName('telegram-bot-token') }));
    expect(described.Parameter?.Type).toBe('SecureString');
    expect(await tagsOf('telegram-bot-token')).toEqual({
      app: 'fleetbot',
      user: String(member),
      kind: 'telegram-bot-token',
    });
    expect(fake.managedBots(token)).toEqual([
      expect.objectContaining({
        botId: created.botId,
        ownerId: member,
        access: { isAccessRestricted: true, addedUserIds: [] },
      }),
    ]);
    // The update and the service message of one creation: one fetch, one store, one reply.
    await send('/whoami');
    expect(fake.calls(token, 'getManagedBotToken')).toHaveLength(1);
    expect(simulator.control.calls(accountId, 'PutParameter')).toHaveLength(1);
    expect(
      fake
        .chat(token, member)
        .sent.slice(before)
        .filter((m) => m.text?.includes('@mia_assistant_bot')),
    ).toHaveLength(1);
    expect((await send('/secrets'))[0]?.text).toMatch(
      /^Your secrets:\n• telegram-bot-token: stored \(of @mia_assistant_bot, created here: \/rotate replaces it\), last changed /,
    );
  });

  it('when the member adds and removes people, then the access settings at Telegram follow, up to 10', async () => {
    expect((await send('/access add 5551'))[0]?.text).toBe(
      'You and this person can talk to @mia_assistant_bot: 5551.',
    );
    expect(fake.managedBots(token)[0]?.access).toEqual({ isAccessRestricted: true, addedUserIds: [5551] });
    for (let id = 5552; id <= 5560; id++) await send(`/access add ${id}`);
    expect((await send('/access add 5599'))[0]?.text).toBe(
      'At most 10 people can be added. Remove someone first.',
    );
    expect(fake.managedBots(token)[0]?.access.addedUserIds).toHaveLength(10);
    expect((await send('/access remove 5551'))[0]?.text).toMatch(/^You and these 9 people can talk/);
    expect((await send('/access add someone'))[0]?.text).toContain('Usage: /access');
    expect(fake.managedBots(token)[0]?.access.addedUserIds).not.toContain(5551);
  });

  it('when the member stores their key and provisions, then the server becomes ready and both parameters name its ARN', async () => {
    expect((await send(canaryKey))[0]?.text).toMatch(/^Stored your openai-api-key/);
    const [progress] = await send('/provision');
    await fake.waitFor(
      () =>
        fake
          .chat(token, member)
          .messages.find((m) => m.message_id === progress?.message_id)
          ?.text?.startsWith('Your server is ready')
          ? true
          : undefined,
      60_000,
    );
    const instance = await memberInstance();
    const arn = `arn:aws:ec2:us-east-1:${accountId}:instance/${instance?.InstanceId}`;
    expect((await tagsOf('telegram-bot-token')).InstanceArn).toBe(arn);
    expect((await tagsOf('openai-api-key')).InstanceArn).toBe(arn);
  });

  it('when the member rotates the bot token, then Telegram revokes the old one, the new one is stored and the assistant restarts', async () => {
    const instanceId = (await memberInstance())?.InstanceId;
    const sendsBefore = simulator.control.calls(accountId, 'SendCommand').length;
    const [rotated, restarting] = await send('/rotate telegram-bot-token', 2);
    const now = fake.managedBots(token)[0];
    expect(now?.revokedTokens).toEqual([tokens[0]]);
    tokens.push(now?.token ?? '');
    expect(now?.token).not.toBe(tokens[0]);
    expect(await storedValue('telegram-bot-token')).toBe(now?.token);
    expect((await tagsOf('telegram-bot-token')).InstanceArn).toContain(instanceId);
    expect(rotated?.text).toMatch(
      /^Replaced the token of @mia_assistant_bot: the old one no longer works, the new one is stored \(…[0-9a-f]{4}\)\.$/,
    );
    expect(restarting?.text).toMatch(
      new RegExp(`^Restarting your assistant on ${instanceId} \\(command [0-9a-f-]+\\)\\.$`),
    );
    await fake.waitFor(
      () =>
        fake
          .chat(token, member)
          .messages.find((m) => m.message_id === restarting?.message_id)
          ?.text?.startsWith('Your assistant on')
          ? true
          : undefined,
      20_000,
    );
    const restart = simulator.control.calls(accountId, 'SendCommand').slice(sendsBefore);
    expect(restart.map((c) => c.params)).toEqual([
      expect.objectContaining({
        DocumentName: 'fleetbot-restart-service',
        InstanceIds: [instanceId],
        Parameters: { service: ['assistant'] },
      }),
    ]);
    // Telegram reports the token change too; it is already stored, so nothing more happens.
    await send('/whoami');
    expect(fake.calls(token, 'replaceManagedBotToken')).toHaveLength(1);
    expect(fake.chat(token, member).sent.filter((m) => m.text?.includes('has a new token'))).toEqual([]);
  });
  it('when the token changes outside fleetbot, then Telegram reports it and the new token is stored and offered a restart', async () => {
    const before = fake.chat(token, member).sent.length;
    // Another client of the manager bot replaces the token; Telegram sends a managed_bot update.
    const res = await fetch(`${fake.apiRoot}/bot${token}/replaceManagedBotToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: fake.managedBots(token)[0]?.botId }),
    });
    expect(res.status).toBe(200);
    const replaced = fake.managedBots(token)[0]?.token ?? '';
    tokens.push(replaced);
    const [changed, offer] = (await fake.waitFor(() => {
      const replies = fake.chat(token, member).sent.slice(before);
      return replies.length >= 2 ? replies : undefined;
    }, 15_000)) as Message.TextMessage[];
    expect(changed?.text).toMatch(
      /^Your assistant's bot @mia_assistant_bot has a new token; I stored it \(…[0-9a-f]{4}\)\.$/,
    );
    expect(offer?.text).toBe(
      'Your server still uses the old value. Restart your assistant so it reads the new one?',
    );
    expect(await storedValue('telegram-bot-token')).toBe(replaced);
  });
});

describe('stores while the server runs', () => {
  it('when a secret is stored again after /forget, then it carries the InstanceArn tag before the member is told', async () => {
    const instanceId = (await memberInstance())?.InstanceId;
    const [question] = await send('/forget openai-api-key');
    expect(question?.text).toBe(
      'Delete your stored openai-api-key? Your assistant needs it: it keeps running until its next start (a /restart, a deploy, a reboot), then it stops until you send a new one.',
    );
    const pressedBefore = fake.chat(token, member).sent.length;
    fake.pressButton(token, {
      chatId: member,
      userId: member,
      messageId: question?.message_id ?? 0,
      data: '/forget-confirmed openai-api-key',
    });
    await fake.waitFor(() => fake.chat(token, member).sent.slice(pressedBefore)[0], 10_000);
    expect(await storedValue('openai-api-key')).toBeUndefined();

    const [stored, offer] = await send(canaryKey, 2);
    expect(stored?.text).toMatch(/^Stored your openai-api-key/);
    expect(offer?.text).toBe(
      'Your server still uses the old value. Restart your assistant so it reads the new one?',
    );
    expect((await tagsOf('openai-api-key')).InstanceArn).toBe(
      `arn:aws:ec2:us-east-1:${accountId}:instance/${instanceId}`,
    );
  });

  it('when Telegram delivers the same update twice, then it is stored once, answered once, and no false warning', async () => {
    const putsBefore = simulator.control.calls(accountId, 'PutParameter').length;
    const [stored] = await send(canaryKey, 2);
    expect(stored?.text).toMatch(/^Stored your openai-api-key .* I deleted your message\./);
    const original = deliveredUpdates()
      .filter((u) => u.message?.text === canaryKey)
      .at(-1);
    expect(original).toBeDefined();
    const repliesBefore = fake.chat(token, member).sent.length;
    fake.redeliver(token, original?.update_id ?? 0);
    // The duplicate is dropped and counted; the next message is answered as usual.
    await expect.poll(duplicatesCounted, { timeout: 15_000 }).toBe(1);
    await send('/whoami');
    const after = fake.chat(token, member).sent.slice(repliesBefore);
    expect(after.map((m) => m.text)).toEqual([expect.stringMatching(/^You are Telegram user 9801/)]);
    expect(simulator.control.calls(accountId, 'PutParameter').slice(putsBefore)).toHaveLength(1);
    expect(after.filter((m) => m.text?.includes('rotate'))).toEqual([]);
  });

  it('when an admin revokes the member, then their chat falls back to the guest menu', async () => {
    expect(await admin(`/revoke ${member}`)).toBe(`Telegram user ${member} is no longer a member.`);
    await fake.waitFor(() => (menuNames(member).includes('provision') ? undefined : true), 10_000);
    expect(menuNames(member)).toEqual(['help', 'start', 'whoami']);
  });
});

describe('the managed bot token never rests elsewhere', () => {
  it('when the flow is over, then no log line, Redis key, chat message, UserData or job holds either token', async () => {
    expect(tokens).toHaveLength(3);
    const leaks = (text: string) => tokens.some((t) => text.includes(t)) || text.includes(canaryKey);
    expect(logs.lines.length).toBeGreaterThan(0);
    expect(logs.lines.filter(leaks)).toEqual([]);
    // Redis holds every job's data (the provision and the restarts), every record and every key.
    expect(await redisKeysMatching(redis, leaks)).toEqual([]);
    const botCalls = fake
      .calls(token)
      .filter((c) => !['getUpdates', 'getManagedBotToken', 'replaceManagedBotToken'].includes(c.method));
    expect(botCalls.length).toBeGreaterThan(0);
    expect(botCalls.filter((c) => leaks(JSON.stringify(c.params)))).toEqual([]);
    const chat = fake.chat(token, member);
    expect([...chat.sent, ...chat.messages].filter((m) => leaks(m.text ?? ''))).toEqual([]);
    const instanceId = (await memberInstance())?.InstanceId;
    const userData = await ec2.send(
      new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: 'userData' }),
    );
    const script = Buffer.from(userData.UserData?.Value ?? '', 'base64').toString('utf8');
    expect(script).toContain(parameterName('telegram-bot-token'));
    expect(leaks(script)).toBe(false);
  });
});
