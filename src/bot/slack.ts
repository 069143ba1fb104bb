import type { Server } from 'node:http';
import {
  App,
  ExpressReceiver,
  LogLevel,
  type Logger as SlackLogger,
  SocketModeReceiver,
  type types,
  webApi,
} from '@slack/bolt';
import express, { type RequestHandler } from 'express';
import type { Caller, RoleOf } from '../core/caller.js';
import { ChatUnavailable, createReply, type Outbox, type OutgoingMessage } from '../core/chat.js';
import type { Logger } from '../log.js';
import type { ChatMeter } from '../metrics.js';
import type { Dispatch } from './dispatch.js';
import { fitText } from './text.js';

const maxText = 3000; // a section block's text limit
const maxSkewSeconds = 300;

/** Slack renders &, < and > as markup; everything we post is plain text. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function render(message: OutgoingMessage): { text: string; blocks?: types.KnownBlock[] } {
  const text = fitText(escapeSlack(message.text), maxText);
  if (!message.buttons?.length) return { text };
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text } },
      {
        type: 'actions',
        block_id: 'fleetbot-buttons',
        elements: message.buttons.map((b, i) => ({
          type: 'button' as const,
          action_id: `cmd:${i}`,
          text: { type: 'plain_text' as const, text: b.label },
          value: b.command,
          ...(b.style ? { style: b.style } : {}),
        })),
      },
    ],
  };
}

/** Slack's libraries log through ours: structured JSON, redacted, at our level (theirs: warnings up). */
function slackLogger(log: Logger): SlackLogger {
  const line =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (...msg: unknown[]) =>
      log[level]({ source: 'slack-sdk' }, msg.map(String).join(' '));
  return {
    debug: line('debug'),
    info: line('info'),
    warn: line('warn'),
    error: line('error'),
    setLevel: () => {},
    getLevel: () => LogLevel.WARN,
    setName: () => {},
  };
}

/**
 * The workers' client makes each call once and hands a 429 back with its Retry-After: a job retries
 * with its latest text (src/jobs/delivery.ts) instead of replaying a stale edit from inside the client.
 */
export function slackClient(options: {
  token: string;
  apiUrl?: string;
  meter?: ChatMeter;
  log: Logger;
}): webApi.WebClient {
  return metered(
    new webApi.WebClient(options.token, {
      ...clientOptions(options.apiUrl, options.log),
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
    }),
    options.meter,
  );
}

// Chat handlers: WebClient retries 429s after Retry-After on its own; 3 retries keep a handler from hanging.
const clientOptions = (apiUrl: string | undefined, log: Logger) => ({
  slackApiUrl: apiUrl,
  retryConfig: { retries: 3 },
  logger: slackLogger(log),
  logLevel: LogLevel.WARN,
});

/** WebClient reports every 429 it waits out, retried or not. */
function metered(client: webApi.WebClient, meter: ChatMeter | undefined): webApi.WebClient {
  if (meter) client.on(webApi.WebClientEvent.RATE_LIMITED, () => meter.chatRateLimited('slack'));
  return client;
}

export function slackOutbox(client: webApi.WebClient, meter?: ChatMeter): Outbox {
  return {
    async send(to, message, options) {
      const body = render(message);
      try {
        if (options?.private && to.userId) {
          await client.chat.postEphemeral({ channel: to.chatId, user: to.userId, ...body });
          meter?.chatMessage('slack', 'sent');
          return undefined;
        }
        const res = await client.chat.postMessage({
          channel: to.chatId,
          ...(options?.thread ? { thread_ts: options.thread.messageId } : {}),
          ...body,
        });
        meter?.chatMessage('slack', 'sent');
        return { platform: 'slack', chatId: res.channel ?? to.chatId, messageId: String(res.ts) };
      } catch (error) {
        throw unavailable(error);
      }
    },
    async edit(ref, message) {
      const body = render(message);
      try {
        // An empty blocks list clears buttons left from the previous version of the message.
        await client.chat.update({
          channel: ref.chatId,
          ts: ref.messageId,
          text: body.text,
          blocks: body.blocks ?? [],
        });
      } catch (error) {
        throw unavailable(error);
      }
      meter?.chatMessage('slack', 'edited');
    },
  };
}

/** Slack's answers that mean "not now" rather than "never" (https://api.slack.com/methods/chat.update#errors). */
const transientSlackErrors = [
  'ratelimited',
  'internal_error',
  'fatal_error',
  'service_unavailable',
  'request_timeout',
];

/** Rate limits, server errors and an unreachable Slack pass; anything else (message_not_found) will not. */
function unavailable(error: unknown): unknown {
  const code = (error as { code?: unknown })?.code;
  if (code === webApi.ErrorCode.RateLimitedError)
    return new ChatUnavailable(
      'Slack answered 429',
      (error as webApi.WebAPIRateLimitedError).retryAfter * 1000,
      {
        cause: error,
      },
    );
  if (code === webApi.ErrorCode.RequestError)
    return new ChatUnavailable('Slack could not be reached', undefined, { cause: error });
  if (code === webApi.ErrorCode.HTTPError && (error as webApi.WebAPIHTTPError).statusCode >= 500)
    return new ChatUnavailable(`Slack answered ${(error as webApi.WebAPIHTTPError).statusCode}`, undefined, {
      cause: error,
    });
  if (
    code === webApi.ErrorCode.PlatformError &&
    transientSlackErrors.includes(String((error as webApi.WebAPIPlatformError).data.error))
  )
    return new ChatUnavailable(
      `Slack answered ${(error as webApi.WebAPIPlatformError).data.error}`,
      undefined,
      {
        cause: error,
      },
    );
  return error;
}

/**
 * Bolt rejects stale timestamps but accepts ones from the future; a captured request signed with a
 * future timestamp could otherwise be replayed for a long time. Runs before Bolt's own verification.
 */
export function rejectFutureTimestamps(nowMs: () => number): RequestHandler {
  return (req, res, next) => {
    const ts = Number(req.header('x-slack-request-timestamp'));
    if (Number.isFinite(ts) && ts > Math.floor(nowMs() / 1000) + maxSkewSeconds) {
      res.status(401).send('');
      return;
    }
    next();
  };
}

export interface SlackOptions {
  botToken: string;
  signingSecret?: string;
  appToken?: string;
  apiUrl?: string;
  port: number;
  host?: string;
  roleOf: RoleOf;
  dispatch: Dispatch;
  log: Logger;
  nowMs?: () => number;
  meter?: ChatMeter;
}

export interface SlackAdapter {
  outbox: Outbox;
  port(): number | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createSlackAdapter(options: SlackOptions): SlackAdapter {
  const { roleOf, dispatch, log } = options;
  const nowMs = options.nowMs ?? Date.now;
  const web = express();
  web.use('/slack/events', rejectFutureTimestamps(nowMs));
  const receiver = options.appToken
    ? new SocketModeReceiver({
        appToken: options.appToken,
        logger: slackLogger(log),
        logLevel: LogLevel.WARN,
        // Not our Web API options: their three retries would let a Slack outage of a few seconds
        // during a reconnect end the process. The socket client keeps its own patient retries.
        installerOptions: { clientOptions: { slackApiUrl: options.apiUrl } },
      })
    : new ExpressReceiver({
        signingSecret: options.signingSecret ?? '',
        endpoints: '/slack/events',
        app: web,
        logger: slackLogger(log),
      });
  const app = new App({
    token: options.botToken,
    receiver,
    clientOptions: clientOptions(options.apiUrl, log),
    logger: slackLogger(log),
    logLevel: LogLevel.WARN,
  });
  const outbox = slackOutbox(metered(app.client, options.meter), options.meter);

  const callerOf = async (userId: string, name: string | undefined, channelId: string): Promise<Caller> => ({
    platform: 'slack',
    userId,
    displayName: name ?? userId,
    role: await roleOf({ platform: 'slack', userId, channelId }),
  });

  // One listener for every slash command: the dispatcher knows the names, and unknown ones get an answer.
  app.command(/^\/[a-z0-9_-]+$/i, async ({ command, ack }) => {
    await ack();
    const caller = await callerOf(command.user_id, command.user_name, command.channel_id);
    const reply = createReply(outbox, {
      platform: 'slack',
      chatId: command.channel_id,
      userId: command.user_id,
    });
    await dispatch({
      caller,
      text: `${command.command} ${command.text}`,
      reply,
      updateId: command.trigger_id,
    });
  });

  app.action(/^cmd:\d+$/, async ({ body, action, ack }) => {
    await ack();
    if (body.type !== 'block_actions' || !('value' in action) || !body.channel?.id) return;
    const channelId = body.channel.id;
    const caller = await callerOf(body.user.id, body.user.name ?? body.user.username, channelId);
    const ts = body.message?.ts;
    if (ts) {
      // Take the buttons away first so a second press cannot run the command twice.
      const text = `${String(body.message?.text ?? '')}\n→ ${'text' in action ? action.text.text : 'pressed'} (by ${caller.displayName})`;
      // Through the metered client: Bolt hands listeners a client of its own.
      await app.client.chat
        .update({ channel: channelId, ts, text: fitText(text, maxText), blocks: [] })
        .then(() => options.meter?.chatMessage('slack', 'edited'))
        .catch((err: unknown) => log.warn({ err: String(err) }, 'could not clear buttons'));
    }
    const reply = createReply(outbox, { platform: 'slack', chatId: channelId, userId: body.user.id });
    await dispatch({ caller, text: action.value ?? '', reply, updateId: body.trigger_id });
  });

  // Buttons fleetbot did not render (old messages, other apps' blocks) still need their ack, or
  // Slack shows the presser an error.
  app.action(/^(?!cmd:\d+$)/, async ({ ack }) => {
    await ack();
  });

  app.error(async (error) => {
    log.error({ err: error.message, code: error.code }, 'slack listener failed');
  });

  let server: Server | undefined;
  return {
    outbox,
    port() {
      const address = server?.address();
      return typeof address === 'object' && address ? address.port : undefined;
    },
    async start() {
      if (receiver instanceof ExpressReceiver) {
        server = (await receiver.start({ port: options.port, host: options.host })) as Server;
        log.info({ port: this.port() }, 'slack receiver listening');
      } else {
        await app.start();
        log.info({ mode: 'socket' }, 'slack socket mode connected');
      }
    },
    async stop() {
      await app.stop();
    },
  };
}
