import { App, type BlockAction, type Logger, LogLevel, webApi } from '@slack/bolt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { freePort } from './free-port.js';
import { type FakeSlack, startFakeSlack } from './slack-api.js';
import { blockActionsPayload, sendInteraction, sendSlashCommand, signSlackRequest } from './slack-signer.js';

const SECRET = 'peer-test-signing-secret';
const ADMIN = 'U0ADMIN';

/** Captures Bolt's log lines so a test can tell which check refused a request. */
function capturingLogger(lines: string[]): Logger {
  const push =
    (level: string) =>
    (...msg: unknown[]) =>
      lines.push(`${level} ${msg.map(String).join(' ')}`);
  return {
    debug: push('debug'),
    info: push('info'),
    warn: push('warn'),
    error: push('error'),
    setLevel: () => {},
    getLevel: () => LogLevel.DEBUG,
    setName: () => {},
  };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('Slack peers with a real Bolt app', () => {
  let fake: FakeSlack;
  let app: App;
  let eventsUrl: string;
  const logs: string[] = [];
  const whoamiCalls: string[] = [];
  const chattyOutcomes = deferred<Array<{ ok: boolean; status?: number; code?: string }>>();
  const nowSec = () => Math.floor(Date.now() / 1000);

  beforeAll(async () => {
    fake = await startFakeSlack();
    app = new App({
      signingSecret: SECRET,
      token: 'xoxb-test',
      logger: capturingLogger(logs),
      clientOptions: { slackApiUrl: fake.apiUrl },
    });

    app.command('/whoami', async ({ command, ack, client, respond }) => {
      whoamiCalls.push(command.text);
      await ack({ response_type: 'ephemeral', text: `You are <@${command.user_id}>` });
      await client.chat.postMessage({
        channel: command.channel_id,
        text: `whoami by ${command.user_id}`,
        blocks: [{ type: 'section', text: { type: 'mrkdwn', text: `*whoami* by <@${command.user_id}>` } }],
      });
      await respond({ text: 'posted to the channel' });
    });

    app.command('/chatty', async ({ ack, respond }) => {
      await ack();
      const outcomes: Array<{ ok: boolean; status?: number; code?: string }> = [];
      for (let i = 1; i <= 6; i += 1) {
        try {
          await respond({ text: `update ${i}` });
          outcomes.push({ ok: true });
        } catch (err) {
          const e = err as { statusCode?: number; code?: string };
          outcomes.push({ ok: false, status: e.statusCode, code: e.code });
        }
      }
      chattyOutcomes.resolve(outcomes);
    });

    app.action<BlockAction>('restart_server', async ({ ack, body, client, respond }) => {
      await ack();
      const channel = body.channel?.id ?? '';
      const ts = body.message?.ts ?? '';
      const value = body.actions[0]?.type === 'button' ? body.actions[0].value : undefined;
      await client.chat.update({
        channel,
        ts,
        text: `Restarting ${value} for <@${body.user.id}>`,
        blocks: [],
      });
      await respond({ response_type: 'ephemeral', text: 'on it' });
    });

    const port = await freePort();
    await app.start(port);
    eventsUrl = `http://127.0.0.1:${port}/slack/events`;
  });

  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('when a signed slash command arrives, then ack comes back in the response and the Web API calls reach the fake', async () => {
    const responseUrl = fake.responseUrl('whoami-1');
    const res = await sendSlashCommand(eventsUrl, SECRET, {
      command: '/whoami',
      text: 'please',
      user_id: ADMIN,
      channel_id: 'C0WHOAMI',
      response_url: responseUrl,
    });

    expect(res.status).toBe(200);
    expect(res.json).toEqual({ response_type: 'ephemeral', text: `You are <@${ADMIN}>` });

    const post = await fake.waitFor(
      (c) => c.method === 'chat.postMessage' && c.params.channel === 'C0WHOAMI',
    );
    expect(post.token).toBe('xoxb-test');
    expect(post.params.blocks).toEqual([
      { type: 'section', text: { type: 'mrkdwn', text: `*whoami* by <@${ADMIN}>` } },
    ]);
    // Bolt resolves the bot identity with auth.test before dispatching the first event.
    expect(fake.calls('auth.test').length).toBeGreaterThanOrEqual(1);

    const reply = await fake.waitForResponse((p) => p.id === 'whoami-1');
    expect(reply).toMatchObject({ status: 200, accepted: true, body: { text: 'posted to the channel' } });

    const [message] = fake.channel('C0WHOAMI').messages;
    expect(message).toMatchObject({ text: `whoami by ${ADMIN}`, user: fake.botUserId, ts: post.response.ts });
  });

  it('when the signature is wrong, then Bolt answers 401 and the listener never runs', async () => {
    const before = whoamiCalls.length;
    const res = await sendSlashCommand(
      eventsUrl,
      SECRET,
      {
        command: '/whoami',
        text: 'forged',
        user_id: ADMIN,
        channel_id: 'C0X',
        response_url: fake.responseUrl(),
      },
      { signature: signSlackRequest('some-other-secret', 'command=%2Fwhoami', nowSec()) },
    );

    expect(res.status).toBe(401);
    expect(whoamiCalls.length).toBe(before);
    expect(logs.some((l) => l.includes('signature mismatch'))).toBe(true);
  });

  it('when the timestamp is 6 minutes old, then Bolt answers 401 as stale even though the signature matches', async () => {
    const res = await sendSlashCommand(
      eventsUrl,
      SECRET,
      {
        command: '/whoami',
        text: 'replay',
        user_id: ADMIN,
        channel_id: 'C0X',
        response_url: fake.responseUrl(),
      },
      { timestampSec: nowSec() - 6 * 60 },
    );

    expect(res.status).toBe(401);
    expect(whoamiCalls).not.toContain('replay');
    expect(logs.some((l) => l.includes('request is stale'))).toBe(true);
  });

  it('when the timestamp is 10 minutes in the future, then Bolt 5.1.0 still accepts it (no future bound: the app must add one)', async () => {
    const res = await sendSlashCommand(
      eventsUrl,
      SECRET,
      {
        command: '/whoami',
        text: 'from-the-future',
        user_id: ADMIN,
        channel_id: 'C0FUT',
        response_url: fake.responseUrl(),
      },
      { timestampSec: nowSec() + 10 * 60 },
    );

    expect(res.status).toBe(200);
    expect(whoamiCalls).toContain('from-the-future');
  });

  it('when a signed button press arrives, then app.action runs and its chat.update edits the channel state', async () => {
    const posted = await app.client.chat.postMessage({
      channel: 'C0BTN',
      text: 'srv-1 is stuck',
      blocks: [],
    });
    const ts = posted.ts ?? '';
    const responseUrl = fake.responseUrl('btn-1', { channel: 'C0BTN', messageTs: ts });

    const res = await sendInteraction(
      eventsUrl,
      SECRET,
      blockActionsPayload({
        actionId: 'restart_server',
        value: 'srv-1',
        userId: ADMIN,
        channelId: 'C0BTN',
        messageTs: ts,
        responseUrl,
      }),
    );
    expect(res.status).toBe(200);

    await fake.waitFor((c) => c.method === 'chat.update' && c.params.channel === 'C0BTN');
    await fake.waitForResponse((p) => p.id === 'btn-1');
    const state = fake.channel('C0BTN');
    expect(state.messages).toHaveLength(1);
    expect(state.messages[0]).toMatchObject({ ts, text: `Restarting srv-1 for <@${ADMIN}>`, blocks: [] });
    expect(state.messages[0]?.edited).toBeDefined();
    expect(state.updates).toHaveLength(1);
    expect(fake.responses('btn-1')[0]?.body).toEqual({ response_type: 'ephemeral', text: 'on it' });
  });

  it('when chat.update names a ts the channel never had, then WebClient rejects with message_not_found', async () => {
    await expect(
      app.client.chat.update({ channel: 'C0NONE', ts: '1.000001', text: 'x' }),
    ).rejects.toMatchObject({
      code: webApi.ErrorCode.PlatformError,
      data: { ok: false, error: 'message_not_found' },
    });
  });

  it('when chat.postMessage is rate limited with Retry-After 1, then WebClient waits and the message still arrives', async () => {
    fake.failNext('chat.postMessage', { retryAfter: 1 });
    const started = performance.now();
    const result = await app.client.chat.postMessage({ channel: 'C0RATE', text: 'eventually' });
    const elapsed = performance.now() - started;

    expect(result.ok).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(950);
    const attempts = fake.calls('chat.postMessage').filter((c) => c.params.channel === 'C0RATE');
    expect(attempts.map((c) => c.status)).toEqual([429, 200]);
    expect(attempts[0]?.response).toEqual({ ok: false, error: 'ratelimited' });
    expect(fake.channel('C0RATE').messages.map((m) => m.text)).toEqual(['eventually']);
  });

  it('when rejectRateLimitedCalls is set and the API answers 429, then WebClient throws a rate-limited error without retrying', async () => {
    const client = new webApi.WebClient('xoxb-test', {
      slackApiUrl: fake.apiUrl,
      rejectRateLimitedCalls: true,
    });
    fake.failNext('chat.postMessage', { retryAfter: 7 });

    await expect(client.chat.postMessage({ channel: 'C0REJECT', text: 'no' })).rejects.toMatchObject({
      code: webApi.ErrorCode.RateLimitedError,
      retryAfter: 7,
    });
    expect(fake.calls('chat.postMessage').filter((c) => c.params.channel === 'C0REJECT')).toHaveLength(1);
    expect(fake.channel('C0REJECT').messages).toEqual([]);
  });

  it('when a failure is scripted with an error code, then the next call fails with it and the one after succeeds', async () => {
    fake.failNext('chat.postMessage', { error: 'channel_not_found' });
    await expect(app.client.chat.postMessage({ channel: 'C0GONE', text: 'x' })).rejects.toMatchObject({
      data: { error: 'channel_not_found' },
    });
    await expect(app.client.chat.postMessage({ channel: 'C0GONE', text: 'y' })).resolves.toMatchObject({
      ok: true,
    });
  });

  it('when respond() is called 6 times on one response_url, then the first 5 land and the 6th gets 404 used_url', async () => {
    const responseUrl = fake.responseUrl('chatty-1');
    const res = await sendSlashCommand(eventsUrl, SECRET, {
      command: '/chatty',
      text: '',
      user_id: ADMIN,
      channel_id: 'C0CHAT',
      response_url: responseUrl,
    });
    expect(res.status).toBe(200);

    const outcomes = await chattyOutcomes.promise;
    expect(outcomes.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => ({ ok: true })));
    expect(outcomes[5]).toMatchObject({ ok: false, status: 404 });
    const posts = fake.responses('chatty-1');
    expect(posts.filter((p) => p.accepted)).toHaveLength(5);
    expect(posts[5]).toMatchObject({
      status: 404,
      accepted: false,
      error: 'used_url',
      body: { text: 'update 6' },
    });
  });

  it('when a call has no token, a bad token or an unknown method, then the fake answers like Slack', async () => {
    const post = async (method: string, headers: Record<string, string>) => {
      const res = await fetch(`${fake.apiUrl}${method}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: 'channel=C0AUTH&text=hi',
      });
      return { status: res.status, body: await res.json() };
    };

    expect(await post('chat.postMessage', {})).toEqual({
      status: 200,
      body: { ok: false, error: 'not_authed' },
    });
    expect(await post('chat.postMessage', { authorization: 'Bearer nope' })).toEqual({
      status: 200,
      body: { ok: false, error: 'invalid_auth' },
    });
    expect(await post('chat.fly', { authorization: 'Bearer xoxb-test' })).toMatchObject({
      status: 200,
      body: { ok: false, error: 'unknown_method' },
    });
    expect(fake.channel('C0AUTH').messages).toEqual([]);
  });
});

/** A bare WebSocket client, to see exactly what the fake's Socket Mode server sends. */
function rawSocket(url: string) {
  const ws = new WebSocket(url);
  const inbox: Record<string, unknown>[] = [];
  let waiting: ((message: Record<string, unknown>) => void) | undefined;
  ws.on('message', (data) => {
    const message = JSON.parse(String(data)) as Record<string, unknown>;
    const wake = waiting;
    waiting = undefined;
    if (wake) wake(message);
    else inbox.push(message);
  });
  return {
    ws,
    next: () =>
      new Promise<Record<string, unknown>>((resolve) => {
        const queued = inbox.shift();
        if (queued) resolve(queued);
        else waiting = resolve;
      }),
    closed: new Promise<number>((resolve) => ws.once('close', (code) => resolve(code))),
    failed: new Promise<string>((resolve) => ws.once('error', (err) => resolve(err.message))),
  };
}

describe('Slack Socket Mode peer', () => {
  let fake: FakeSlack;

  beforeAll(async () => {
    fake = await startFakeSlack();
  });

  afterAll(async () => {
    await fake?.close();
  });

  const api = async (method: string, token?: string) => {
    const res = await fetch(`${fake.apiUrl}${method}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: 'channel=C0SOCK&text=hi',
    });
    return (await res.json()) as Record<string, unknown>;
  };

  const openSocket = async (token: string) => {
    const opened = await api('apps.connections.open', token);
    return rawSocket(String(opened.url));
  };

  it('when apps.connections.open gets a bot token, then not_allowed_token_type; an app token gets a ws:// URL on the fake', async () => {
    expect(await api('apps.connections.open', 'xoxb-test')).toEqual({
      ok: false,
      error: 'not_allowed_token_type',
    });
    expect(await api('apps.connections.open')).toEqual({ ok: false, error: 'not_authed' });

    const opened = await api('apps.connections.open', 'xapp-1-A0FAKEAPP-1-secret');
    expect(opened).toEqual({ ok: true, url: expect.any(String) });
    const url = new URL(String(opened.url));
    expect(url.protocol).toBe('ws:');
    expect(url.host).toBe(`127.0.0.1:${fake.port}`);
    expect(url.pathname).toBe('/link/');
    expect(url.searchParams.get('ticket')).toMatch(/^[0-9a-f-]{36}$/);
    expect(url.searchParams.get('app_id')).toBe(fake.appId);

    // The other way round too: an app-level token cannot post as the bot.
    expect(await api('chat.postMessage', 'xapp-1-A0FAKEAPP-1-secret')).toEqual({
      ok: false,
      error: 'not_allowed_token_type',
    });
    expect(fake.channel('C0SOCK').messages).toEqual([]);
    expect(fake.calls('apps.connections.open').map((c) => [c.token, c.response.ok])).toEqual([
      ['xoxb-test', false],
      [undefined, false],
      ['xapp-1-A0FAKEAPP-1-secret', true],
    ]);
  });

  it('when a client connects with a fresh ticket, then hello is the first message; the same ticket again gets 401', async () => {
    const opened = await api('apps.connections.open', 'xapp-hello');
    const client = rawSocket(String(opened.url));

    const hello = await client.next();
    expect(hello).toMatchObject({
      type: 'hello',
      num_connections: 1,
      connection_info: { app_id: fake.appId },
      debug_info: { host: expect.any(String) },
    });
    const [connection] = fake.socketMode.open();
    expect(connection).toMatchObject({ token: 'xapp-hello', closedAt: undefined, sent: [hello] });

    const replay = rawSocket(String(opened.url));
    expect(await replay.failed).toContain('401');
    expect(fake.socketMode.open()).toHaveLength(1);

    client.ws.close(1000);
    expect(await client.closed).toBe(1000);
    const closed = await fake.socketMode.waitForConnection((c) => c.id === connection?.id && !!c.closedAt);
    expect(closed.closeCode).toBe(1000);
  });

  it('when envelopes are pushed and the client acks them, then each ack is recorded with its payload and delay', async () => {
    const client = await openSocket('xapp-acks');
    await client.next(); // hello

    const command = fake.socketMode.slashCommand({
      command: '/whoami',
      text: 'please',
      user_id: ADMIN,
      channel_id: 'C0SOCK',
      response_url: fake.responseUrl('sock-1'),
    });
    const wire = await client.next();
    expect(wire).toEqual({
      envelope_id: command.envelope_id,
      type: 'slash_commands',
      accepts_response_payload: true,
      payload: expect.objectContaining({
        command: '/whoami',
        text: 'please',
        user_id: ADMIN,
        channel_id: 'C0SOCK',
        is_enterprise_install: 'false',
        response_url: `${fake.baseUrl}/response/sock-1`,
      }),
    });

    const press = fake.socketMode.blockActions({
      actionId: 'cmd:0',
      value: '/whoami',
      userId: ADMIN,
      channelId: 'C0SOCK',
      messageTs: '1700000000.000100',
      responseUrl: fake.responseUrl(),
    });
    expect(await client.next()).toMatchObject({
      envelope_id: press.envelope_id,
      type: 'interactive',
      accepts_response_payload: false,
      payload: { type: 'block_actions', actions: [{ action_id: 'cmd:0', value: '/whoami' }] },
    });

    client.ws.send(JSON.stringify({ envelope_id: command.envelope_id, payload: { text: 'You are admin' } }));
    client.ws.send(JSON.stringify({ envelope_id: press.envelope_id }));
    const ack = await fake.socketMode.waitForAck(command.envelope_id);
    expect(ack).toMatchObject({
      envelope_id: command.envelope_id,
      payload: { text: 'You are admin' },
      connectionId: command.connectionId,
    });
    // The delay runs from when the fake sent the envelope to when the ack came back.
    expect(ack.delayMs).toBe(ack.at - command.sentAt);
    expect(ack.delayMs).toBeGreaterThanOrEqual(0);
    const bare = await fake.socketMode.waitForAck(press.envelope_id);
    expect(bare).not.toHaveProperty('payload');
    client.ws.close();
    await client.closed;
  });

  it('when the server sends disconnect, then the client sees the disconnect message; drop() cuts the socket (1006)', async () => {
    const client = await openSocket('xapp-drop');
    await client.next(); // hello
    const [connection] = fake.socketMode.open().filter((c) => c.token === 'xapp-drop');

    fake.socketMode.disconnect();
    expect(await client.next()).toEqual({
      type: 'disconnect',
      reason: 'refresh_requested',
      debug_info: { host: expect.any(String) },
    });

    fake.socketMode.drop();
    expect(await client.closed).toBe(1006);
    const closed = await fake.socketMode.waitForConnection((c) => c.id === connection?.id && !!c.closedAt);
    expect(closed.closeCode).toBe(1006);
    expect(fake.socketMode.open()).toEqual([]);
    expect(() => fake.socketMode.send('events_api', {})).toThrow(/no open Socket Mode connection/);
  });

  it('when a real Bolt app runs in Socket Mode, then start() resolves on hello, its ack body is recorded and stop() closes with 1000', async () => {
    const logs: string[] = [];
    const app = new App({
      token: 'xoxb-test',
      appToken: 'xapp-bolt',
      socketMode: true,
      logger: capturingLogger(logs),
      clientOptions: { slackApiUrl: fake.apiUrl },
    });
    app.command('/whoami', async ({ command, ack }) => {
      await ack({ response_type: 'ephemeral', text: `You are <@${command.user_id}>` });
    });

    await app.start();
    const [connection] = fake.socketMode.open().filter((c) => c.token === 'xapp-bolt');
    expect(connection?.sent.map((m) => m.type)).toEqual(['hello']);
    expect(fake.calls('apps.connections.open').at(-1)?.token).toBe('xapp-bolt');

    const envelope = fake.socketMode.slashCommand({
      command: '/whoami',
      text: '',
      user_id: ADMIN,
      channel_id: 'C0BOLT',
      response_url: fake.responseUrl(),
    });
    const ack = await fake.socketMode.waitForAck(envelope.envelope_id);
    expect(ack.payload).toEqual({ response_type: 'ephemeral', text: `You are <@${ADMIN}>` });
    expect(ack.delayMs).toBe(ack.at - envelope.sentAt);

    await app.stop();
    const closed = await fake.socketMode.waitForConnection((c) => c.id === connection?.id && !!c.closedAt);
    expect(closed.closeCode).toBe(1000);
  });
});
