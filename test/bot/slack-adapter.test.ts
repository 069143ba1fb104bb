import { Queue } from 'bullmq';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createSlackAdapter, type SlackAdapter } from '../../src/bot/slack.js';
import { queueNames } from '../../src/jobs/queues.js';
import { testAccountId } from '../peers/aws-account.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, startFakeSlack } from '../peers/slack-api.js';
import {
  blockActionsPayload,
  sendInteraction,
  sendSlashCommand,
  typedCommand,
} from '../peers/slack-signer.js';
import { type TestBot, testAws, testBot, testConfig } from '../support/bot.js';
import { capturedLogger } from '../support/quiet-log.js';

const signingSecret = 'test-signing-secret-0123456789';
const redis = testRedis();
const prefix = uniquePrefix('slack');
let fake: FakeSlack;
let adapter: SlackAdapter;
let bot: TestBot;
let eventsUrl: string;
/** What the adapter handed to the dispatcher, in order: the test's record of what ran. */
const dispatched: string[] = [];
/** Every request waits for this before the real dispatcher runs; a test holds it to see what comes first. */
let dispatchGate: Promise<void> = Promise.resolve();

beforeAll(async () => {
  fake = await startFakeSlack();
  const { log } = capturedLogger();
  const config = testConfig({
    REDIS_PREFIX: prefix,
    SLACK_ADMIN_USER_IDS: 'UADMIN',
    SLACK_ALLOWED_CHANNEL_IDS: 'COPS,CTWO',
  });
  bot = testBot(config, redis, testAws(inject('motoUrl'), testAccountId()), log);
  adapter = createSlackAdapter({
    botToken: 'xoxb-test-token',
    signingSecret,
    apiUrl: fake.apiUrl,
    host: '127.0.0.1',
    port: 0,
    roleOf: bot.roleOf,
    async dispatch(request) {
      dispatched.push(request.text.trim());
      await dispatchGate;
      return bot.dispatch(request);
    },
    log,
  });
  await adapter.start();
  eventsUrl = `http://127.0.0.1:${adapter.port()}/slack/events`;
});

afterAll(async () => {
  await adapter?.stop();
  await bot?.close();
  await fake?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

beforeEach(() => {
  fake.reset();
  dispatched.length = 0;
});

const command = (text: string, user = 'UADMIN', channel = 'COPS') =>
  typedCommand(text, { user, channel, responseUrl: fake.responseUrl() });

const ephemeralTo = (user: string) =>
  fake
    .waitFor((c) => c.method === 'chat.postEphemeral' && c.params.user === user)
    .then((c) => String(c.params.text));

describe('Slack adapter over signed HTTP', () => {
  it('when an admin sends /whoami, then Bolt acks before the command runs and the answer is ephemeral', async () => {
    // Slack gives up on a request not acked within 3 s, whatever the command costs; Bolt answers 404
    // itself after that long. So the ack must never wait for the command: with the dispatcher held,
    // the 200 must still come and nothing be answered yet. (Order, not a stopwatch.)
    let release = () => {};
    dispatchGate = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const res = await sendSlashCommand(eventsUrl, signingSecret, command('/whoami'));
      expect(res.status).toBe(200);
      expect(fake.calls().filter((c) => c.method.startsWith('chat.'))).toEqual([]);
      release();
      expect(await ephemeralTo('UADMIN')).toBe('You are Slack user UADMIN (uadmin), role: fleet admin.');
    } finally {
      release();
      dispatchGate = Promise.resolve();
    }
  });

  it('when an admin sends /help, then admin commands are listed', async () => {
    await sendSlashCommand(eventsUrl, signingSecret, command('/help'));
    const text = await ephemeralTo('UADMIN');
    // Typed in Slack as `/fleetbot ping`, so that is how Slack shows it; /deploy is a command of its own.
    expect(text).toContain('\n/fleetbot ping - check that a worker picks up jobs');
    expect(text).toContain('\n/deploy &lt;version&gt; ');
    expect(text).toContain('\n/patch scan|install ');
    expect(text).not.toContain('/cancelled');
  });

  it('when a stranger sends /help, then they are told they are not a member and see no admin commands', async () => {
    await sendSlashCommand(eventsUrl, signingSecret, command('/help', 'USTRANGER'));
    const text = await ephemeralTo('USTRANGER');
    expect(text).toContain('You are not a member yet');
    expect(text).not.toContain('/ping');
  });

  it('when an admin writes outside the allowed channels, then admin rights do not apply', async () => {
    await sendSlashCommand(eventsUrl, signingSecret, command('/ping', 'UADMIN', 'CRANDOM'));
    expect(await ephemeralTo('UADMIN')).toBe('/fleetbot ping is for fleet admins only.');
  });

  it('when an admin sends /ping, then a message is posted and a job referencing it is queued', async () => {
    await sendSlashCommand(eventsUrl, signingSecret, command('/ping'));
    const post = await fake.waitFor((c) => c.method === 'chat.postMessage');
    expect(post.params).toMatchObject({ channel: 'COPS', text: 'Ping queued; waiting for a worker…' });
    const ts = String(post.response.ts);
    const queue = new Queue(queueNames.ops, { connection: redis, prefix });
    await expect
      .poll(async () => (await queue.getJobs(['waiting'])).map((j) => j.data.message))
      .toContainEqual({ platform: 'slack', chatId: 'COPS', messageId: ts });
    await queue.close();
  });

  it('when the command is unknown, then the sender is told so', async () => {
    await sendSlashCommand(eventsUrl, signingSecret, command('/frobnicate now'));
    expect(await ephemeralTo('UADMIN')).toBe(
      "I don't know /frobnicate. Send /fleetbot help to see what you can do.",
    );
  });

  it.each([
    ['/fleetbot whoami', '/whoami', 'You are Slack user UADMIN (uadmin), role: fleet admin.'],
    ['/fleetbot', '/help', 'Commands you can run:'],
    [
      '/fleetbot frobnicate now',
      '/frobnicate now',
      "I don't know /frobnicate. Send /fleetbot help to see what you can do.",
    ],
  ])('when an admin sends %j, then the dispatcher runs %j', async (typed, line, answer) => {
    await sendSlashCommand(eventsUrl, signingSecret, command(typed));
    expect((await ephemeralTo('UADMIN')).split('\n')[0]).toBe(answer);
    expect(dispatched).toEqual([line]);
  });

  it('when the signature is wrong, then the receiver answers 401 and nothing runs', async () => {
    const res = await sendSlashCommand(eventsUrl, signingSecret, command('/whoami'), {
      signature: 'v0=deadbeef',
    });
    expect(res.status).toBe(401);
    const other = await sendSlashCommand(eventsUrl, 'another-secret', command('/whoami'));
    expect(other.status).toBe(401);
    // A barrier instead of a sleep: a valid command sent after both. Had either refused one run, it
    // would have reached the dispatcher first, so once this one is answered the record is complete.
    expect((await sendSlashCommand(eventsUrl, signingSecret, command('/help'))).status).toBe(200);
    expect(await ephemeralTo('UADMIN')).toContain('Commands you can run');
    expect(dispatched).toEqual(['/help']);
    expect(fake.calls('chat.postEphemeral')).toHaveLength(1);
  });

  it('when a signed body is larger than any Slack payload, then 413 and nothing runs', async () => {
    const res = await sendSlashCommand(eventsUrl, signingSecret, {
      ...command('/whoami'),
      text: 'x'.repeat(300 * 1024),
    });
    expect(res.status).toBe(413);
    expect((await sendSlashCommand(eventsUrl, signingSecret, command('/help'))).status).toBe(200);
    expect(await ephemeralTo('UADMIN')).toContain('Commands you can run');
    expect(dispatched).toEqual(['/help']);
  });

  it('when the receiver is bound to 127.0.0.1, then another local address is refused', async () => {
    // Linux routes all of 127/8 to loopback: a server on every interface would answer 127.0.0.2 too.
    await expect(
      fetch(`http://127.0.0.2:${adapter.port()}/slack/events`, { method: 'POST' }),
    ).rejects.toThrow();
    const res = await fetch(eventsUrl, { method: 'POST' });
    expect(res.status).toBe(401);
  });

  it('when the timestamp is over five minutes old, then 401', async () => {
    const old = Math.floor(Date.now() / 1000) - 6 * 60;
    expect(
      (await sendSlashCommand(eventsUrl, signingSecret, command('/whoami'), { timestampSec: old })).status,
    ).toBe(401);
  });

  it('when the timestamp is over five minutes in the future, then 401 (Bolt alone would accept it)', async () => {
    const future = Math.floor(Date.now() / 1000) + 6 * 60;
    const res = await sendSlashCommand(eventsUrl, signingSecret, command('/whoami'), {
      timestampSec: future,
    });
    expect(res.status).toBe(401);
    const near = Math.floor(Date.now() / 1000) + 60;
    expect(
      (await sendSlashCommand(eventsUrl, signingSecret, command('/whoami'), { timestampSec: near })).status,
    ).toBe(200);
  });

  it('when a button is pressed, then its buttons are cleared and its command runs with the presser as caller', async () => {
    const press = (user: string, value: string) =>
      sendInteraction(
        eventsUrl,
        signingSecret,
        blockActionsPayload({
          actionId: 'cmd:0',
          value,
          userId: user,
          channelId: 'COPS',
          messageTs: '1700000000.000100',
          messageText: 'Are you sure?',
          responseUrl: fake.responseUrl(),
          buttonText: 'Confirm',
        }),
      );
    expect((await press('UADMIN', '/whoami')).status).toBe(200);
    const update = await fake.waitFor((c) => c.method === 'chat.update');
    expect(update.params).toMatchObject({ channel: 'COPS', ts: '1700000000.000100', blocks: [] });
    expect(String(update.params.text)).toContain('→ Confirm');
    expect(await ephemeralTo('UADMIN')).toContain('role: fleet admin');
    // A button is only a command line: the presser's own rights decide.
    await press('USTRANGER', '/ping');
    expect(await ephemeralTo('USTRANGER')).toBe('/fleetbot ping is for fleet admins only.');
  });

  it('when a button fleetbot did not render is pressed, then it is acknowledged and nothing runs', async () => {
    const res = await sendInteraction(
      eventsUrl,
      signingSecret,
      blockActionsPayload({
        actionId: 'someone-elses-button',
        value: '/whoami',
        userId: 'UADMIN',
        channelId: 'COPS',
        messageTs: '1700000000.000200',
        messageText: 'Not ours',
        responseUrl: fake.responseUrl(),
        buttonText: 'Open',
      }),
    );
    expect(res.status).toBe(200);
    // A barrier instead of a sleep: one of fleetbot's own buttons, pressed after. It clears its buttons,
    // then dispatches; had the foreign press run anything, it would have got there first.
    const ours = await sendInteraction(
      eventsUrl,
      signingSecret,
      blockActionsPayload({
        actionId: 'cmd:0',
        value: '/help',
        userId: 'UADMIN',
        channelId: 'COPS',
        messageTs: '1700000000.000300',
        messageText: 'Ours',
        responseUrl: fake.responseUrl(),
        buttonText: 'Confirm',
      }),
    );
    expect(ours.status).toBe(200);
    // Waits for this press's own answer: the foreign one carried /whoami, so it cannot stand in.
    await fake.waitFor(
      (c) => c.method === 'chat.postEphemeral' && String(c.params.text).startsWith('Commands you can run'),
    );
    expect(dispatched).toEqual(['/help']);
    const chat = fake.calls().filter((c) => c.method.startsWith('chat.'));
    expect(chat.map((c) => c.method)).toEqual(['chat.update', 'chat.postEphemeral']);
    expect(chat[0]?.params.ts).toBe('1700000000.000300');
  });
});
