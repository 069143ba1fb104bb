import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { Dispatch } from '../../src/bot/dispatch.js';
import { createSlackAdapter, type SlackAdapter } from '../../src/bot/slack.js';
import type { Logger } from '../../src/log.js';
import { testAccountId } from '../peers/aws-account.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import { typedCommand } from '../peers/slack-signer.js';
import type { SocketConnection } from '../peers/slack-socket-mode.js';
import { type TestBot, testAws, testBot, testConfig } from '../support/bot.js';
import { capturedLogger } from '../support/quiet-log.js';

const botToken = 'xoxb-socket-mode-test';
const appToken = 'xapp-1-A0FAKEAPP-1-socket-mode-test';
// @slack/socket-mode waits clientPingTimeout (5 s by default, which the adapter keeps) before reconnecting.
const reconnectWithinMs = 12_000;
const redis = testRedis();
const prefix = uniquePrefix('slack-socket');
let fake: FakeSlack;
let adapter: SlackAdapter;
let bot: TestBot;
let log: Logger;
let startupCalls: SlackCall[];
/** Every request waits for this before the real dispatcher runs; a test holds it to see what comes first. */
let dispatchGate: Promise<void> = Promise.resolve();
/** Generous: these waits are about what arrives, not how fast; a loaded machine may take seconds. */
const arrivesWithinMs = 15_000;

beforeAll(async () => {
  fake = await startFakeSlack();
  log = capturedLogger().log;
  const config = testConfig({
    REDIS_PREFIX: prefix,
    SLACK_ADMIN_USER_IDS: 'UADMIN',
    SLACK_ALLOWED_CHANNEL_IDS: 'COPS,CTWO',
  });
  bot = testBot(config, redis, testAws(inject('motoUrl'), testAccountId()), log);
  adapter = socketAdapter(appToken);
  await adapter.start();
  startupCalls = fake.calls();
});

afterAll(async () => {
  await adapter?.stop();
  await bot?.close();
  await fake?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

beforeEach(() => fake.reset());

/** The adapter as main builds it for Socket Mode: an app-level token and no signing secret. */
function socketAdapter(token: string): SlackAdapter {
  return createSlackAdapter({
    botToken,
    appToken: token,
    apiUrl: fake.apiUrl,
    port: 0,
    roleOf: bot.roleOf,
    dispatch: gatedDispatch,
    log,
  });
}

const gatedDispatch: Dispatch = async (request) => {
  await dispatchGate;
  return bot.dispatch(request);
};

const command = (text: string, user = 'UADMIN', channel = 'COPS') =>
  typedCommand(text, { user, channel, responseUrl: fake.responseUrl() });

const ephemeralTo = (user: string) =>
  fake
    .waitFor((c) => c.method === 'chat.postEphemeral' && c.params.user === user, arrivesWithinMs)
    .then((c) => ({ text: String(c.params.text), token: c.token, channel: c.params.channel }));

const openConnection = (token = appToken): SocketConnection => {
  const open = fake.socketMode.open().filter((c) => c.token === token);
  expect(open).toHaveLength(1);
  return open[0] as SocketConnection;
};

/** Sends /whoami as the admin on the adapter's connection and returns the ack and the answer. */
async function whoami() {
  const envelope = fake.socketMode.slashCommand(command('/whoami'));
  const ack = await fake.socketMode.waitForAck(envelope.envelope_id, arrivesWithinMs);
  const answer = await ephemeralTo('UADMIN');
  return { envelope, ack, answer };
}

describe('Slack adapter over Socket Mode', () => {
  it('when started with an app token, then it opens the connection with that token, waits for hello and listens on no port', async () => {
    const opens = startupCalls.filter((c) => c.method === 'apps.connections.open');
    expect(opens.map((c) => [c.token, c.response.ok])).toEqual([[appToken, true]]);
    // The app-level token is used for nothing else, and the bot token never opens connections.
    expect(startupCalls.filter((c) => c.token === appToken)).toEqual(opens);
    const connection = openConnection();
    expect(connection.sent.map((m) => m.type)).toEqual(['hello']);
    expect(adapter.port()).toBeUndefined();
  });

  it('when an admin sends /whoami, then the envelope is acked before the command runs and the answer is posted with the bot token', async () => {
    // Slack shows the user an error unless the ack arrives within 3 s, whatever the command costs. That
    // limit holds only if the ack never waits for the command: hold the dispatcher and the ack must
    // still come, with nothing answered yet. (Order, not a stopwatch: a busy machine cannot fake it.)
    let release = () => {};
    dispatchGate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let outcome: Awaited<ReturnType<typeof whoami>>;
    try {
      const envelope = fake.socketMode.slashCommand(command('/whoami'));
      const ack = await fake.socketMode.waitForAck(envelope.envelope_id, arrivesWithinMs);
      expect(fake.calls().filter((c) => c.method.startsWith('chat.'))).toEqual([]);
      release();
      outcome = { envelope, ack, answer: await ephemeralTo('UADMIN') };
    } finally {
      release();
      dispatchGate = Promise.resolve();
    }
    const { envelope, ack, answer } = outcome;

    expect(ack).toMatchObject({ envelope_id: envelope.envelope_id, connectionId: envelope.connectionId });
    // The adapter acks empty and answers through the Web API, not in the ack.
    expect(ack.payload).toEqual({});
    expect(answer).toEqual({
      text: 'You are Slack user UADMIN (uadmin), role: fleet admin.',
      token: botToken,
      channel: 'COPS',
    });
    expect(fake.socketMode.acks()).toHaveLength(1);
  });

  it('when the command is unknown, then it is acked and the sender is told so', async () => {
    const envelope = fake.socketMode.slashCommand(command('/frobnicate now'));
    await fake.socketMode.waitForAck(envelope.envelope_id, arrivesWithinMs);
    expect((await ephemeralTo('UADMIN')).text).toBe(
      "I don't know /frobnicate. Send /fleetbot help to see what you can do.",
    );
  });

  it('when a stranger sends /help, then the answer reflects their own role', async () => {
    fake.socketMode.slashCommand(command('/help', 'USTRANGER'));
    const { text } = await ephemeralTo('USTRANGER');
    expect(text).toContain('You are not a member yet');
    expect(text).not.toContain('/ping');
  });

  it('when a button is pressed, then the envelope is acked, the buttons are cleared and its command runs as the presser', async () => {
    const press = fake.socketMode.blockActions({
      actionId: 'cmd:0',
      value: '/whoami',
      userId: 'UADMIN',
      channelId: 'COPS',
      messageTs: '1700000000.000100',
      messageText: 'Are you sure?',
      responseUrl: fake.responseUrl(),
      buttonText: 'Confirm',
    });

    await fake.socketMode.waitForAck(press.envelope_id, arrivesWithinMs);
    const update = await fake.waitFor((c) => c.method === 'chat.update', arrivesWithinMs);
    expect(update.token).toBe(botToken);
    expect(update.params).toMatchObject({ channel: 'COPS', ts: '1700000000.000100', blocks: [] });
    expect(String(update.params.text)).toBe('Are you sure?\n→ Confirm (by uadmin)');
    expect((await ephemeralTo('UADMIN')).text).toBe('You are Slack user UADMIN (uadmin), role: fleet admin.');
  });

  it('when Slack sends disconnect, then the client closes, opens a new connection and a later command still works', async () => {
    const before = openConnection();
    fake.socketMode.disconnect('refresh_requested');

    const closed = await fake.socketMode.waitForConnection((c) => c.id === before.id && !!c.closedAt);
    expect(closed.closeCode).toBe(1000); // the client closed it, as asked
    const next = await fake.socketMode.waitForConnection(
      (c) => c.id > before.id && c.token === appToken,
      reconnectWithinMs,
    );
    expect(fake.calls('apps.connections.open').map((c) => [c.token, c.response.ok])).toEqual([
      [appToken, true],
    ]);
    expect(next.sent.map((m) => m.type)).toEqual(['hello']);

    const { envelope, ack, answer } = await whoami();
    expect(envelope.connectionId).toBe(next.id);
    expect(ack.connectionId).toBe(next.id);
    expect(answer.text).toContain('role: fleet admin');
  });

  it('when Slack is down for several attempts while the client reconnects, then it keeps trying and comes back', async () => {
    const before = openConnection();
    // More failures than the three retries of our Web API calls: those must not apply here.
    fake.failNext('apps.connections.open', { error: 'service_unavailable', status: 503, times: 5 });
    fake.socketMode.disconnect('refresh_requested');
    const next = await fake.socketMode.waitForConnection(
      (c) => c.id > before.id && c.token === appToken,
      40_000,
    );
    expect(fake.calls('apps.connections.open').map((c) => c.status)).toEqual([503, 503, 503, 503, 503, 200]);
    const { ack, answer } = await whoami();
    expect(ack.connectionId).toBe(next.id);
    expect(answer.text).toContain('role: fleet admin');
  }, 60_000);

  it('when the socket is dropped without a close frame, then the client reconnects and a later command still works', async () => {
    const before = openConnection();
    fake.socketMode.drop();

    const closed = await fake.socketMode.waitForConnection((c) => c.id === before.id && !!c.closedAt);
    expect(closed.closeCode).toBe(1006);
    const next = await fake.socketMode.waitForConnection(
      (c) => c.id > before.id && c.token === appToken,
      reconnectWithinMs,
    );
    expect(fake.calls('apps.connections.open')).toHaveLength(1);

    const { ack, answer } = await whoami();
    expect(ack.connectionId).toBe(next.id);
    expect(answer.text).toContain('role: fleet admin');
  });

  it('when stop() is called, then the client closes its socket normally and does not reconnect', async () => {
    const stopToken = 'xapp-1-A0FAKEAPP-1-stop-test';
    const second = socketAdapter(stopToken);
    await second.start();
    const connection = openConnection(stopToken);

    await second.stop();
    const closed = await fake.socketMode.waitForConnection((c) => c.id === connection.id && !!c.closedAt);
    expect(closed.closeCode).toBe(1000);
    // The first adapter's connection is untouched.
    const first = openConnection();

    // A barrier instead of a sleep: cut the first adapter's socket now. Its reconnect waits the same
    // delay as a reconnect of the stopped client would have, counted from later, so once the first one
    // is back, the stopped one would have asked for a connection before it.
    fake.socketMode.drop();
    const next = await fake.socketMode.waitForConnection(
      (c) => c.id > first.id && c.token === appToken,
      reconnectWithinMs,
    );
    // Back for real, not only connected: it answers on the new socket (and is not stopped mid-start).
    expect((await whoami()).ack.connectionId).toBe(next.id);
    expect(fake.calls('apps.connections.open').filter((c) => c.token === stopToken)).toHaveLength(1);
    expect(fake.socketMode.open().filter((c) => c.token === stopToken)).toEqual([]);
  }, 30_000);
});
