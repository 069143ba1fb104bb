import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import type { Message } from 'grammy/types';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTelegramAdapter, type TelegramAdapter } from '../../src/bot/telegram.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { type TestAws, type TestBot, testAws, testBot, testConfig } from '../support/bot.js';
import { expectPaced, pacerSlots } from '../support/pacer-slots.js';
import { capturedLogger } from '../support/quiet-log.js';

/** Intake against Parameter Store behind the AWS simulator: injected faults and the global write pace. */

const ourToken = `7500000005:${'W'.repeat(35)}`;
const members = Array.from({ length: 21 }, (_, i) => 8001 + i);
const first = members[0] ?? 0;
const redis = testRedis();
const prefix = uniquePrefix('intake-aws');
const accountId = testAccountId();
let simulator: AwsSimulator;
let fake: FakeTelegram;
let aws: TestAws;
let ssm: SSMClient;
let bot: TestBot;
let adapter: TelegramAdapter;
const logs = capturedLogger();

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl') });
  fake = await startFakeTelegram();
  fake.addBot(ourToken);
  aws = testAws(simulator.url, accountId);
  ssm = aws.ssm;
  const config = testConfig({
    REDIS_PREFIX: prefix,
    PARAMETER_PREFIX: 'fbload',
    TELEGRAM_BOT_TOKEN: ourToken,
    TELEGRAM_API_ROOT: fake.apiRoot,
    TELEGRAM_ALLOWED_USER_IDS: members.join(','),
    PARAMETER_WRITES_PER_SECOND: '2',
  });
  bot = testBot(config, redis, aws, logs.log);
  adapter = createTelegramAdapter({
    token: ourToken,
    apiRoot: fake.apiRoot,
    mode: 'polling',
    roleOf: bot.roleOf,
    dispatch: bot.dispatch,
    log: logs.log,
  });
  await adapter.start();
});

afterAll(async () => {
  await adapter?.stop();
  await bot?.close();
  await fake?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

const keyOf = (userId: number) => `sk-load${userId}${'x'.repeat(24)}`;

async function paste(userId: number, text: string) {
  const before = fake.chat(ourToken, userId).sent.length;
  const sent = fake.sendUserMessage(ourToken, { userId, text, firstName: 'M' });
  const reply = await fake.waitFor(() => fake.chat(ourToken, userId).sent.slice(before)[0], 20_000);
  return { sent, reply: reply as Message.TextMessage };
}

async function stored(userId: number): Promise<string | undefined> {
  return ssm
    .send(new GetParameterCommand({ Name: `/fbload/users/${userId}/openai-api-key`, WithDecryption: true }))
    .then((r) => r.Parameter?.Value)
    .catch(() => undefined);
}

describe('intake when Parameter Store fails', () => {
  it('when PutParameter is throttled, then the message is still deleted and the user is told nothing was saved', async () => {
    simulator.control.injectFault(accountId, { operation: 'PutParameter', kind: 'throttle', count: 1 });
    const { sent, reply } = await paste(first, keyOf(first));
    expect(fake.chat(ourToken, first).deleted).toContain(sent.message_id);
    expect(reply.text).toBe('AWS is busy right now and nothing was saved. Send it again in a minute.');
    expect(await stored(first)).toBeUndefined();
  });

  it('when Parameter Store answers 5xx, then the user is told it was not saved and to try later', async () => {
    simulator.control.injectFault(accountId, { operation: 'PutParameter', kind: 'server-error', count: 1 });
    const { reply } = await paste(first, keyOf(first));
    expect(reply.text).toBe(
      'I could not save it to the secret store, so nothing was saved. An admin has the details; try again later.',
    );
    expect(await stored(first)).toBeUndefined();
  });

  it('when no OpenAI API is configured, then the key is stored with a note that it was not checked live', async () => {
    const { reply } = await paste(first, keyOf(first));
    expect(reply.text).toContain('Stored your openai-api-key');
    expect(reply.text).toContain('Not checked live: no OpenAI API is configured to check it against.');
    expect(await stored(first)).toBe(keyOf(first));
  });
});

describe('intake under a burst', () => {
  it('when 20 members submit at once, then all are stored and PutParameter never exceeds 2 per second', async () => {
    simulator.control.resetCalls(accountId);
    const logMark = logs.lines.length;
    const burst = members.slice(1);
    const replies = await Promise.all(burst.map((userId) => paste(userId, keyOf(userId))));
    expect(replies.map((r) => r.reply.text.startsWith('Stored your openai-api-key'))).toEqual(
      burst.map(() => true),
    );
    for (const userId of burst) expect(await stored(userId)).toBe(keyOf(userId));

    const puts = simulator.control.calls(accountId, 'PutParameter');
    expect(puts).toHaveLength(20);
    expect(puts.every((c) => c.status === 200)).toBe(true);
    // At most 2 writes per second, as Parameter Store meters them: read from the slots the shared pacer
    // handed out, since arrival times on a loaded machine bunch up after a stall.
    expectPaced(
      puts.map((c) => c.at),
      pacerSlots(logs.lines.slice(logMark), `${prefix}:pace:put-parameter`),
      2,
    );
  }, 40_000);
});
