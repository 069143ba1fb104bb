import { PassThrough, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../src/main.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from './peers/redis.js';
import { captureOutput } from './support/lines.js';

const prefix = uniquePrefix('console');
const input = new PassThrough();
const output = captureOutput();
let running: Running;

async function say(line: string, expected: RegExp) {
  output.clear();
  input.write(`${line}\n`);
  return output.waitFor(expected);
}

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  running = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: inject('motoUrl'),
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      TELEGRAM_ALLOWED_USER_IDS: '42',
      SLACK_ADMIN_USER_IDS: 'U123',
      DASHBOARD_LISTEN: '127.0.0.1:0',
      DASHBOARD_PASSWORD: 'console-dashboard-password',
      LOG_LEVEL: 'silent',
    },
    ['--role=all'],
    {
      console: { input, output: output.stream, identity: { as: 'user', id: '42' } },
      logDestination: new Writable({ write: (_c, _e, done) => done() }),
    },
  );
});

afterAll(async () => {
  await running?.stop();
  const redis = testRedis();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

describe('console chat', () => {
  it('when a member asks for /help, then only what a member may run is listed', async () => {
    const [help] = await say('/help', /bot #\d+: Commands you can run:[\s\S]*?\n(?=\S)/);
    expect(help).toContain('/whoami - show who fleetbot thinks you are');
    expect(help).not.toContain('/ping');
    expect(help).not.toContain('/cancelled');
  });

  it('when the member asks /whoami, then the console identity and role are shown', async () => {
    const [line] = await say('/whoami', /bot #\d+: You are .*\n/);
    expect(line).toContain('You are Telegram user 42 (console), role: member (via the local console).');
  });

  it('when switching to an admin, then /help lists admin commands and /whoami says admin', async () => {
    await say('/as admin U123', /now acting as slack admin U123 \(role: fleet admin\)/);
    const [help] = await say('/help', /bot #\d+: Commands you can run:[\s\S]*?\n(?=\S)/);
    expect(help).toContain('/ping - check that a worker picks up jobs and reaches AWS');
    const [line] = await say('/whoami', /bot #\d+: You are .*\n/);
    expect(line).toContain('You are Slack user U123 (console), role: fleet admin');
  });

  it('when an admin pings, then a real worker edits the same message with its answer', async () => {
    const [queued] = await say('/ping', /bot #(\d+): Ping queued/);
    const id = /#(\d+)/.exec(queued)?.[1];
    const [edited] = await output.waitFor(new RegExp(`bot #${id} \\(edited\\): Pong from worker .*\\n`));
    expect(edited).toMatch(/picked up after \d+ ms; AWS answered in \d+ ms\./);
  });

  it('when someone not on any list switches in, then they are a guest and admin commands are refused', async () => {
    await say('/as admin U999', /role: not a member/);
    const [refusal] = await say('/ping', /bot #\d+: .*\n/);
    expect(refusal).toContain('/ping is for fleet admins only.');
  });

  it('when the command is unknown or the text is not a command, then the console still answers', async () => {
    expect((await say('/frobnicate', /bot #\d+: .*\n/))[0]).toContain("I don't know /frobnicate.");
    await say('/as user 42', /role: member/);
    const [text] = await say('hello there', /bot #\d+: I don't recognize this[\s\S]*?\n(?=\S)/);
    expect(output.text()).toContain('(your message was deleted from the chat)');
    expect(text).toContain('• openai-api-key: your OpenAI API key');
    expect((await say('/as nobody', /usage: .*\n/))[0]).toContain(
      '/as user <telegram id> | /as admin <slack user id>',
    );
  });
});
