import {
  DescribeParametersCommand,
  GetParameterCommand,
  ListTagsForResourceCommand,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import type { Message } from 'grammy/types';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTelegramAdapter, type TelegramAdapter } from '../../src/bot/telegram.js';
import type { Caller } from '../../src/core/caller.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import { createMetrics } from '../../src/metrics.js';
import { testAccountId } from '../peers/aws-account.js';
import { type FakeOpenAi, startFakeOpenAi } from '../peers/openai-api.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { type TestAws, type TestBot, testAws, testBot, testConfig } from '../support/bot.js';
import { runAs } from '../support/memory-chat.js';
import { sampleValue } from '../support/prometheus.js';
import { capturedLogger } from '../support/quiet-log.js';
import { redisKeysMatching } from '../support/redis-sweep.js';

const ourToken = `7100000001:${'Q'.repeat(35)}`;
const assistantToken = `7200000002:${'a1B2c3D4e5'.repeat(3)}AbCdE`;
const openAiKey = `sk-proj-${'Zy9'.repeat(12)}`;
const member = 5001;
const canaryMember = 5002;
const busyMember = 5003;
const perMinute = 30;
const redis = testRedis();
const prefix = uniquePrefix('intake');
const parameterPrefix = 'fbtest';
const logs = capturedLogger();
const metrics = createMetrics();
const counted = async (sample: string) => sampleValue((await metrics.scrape()).body, sample);
const admin: Caller = { platform: 'slack', userId: 'UADMIN', displayName: 'ops', role: 'admin' };
let fake: FakeTelegram;
let openAi: FakeOpenAi;
let aws: TestAws;
let ssm: SSMClient;
let bot: TestBot;
let adapter: TelegramAdapter;

beforeAll(async () => {
  fake = await startFakeTelegram();
  fake.addBot(ourToken, { username: 'fleet_intake_bot' });
  fake.addBot(assistantToken, { username: 'my_assistant_bot' });
  openAi = await startFakeOpenAi();
  openAi.accept(openAiKey);
  aws = testAws(inject('motoUrl'), testAccountId());
  ssm = aws.ssm;
  const config = testConfig({
    REDIS_PREFIX: prefix,
    PARAMETER_PREFIX: parameterPrefix,
    KMS_KEY_ID: 'alias/fleetbot-secrets',
    TELEGRAM_BOT_TOKEN: ourToken,
    TELEGRAM_API_ROOT: fake.apiRoot,
    TELEGRAM_ALLOWED_USER_IDS: `${member},${canaryMember},${busyMember}`,
    OPENAI_BASE_URL: openAi.url,
    INTAKE_PER_USER_PER_MINUTE: String(perMinute),
  });
  bot = testBot(config, redis, aws, logs.log, metrics);
  adapter = createTelegramAdapter({
    token: ourToken,
    apiRoot: fake.apiRoot,
    mode: 'polling',
    roleOf: bot.roleOf,
    dispatch: bot.dispatch,
    log: logs.log,
    meter: metrics,
  });
  await adapter.start();
});

afterAll(async () => {
  await adapter?.stop();
  await bot?.close();
  await fake?.close();
  await openAi?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

/** Sends as a user and waits for the bot's next new message in that chat. */
async function send(
  userId: number,
  text: string,
  extra: Partial<Parameters<FakeTelegram['sendUserMessage']>[1]> = {},
) {
  const before = fake.chat(token(), userId).sent.length;
  const sent = fake.sendUserMessage(token(), { userId, text, firstName: 'Member', ...extra });
  const reply = await fake.waitFor(() => fake.chat(token(), userId).sent.slice(before)[0], 5000);
  return { sent, reply: reply as Message.TextMessage };
}
const token = () => ourToken;
const deletedIds = (userId: number) => fake.chat(ourToken, userId).deleted;

async function storedValue(userId: number, kind: string): Promise<string | undefined> {
  try {
    const got = await ssm.send(
      new GetParameterCommand({ Name: `/${parameterPrefix}/users/${userId}/${kind}`, WithDecryption: true }),
    );
    return got.Parameter?.Value;
  } catch {
    return undefined;
  }
}

describe('secret intake over Telegram', () => {
  it('when a member pastes an assistant bot token, then it is deleted, stored as SecureString with tags, and only a fingerprint is shown', async () => {
    const stored = await counted('fleetbot_secrets_stored_total{kind="telegram-bot-token"}');
    const deleted = await counted('fleetbot_chat_messages_total{platform="telegram",action="deleted"}');
    const { sent, reply } = await send(member, assistantToken);
    expect(deletedIds(member)).toContain(sent.message_id);
    expect(await counted('fleetbot_secrets_stored_total{kind="telegram-bot-token"}')).toBe(stored + 1);
    expect(await counted('fleetbot_chat_messages_total{platform="telegram",action="deleted"}')).toBe(
      deleted + 1,
    );
    expect(reply.text).toMatch(
      /^Stored your telegram-bot-token \(…[0-9a-f]{4}\) at \d{4}-\d\d-\d\d \d\d:\d\d UTC\. I deleted your message\.$/,
    );
    expect(reply.text).toContain(fingerprint(assistantToken));
    expect(reply.text).not.toContain(assistantToken);
    expect(await storedValue(member, 'telegram-bot-token')).toBe(assistantToken);
    const name = `/${parameterPrefix}/users/${member}/telegram-bot-token`;
    const described = await ssm.send(
      new DescribeParametersCommand({ ParameterFilters: [{ Key: 'Name', Values: [name] }] }),
    );
    expect(described.Parameters?.[0]).toMatchObject({
      Name: name,
      Type: 'SecureString',
      KeyId: 'alias/fleetbot-secrets',
    });
    const tags = await ssm.send(
      new ListTagsForResourceCommand({ ResourceType: 'Parameter', ResourceId: name }),
    );
    expect(tags.TagList).toEqual(
      expect.arrayContaining([
        { Key: 'app', Value: 'fleetbot' },
        { Key: 'user', Value: String(member) },
        { Key: 'kind', Value: 'telegram-bot-token' },
      ]),
    );
  });

  it('when a member pastes an OpenAI key, then it is checked live and stored, and a second paste overwrites it', async () => {
    const { reply } = await send(member, openAiKey);
    expect(reply.text).toContain(`Stored your openai-api-key (${fingerprint(openAiKey)})`);
    expect(await storedValue(member, 'openai-api-key')).toBe(openAiKey);
    const rotated = `sk-${'R0tat3d'.repeat(5)}`;
    openAi.accept(rotated);
    await send(member, rotated);
    expect(await storedValue(member, 'openai-api-key')).toBe(rotated);
  });

  it('when /secrets is sent, then kinds and dates are listed and no value appears', async () => {
    const { reply } = await send(member, '/secrets');
    expect(reply.text).toMatch(/• telegram-bot-token: stored, last changed \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    expect(reply.text).toMatch(/• openai-api-key: stored, last changed/);
    expect(reply.text).not.toContain('sk-');
  });

  it('when /set names a kind, then the next message is taken as that kind', async () => {
    const key = `sk-${'SetFlow1'.repeat(4)}`;
    openAi.accept(key);
    const prompt = await send(member, '/set openai-api-key');
    expect(prompt.reply.text).toContain(
      'Send your openai-api-key (your OpenAI API key) as your next message, within 2 minutes.',
    );
    const { sent, reply } = await send(member, key);
    expect(deletedIds(member)).toContain(sent.message_id);
    expect(reply.text).toContain('Stored your openai-api-key');
    expect(await storedValue(member, 'openai-api-key')).toBe(key);
  });

  it('when /set carries the value inline, then the command message itself is deleted and the value stored', async () => {
    const key = `sk-${'Inline22'.repeat(4)}`;
    openAi.accept(key);
    const { sent, reply } = await send(member, `/set openai-api-key ${key}`);
    expect(deletedIds(member)).toContain(sent.message_id);
    expect(reply.text).toContain('Stored your openai-api-key');
  });

  it('when the live check refuses, then nothing is stored and the reason is given', async () => {
    const unknownToken = `7300000003:${'x'.repeat(35)}`;
    const { sent, reply } = await send(member, unknownToken);
    expect(deletedIds(member)).toContain(sent.message_id);
    expect(reply.text).toBe('I did not store this telegram-bot-token: Telegram does not accept this token.');
    const own = await send(member, ourToken);
    expect(own.reply.text).toBe(
      "I did not store this telegram-bot-token: this is fleetbot's own token, not your assistant's.",
    );
    const badKey = await send(member, `sk-${'Unknown9'.repeat(4)}`);
    expect(badKey.reply.text).toBe('I did not store this openai-api-key: OpenAI does not accept this key.');
    expect(await storedValue(member, 'telegram-bot-token')).toBe(assistantToken);
  });

  it.each([
    ['   ', 'That message was empty. Nothing was stored.'],
    [
      `sk-${'a'.repeat(4200)}`,
      'That is longer than 4096 bytes, more than any secret I keep. Nothing was stored.',
    ],
    ['just some words', "I don't recognize this, so I stored nothing."],
  ])(
    'when a member sends %#, then the clear answer is given and the message deleted',
    async (text, answer) => {
      const { sent, reply } = await send(member, text);
      expect(reply.text.startsWith(answer)).toBe(true);
      expect(deletedIds(member)).toContain(sent.message_id);
    },
  );

  it('when the message is forwarded, then nothing is stored and a secret-shaped one is deleted', async () => {
    const forwarded = `sk-${'Forward7'.repeat(4)}`;
    openAi.accept(forwarded);
    const { sent, reply } = await send(member, forwarded, {
      forwardOrigin: { type: 'hidden_user', sender_user_name: 'Someone', date: 1 },
    });
    expect(reply.text).toContain("I don't take forwarded messages");
    expect(reply.text).toContain('I deleted it because it looked like a secret.');
    expect(deletedIds(member)).toContain(sent.message_id);
    expect(await storedValue(member, 'openai-api-key')).not.toBe(forwarded);
  });

  it('when a member edits an earlier message into a secret, then the edit is taken like a new message', async () => {
    const key = `sk-${'EditedIn'.repeat(4)}`;
    openAi.accept(key);
    // A command message is not deleted, so it is one the user can still edit.
    const { sent } = await send(member, '/whoami');
    const before = fake.chat(ourToken, member).sent.length;
    fake.editUserMessage(ourToken, { chatId: member, messageId: sent.message_id, text: key });
    const reply = await fake.waitFor(() => fake.chat(ourToken, member).sent.slice(before)[0], 5000);
    expect(reply.text).toContain('Stored your openai-api-key');
    expect(await storedValue(member, 'openai-api-key')).toBe(key);
  });

  it('when a sticker arrives, then the member is told only text is taken', async () => {
    const before = fake.chat(ourToken, member).sent.length;
    fake.injectUpdate(ourToken, {
      message: {
        message_id: 90_001,
        date: Math.floor(Date.now() / 1000),
        chat: { id: member, type: 'private', first_name: 'Member' },
        from: { id: member, is_bot: false, first_name: 'Member' },
        sticker: {
          file_id: 'f',
          file_unique_id: 'u',
          type: 'regular',
          width: 1,
          height: 1,
          is_animated: false,
          is_video: false,
        },
      },
    } as never);
    const reply = await fake.waitFor(() => fake.chat(ourToken, member).sent.slice(before)[0], 5000);
    expect(reply.text).toBe(
      'I only take secrets as plain text typed or pasted into a message. Nothing was stored.',
    );
  });

  it('when the message cannot be deleted, then nothing is stored, earlier values stay, and the user is told to revoke it', async () => {
    const earlier = `sk-${'Earlier1'.repeat(4)}`;
    openAi.accept(earlier);
    expect((await send(member, earlier)).reply.text).toContain('Stored your openai-api-key');
    const name = `/${parameterPrefix}/users/${member}/openai-api-key`;
    const version = async () =>
      (await ssm.send(new DescribeParametersCommand({ ParameterFilters: [{ Key: 'Name', Values: [name] }] })))
        .Parameters?.[0]?.Version;
    const before = await version();
    const checksBefore = openAi.requests();
    const canary = `sk-CANARYundeleted${Date.now()}${'u'.repeat(12)}`;
    openAi.accept(canary);

    // Pasted, and through /set: Telegram refuses to delete the message holding it both times.
    for (const flow of ['paste', '/set'] as const) {
      if (flow === '/set') await send(member, '/set openai-api-key');
      fake.failNext(ourToken, 'deleteMessage', {
        errorCode: 400,
        description: "Bad Request: message can't be deleted",
      });
      const { sent, reply } = await send(member, canary);
      expect(deletedIds(member)).not.toContain(sent.message_id);
      expect(reply.text).toBe(
        '⚠️ I could not delete your message, so I did not store this openai-api-key: it is still visible in this chat. Revoke it at https://platform.openai.com/api-keys, delete that message yourself, then send me a new one.',
      );
    }
    expect(await storedValue(member, 'openai-api-key')).toBe(earlier);
    expect(await version()).toBe(before);
    // Not even checked live: the value went nowhere.
    expect(openAi.requests()).toBe(checksBefore);

    const leaks = (text: string) => text.includes(canary) || text.includes('CANARYundeleted');
    expect(logs.lines.filter(leaks)).toEqual([]);
    expect(logs.lines.filter((l) => l.includes('its message could not be deleted'))).toHaveLength(2);
    expect(await redisKeysMatching(redis, leaks)).toEqual([]);
    const botCalls = fake.calls(ourToken).filter((c) => c.method !== 'getUpdates');
    expect(botCalls.filter((c) => leaks(JSON.stringify(c.params)))).toEqual([]);
  });

  it('when a secret is pasted in a group, then it is never stored, deleted, and its sender told to rotate it', async () => {
    const groupKey = `sk-${'GroupLeak'.repeat(4)}`;
    openAi.accept(groupKey);
    const groupId = -100200300;
    const before = fake.chat(ourToken, groupId).sent.length;
    const sent = fake.sendUserMessage(ourToken, {
      userId: member,
      chatId: groupId,
      chatType: 'group',
      chatTitle: 'team',
      text: groupKey,
    });
    const reply = await fake.waitFor(() => fake.chat(ourToken, groupId).sent.slice(before)[0], 5000);
    expect(reply.text).toContain('That looked like a secret, so I did not store it and deleted it.');
    expect(reply.text).toContain('rotate it');
    expect(fake.chat(ourToken, groupId).deleted).toContain(sent.message_id);
    expect(await storedValue(member, 'openai-api-key')).not.toBe(groupKey);
  });

  it('when /forget is confirmed with the button, then the parameter is gone', async () => {
    const { reply } = await send(member, '/forget openai-api-key');
    expect(reply.text).toContain('Delete your stored openai-api-key?');
    const before = fake.chat(ourToken, member).sent.length;
    fake.pressButton(ourToken, {
      chatId: member,
      userId: member,
      messageId: reply.message_id,
      data: '/forget-confirmed openai-api-key',
    });
    const done = await fake.waitFor(() => fake.chat(ourToken, member).sent.slice(before)[0], 5000);
    expect(done.text).toBe('Deleted your openai-api-key.');
    expect(await storedValue(member, 'openai-api-key')).toBeUndefined();
    const question = fake.chat(ourToken, member).messages.find((m) => m.message_id === reply.message_id);
    expect(question?.reply_markup).toBeUndefined();
    expect(question?.text).toBe(`${reply.text}\n→ Delete it (by Member)`);
  });

  it('when a button is pressed twice before its buttons are gone, then its command runs once', async () => {
    const { reply } = await send(member, '/forget telegram-bot-token');
    const before = fake.chat(ourToken, member).sent.length;
    const press = {
      chatId: member,
      userId: member,
      messageId: reply.message_id,
      data: '/forget-confirmed telegram-bot-token',
    };
    const queries = [fake.pressButton(ourToken, press), fake.pressButton(ourToken, press)];
    await fake.waitFor(() => fake.chat(ourToken, member).sent.slice(before)[1], 5000);
    const answers = fake
      .chat(ourToken, member)
      .sent.slice(before)
      .map((m) => m.text);
    expect(answers).toHaveLength(2);
    expect(answers).toContain('Somebody already pressed a button on that message; nothing more was done.');
    expect(answers).toContainEqual(
      expect.stringMatching(
        /^(Deleted your telegram-bot-token\.|You had no telegram-bot-token stored; nothing changed\.)$/,
      ),
    );
    // Both presses were answered, so neither presser's app keeps spinning.
    expect(fake.callbackAnswers(ourToken).map((a) => a.callbackQueryId)).toEqual(
      expect.arrayContaining(queries),
    );
  });
});

describe('membership by invite', () => {
  const newcomer = 6001;
  const other = 6002;

  it('when a stranger pastes a secret, then it is deleted, refused politely, and not stored', async () => {
    const key = `sk-${'Stranger1'.repeat(4)}`;
    openAi.accept(key);
    const { sent, reply } = await send(newcomer, key);
    expect(reply.text).toBe('Only members can store secrets here. Ask an admin for an invite.');
    expect(deletedIds(newcomer)).toContain(sent.message_id);
    expect(await storedValue(newcomer, 'openai-api-key')).toBeUndefined();
  });

  it('when an admin invites and the code is redeemed, then it works once, and /revoke ends it', async () => {
    const [answer] = await runAs(bot.dispatch, admin, '/invite 1 2h');
    const code =
      /start=([A-Z0-9]{12})/.exec(answer ?? '')?.[1] ?? /\/start ([A-Z0-9]{12})/.exec(answer ?? '')?.[1];
    expect(code).toBeDefined();
    expect(answer).toContain('1 invite, each usable once, valid until');
    expect(await redis.keys(`${prefix}:invite:*`)).not.toContainEqual(expect.stringContaining(code ?? '-'));

    const joined = await send(newcomer, `/start ${code}`);
    // This bot may not manage bots (getMe can_manage_bots is false): the token is pasted, no button.
    expect(joined.reply.text).toBe(
      'Welcome, you are a member now. Send your secrets here (I delete them at once), or /help to see what you can do.',
    );
    expect(fake.chat(ourToken, newcomer).replyKeyboard).toBeUndefined();
    expect((await send(newcomer, '/set telegram-bot-token')).reply.text).toMatch(
      /^Send your telegram-bot-token \(.*@BotFather\)\) as your next message/,
    );
    expect((await send(newcomer, '/whoami')).reply.text).toContain('role: member');
    const again = await send(other, `/start ${code}`);
    expect(again.reply.text).toContain('This invite code is not valid');
    expect((await send(other, '/whoami')).reply.text).toContain('role: not a member');

    const [list] = await runAs(bot.dispatch, admin, '/members');
    expect(list).toContain(`• ${newcomer}, since`);
    expect(list).toContain('invited by UADMIN');
    const question = await send(newcomer, '/forget openai-api-key');
    expect(question.reply.text).toContain('Delete your stored openai-api-key?');
    expect(await runAs(bot.dispatch, admin, `/revoke ${newcomer}`)).toEqual([
      `Telegram user ${newcomer} is no longer a member.`,
      `Stopping the server of Telegram user ${newcomer} and unlinking their secrets from it…`,
    ]);
    expect((await send(newcomer, '/whoami')).reply.text).toContain('role: not a member');
    // A press the role check refuses has no effect on the message: its buttons stay as they were.
    const before = fake.chat(ourToken, newcomer).sent.length;
    fake.pressButton(ourToken, {
      chatId: newcomer,
      userId: newcomer,
      messageId: question.reply.message_id,
      data: '/forget-confirmed openai-api-key',
    });
    const refusal = await fake.waitFor(() => fake.chat(ourToken, newcomer).sent.slice(before)[0], 5000);
    expect(refusal.text).toBe('/forget-confirmed is for members only. Ask an admin for an invite.');
    const kept = fake
      .chat(ourToken, newcomer)
      .messages.find((m) => m.message_id === question.reply.message_id);
    expect(kept?.text).toBe(question.reply.text);
    expect(JSON.stringify(kept?.reply_markup)).toContain('/forget-confirmed openai-api-key');
  });

  it('when an invite has expired, then it is refused', async () => {
    const [invite] = await bot.members.createInvites(1, 50, 'UADMIN', new Date());
    await new Promise((r) => setTimeout(r, 120));
    const { reply } = await send(other, `/start ${invite?.code}`);
    expect(reply.text).toContain('This invite code is not valid: it is unknown, already used or expired.');
  });

  it('when /invite gets bad arguments, then the usage is shown and no code is made', async () => {
    const before = (await redis.keys(`${prefix}:invite:*`)).length;
    const [answer] = await runAs(bot.dispatch, admin, '/invite 50 forever');
    expect(answer).toContain('Usage: /invite [count 1-20] [expiry, e.g. 7d]');
    expect((await redis.keys(`${prefix}:invite:*`)).length).toBe(before);
  });
});

describe('rate limits', () => {
  it('when a member submits more than the per-minute limit, then the extra submission is refused and still deleted', async () => {
    for (let i = 0; i < perMinute; i++)
      expect((await send(busyMember, `not a secret ${i}`)).reply.text).toContain("I don't recognize");
    const { sent, reply } = await send(busyMember, 'one too many');
    expect(reply.text).toBe(
      'That is a lot of secrets in a short time. Wait a minute and send it again. Nothing was stored.',
    );
    expect(deletedIds(busyMember)).toContain(sent.message_id);
  });
});

describe('flood control', () => {
  it('when Telegram answers 429 with retry_after, then the reply is sent again after that time and not lost', async () => {
    fake.failNext(ourToken, 'sendMessage', { retryAfter: 1, chatId: member });
    const rateLimited = await counted('fleetbot_chat_rate_limited_total{platform="telegram"}');
    const sentBefore = await counted('fleetbot_chat_messages_total{platform="telegram",action="sent"}');
    const started = Date.now();
    const { reply } = await send(member, '/whoami');
    expect(reply.text).toContain(`You are Telegram user ${member}`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    const attempts = fake
      .calls(ourToken, 'sendMessage')
      .filter((c) => String(c.params.text).startsWith('You are'));
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(await counted('fleetbot_chat_rate_limited_total{platform="telegram"}')).toBe(rateLimited + 1);
    // Counted when Telegram's answer reaches the bot, a moment after the fake recorded the message.
    await expect
      .poll(() => counted('fleetbot_chat_messages_total{platform="telegram",action="sent"}'))
      .toBe(sentBefore + 1);
  });
});

describe('the secret never rests elsewhere', () => {
  it('when a canary secret goes through intake, then no log line, Redis key or value, or bot message contains it', async () => {
    const canaryKey = `sk-CANARY${Date.now()}${'k'.repeat(20)}`;
    const canaryToken = `7400000004:CANARY${'t'.repeat(29)}`;
    fake.addBot(canaryToken, { username: 'canary_assistant_bot' });
    openAi.accept(canaryKey);
    expect((await send(canaryMember, canaryKey)).reply.text).toContain('Stored your openai-api-key');
    expect((await send(canaryMember, canaryToken)).reply.text).toContain('Stored your telegram-bot-token');
    await send(canaryMember, `/set openai-api-key ${canaryKey}`);
    await send(canaryMember, '/secrets');
    fake.failNext(ourToken, 'deleteMessage', {
      errorCode: 400,
      description: "Bad Request: message can't be deleted",
    });
    await send(canaryMember, canaryKey);
    expect(await storedValue(canaryMember, 'openai-api-key')).toBe(canaryKey);

    const leaks = (text: string) =>
      text.includes(canaryKey) || text.includes(canaryToken) || text.includes('CANARY');
    expect(logs.lines.length).toBeGreaterThan(0);
    expect(logs.lines.filter(leaks)).toEqual([]);

    expect(await redisKeysMatching(redis, leaks)).toEqual([]);

    // What the bot sent to Telegram: every call's parameters (the user's own message is Telegram's, not ours).
    const botCalls = fake.calls(ourToken).filter((c) => c.method !== 'getUpdates');
    expect(botCalls.length).toBeGreaterThan(0);
    expect(botCalls.filter((c) => leaks(JSON.stringify(c.params)))).toEqual([]);
    const chat = fake.chat(ourToken, canaryMember);
    expect([...chat.sent, ...chat.messages].filter((m) => leaks(m.text ?? ''))).toEqual([]);
  });
});
