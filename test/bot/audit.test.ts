import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Caller } from '../../src/core/caller.js';
import { createAuditTrail } from '../../src/store/audit.js';
import { testAccountId } from '../peers/aws-account.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { type TestBot, testAws, testBot, testConfig } from '../support/bot.js';
import { runAs } from '../support/memory-chat.js';
import { capturedLogger } from '../support/quiet-log.js';

const redis = testRedis();
const prefix = uniquePrefix('audit');
const admin: Caller = { platform: 'slack', userId: 'UAUDIT', displayName: 'ops', role: 'admin' };
const member: Caller = { platform: 'telegram', userId: '7001', displayName: 'm', role: 'user' };
let bot: TestBot;

beforeAll(() => {
  const config = testConfig({
    REDIS_PREFIX: prefix,
    TELEGRAM_ALLOWED_USER_IDS: '7001',
    SLACK_ADMIN_USER_IDS: 'UAUDIT',
  });
  bot = testBot(config, redis, testAws(inject('motoUrl'), testAccountId()), capturedLogger().log);
});

afterAll(async () => {
  await bot.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

describe('audit trail', () => {
  it('when admins act and others are refused, then each decision is recorded with who, what and the outcome', async () => {
    await runAs(bot.dispatch, admin, '/invite 2 1h');
    await runAs(bot.dispatch, member, '/invite 1');
    await runAs(bot.dispatch, admin, '/revoke 7002');
    await runAs(bot.dispatch, admin, '/help');
    const records = await createAuditTrail(redis, prefix, 1000).recent(10);
    expect(records.map((r) => [r.platform, r.actor, r.command, r.args, r.decision, r.outcome])).toEqual([
      ['slack', 'UAUDIT', 'revoke', '7002', 'allowed', 'not a member; stopping their server'],
      ['telegram', '7001', 'invite', '1', 'denied: needs admin, caller is user', undefined],
      ['slack', 'UAUDIT', 'invite', '2 1h', 'allowed', 'ok'],
    ]);
    expect(records.every((r) => !Number.isNaN(Date.parse(r.at)))).toBe(true);
  });

  it('when a command carries a secret, then its arguments are recorded as redacted', async () => {
    await runAs(bot.dispatch, member, `/set openai-api-key sk-AUDITCANARY${'x'.repeat(30)}`);
    const [latest] = await createAuditTrail(redis, prefix, 1000).recent(1);
    expect(latest).toMatchObject({ actor: '7001', command: 'set', args: '[redacted]' });
    const raw = JSON.stringify(await redis.xrange(`${prefix}:audit`, '-', '+'));
    expect(raw).not.toContain('AUDITCANARY');
  });

  it('when an admin asks /audit with a filter, then only matching records come back, newest first', async () => {
    const [text] = await runAs(bot.dispatch, admin, '/audit actor:7001 5');
    expect(text).toMatch(/^Audit, newest first \(2\):\n.* telegram 7001 \/set \[redacted\] → allowed/);
    expect(text).toContain('telegram 7001 /invite 1 → denied: needs admin, caller is user');
    expect(text).not.toContain('UAUDIT /revoke');
    const [bad] = await runAs(bot.dispatch, admin, '/audit actor:$(id)');
    expect(bad).toContain('Usage: /audit');
  });
});
