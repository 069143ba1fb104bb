import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTelegramAdapter, type TelegramAdapter } from '../../src/bot/telegram.js';
import { testAccountId } from '../peers/aws-account.js';
import { freePort } from '../peers/free-port.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { type TestBot, testAws, testBot, testConfig } from '../support/bot.js';
import { capturedLogger } from '../support/quiet-log.js';

const token = `7000000001:${'P'.repeat(35)}`;
const member = 4242;
const stranger = 777;
const redis = testRedis();
const prefix = uniquePrefix('telegram');
let fake: FakeTelegram;
let bot: TestBot;

beforeAll(async () => {
  fake = await startFakeTelegram();
  fake.addBot(token, { username: 'fleet_test_bot' });
  const config = testConfig({ REDIS_PREFIX: prefix, TELEGRAM_ALLOWED_USER_IDS: String(member) });
  bot = testBot(config, redis, testAws(inject('motoUrl'), testAccountId()), capturedLogger().log);
});

afterAll(async () => {
  await bot?.close();
  await fake?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

function adapterFor(
  mode: 'polling' | 'webhook',
  webhook?: { url: string; secret: string; host: string; port: number },
) {
  return createTelegramAdapter({
    token,
    apiRoot: fake.apiRoot,
    mode,
    webhook,
    roleOf: bot.roleOf,
    dispatch: bot.dispatch,
    log: capturedLogger().log,
  });
}

/** Sends as the user and waits for a new bot message matching `expected` (older ones do not count). */
async function conversation(userId: number, text: string, expected: RegExp) {
  const before = fake.chat(token, userId).sent.length;
  fake.sendUserMessage(token, { userId, text, firstName: 'Ann', username: `user${userId}` });
  return fake.waitFor(
    () =>
      fake
        .chat(token, userId)
        .sent.slice(before)
        .find((m) => expected.test(m.text ?? '')),
    5000,
  );
}

describe.each(['polling', 'webhook'] as const)('Telegram adapter (%s)', (mode) => {
  let adapter: TelegramAdapter;
  let hookUrl = '';
  const secret = 'webhook-secret-0123456789abcdef';

  beforeAll(async () => {
    const port = await freePort();
    hookUrl = `http://127.0.0.1:${port}/telegram/hook`;
    adapter = adapterFor(
      mode,
      mode === 'webhook' ? { url: hookUrl, secret, host: '127.0.0.1', port } : undefined,
    );
    await adapter.start();
  });
  afterAll(async () => {
    await adapter?.stop();
  });

  it('when a member sends /help, then member commands are listed and admin ones are not', async () => {
    const reply = await conversation(member, '/help', /^Commands you can run:/);
    expect(reply.text).toContain('/whoami - show who fleetbot thinks you are');
    expect(reply.text).toContain('/set <kind>');
    expect(reply.text).not.toContain('/invite');
  });

  it('when a member sends /whoami, then their Telegram id and role come back', async () => {
    const reply = await conversation(member, '/whoami', /^You are/);
    expect(reply.text).toBe(`You are Telegram user ${member} (@user${member}), role: member.`);
  });

  it('when a stranger sends /help, then the one answer says they are not a member', async () => {
    const reply = await conversation(stranger, '/help', /not a member/);
    expect(reply.text).toContain('ask an admin for an invite');
    expect(reply.text).not.toContain('/set');
  });

  it('when a member sends an admin command, then it is refused by name', async () => {
    const reply = await conversation(member, '/invite 2', /admins only/);
    expect(reply.text).toBe('/invite is for fleet admins only.');
  });

  if (mode === 'webhook') {
    it('when the webhook is registered, then Telegram knows the url and sends the secret header', async () => {
      const info = fake.calls(token, 'setWebhook').at(-1);
      expect(info?.params).toMatchObject({ url: hookUrl, secret_token: secret });
      expect(fake.webhookDeliveries(token).every((d) => d.secretSent && d.status === 200)).toBe(true);
      expect(fake.webhookDeliveries(token).length).toBeGreaterThan(0);
    });

    it('when a request carries a wrong or no secret, then the webhook answers 401 and nothing runs', async () => {
      const before = fake.calls(token, 'sendMessage').length;
      const update = JSON.stringify({
        update_id: 999_001,
        message: {
          message_id: 1,
          date: 1,
          chat: { id: member, type: 'private' },
          from: { id: member, is_bot: false, first_name: 'x' },
          text: '/whoami',
        },
      });
      const post = (headers: Record<string, string>) =>
        fetch(hookUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: update,
        });
      expect((await post({ 'x-telegram-bot-api-secret-token': 'wrong-secret-value' })).status).toBe(401);
      expect((await post({})).status).toBe(401);
      // A barrier instead of a sleep: updates of one chat are handled one after another, so once a
      // later message from the same chat is answered, a forged /whoami that ran would have been too.
      await conversation(member, '/help', /^Commands you can run:/);
      expect(
        fake
          .calls(token, 'sendMessage')
          .slice(before)
          .map((c) => String(c.params.text).split('\n')[0]),
      ).toEqual(['Commands you can run:']);
    });
  }
});

describe('Telegram adapter under load (polling)', () => {
  it("when one member's update is slow, then others are answered meanwhile and that member's next message waits its turn", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const handled: string[] = [];
    const adapter = createTelegramAdapter({
      token,
      apiRoot: fake.apiRoot,
      mode: 'polling',
      roleOf: bot.roleOf,
      log: capturedLogger().log,
      async dispatch(request) {
        handled.push(`${(await request.caller).userId} ${request.text}`);
        // Stands in for a slow live check or AWS call.
        if (request.text === '/slow') await gate;
        return bot.dispatch(request);
      },
    });
    await adapter.start();
    try {
      fake.sendUserMessage(token, { userId: member, text: '/slow', firstName: 'Ann' });
      await expect.poll(() => handled).toContain(`${member} /slow`);
      fake.sendUserMessage(token, { userId: member, text: '/whoami', firstName: 'Ann' });
      await conversation(stranger, '/whoami', /./);
      // The stranger was answered while the member's first update still ran; the member's second waits.
      expect(handled).toEqual([`${member} /slow`, `${stranger} /whoami`]);
      release();
      await expect
        .poll(() => handled)
        .toEqual([`${member} /slow`, `${stranger} /whoami`, `${member} /whoami`]);
    } finally {
      release();
      await adapter.stop();
    }
  });
});
