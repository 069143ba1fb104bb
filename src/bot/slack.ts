import { createHash } from 'node:crypto';
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
import type { Caller, RoleOf, Who } from '../core/caller.js';
import { ChatUnavailable, createReply, type Outbox, type OutgoingMessage } from '../core/chat.js';
import type { Logger } from '../log.js';
import type { ChatMeter } from '../metrics.js';
import { allCommands } from './commands/index.js';
import type { Dispatch } from './dispatch.js';
import {
  assertNamespace,
  commandNamesOf,
  defaultNamespace,
  dispatchText,
  slackMentions,
} from './slack-commands.js';
import { fitText } from './text.js';

const maxText = 3000; // a section block's text limit
const maxSkewSeconds = 300;

/** Slack renders &, < and > as markup; everything we post is plain text. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A message's text as Slack hands it back, before it is posted again (and escaped again). */
function unescapeSlack(text: string): string {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

const maxBodyBytes = 256 * 1024;

const digest = (value: string | undefined) =>
  value ? createHash('sha256').update(value).digest('base64url') : undefined;

/** Every chat.update the bot makes waits its turn in the workspace's budget (Slack's Tier 3 limit). */
function withEditBudget(outbox: Outbox, budget: SlackOptions['editBudget']): Outbox {
  if (!budget) return outbox;
  return {
    ...outbox,
    async edit(ref, message) {
      await budget.take();
      await outbox.edit(ref, message);
    },
  };
}

// Built on first use: at import time a module in a cycle with the registry could still be undefined.
let mentions: ((text: string, namespace: string) => string) | undefined;
function inSlackTerms(text: string, namespace: string): string {
  mentions ??= slackMentions(commandNamesOf(allCommands));
  return mentions(text, namespace);
}

/**
 * Commands are written once with bare names (`/jobs`); in Slack they are typed `/<namespace> jobs`.
 * Button values stay bare: they go to the dispatcher, never through Slack's command box.
 */
function render(
  message: OutgoingMessage,
  namespace: string = defaultNamespace,
): { text: string; blocks?: types.KnownBlock[] } {
  const text = fitText(escapeSlack(inSlackTerms(message.text, namespace)), maxText);
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

/** `namespace` is the app's one slash command (SLACK_COMMAND), named in every mention of a command. */
export function slackOutbox(
  client: webApi.WebClient,
  meter?: ChatMeter,
  namespace: string = defaultNamespace,
): Outbox {
  return {
    async send(to, message, options) {
      const body = render(message, namespace);
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
      const body = render(message, namespace);
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
  /** The namespace command (`/fleetbot jobs`); the app's other commands are `/deploy` and `/patch`. */
  command?: string;
  port: number;
  host?: string;
  roleOf: RoleOf;
  /** For a Slack admin writing from a channel where admin rights do not count: where they do. */
  adminChannels?: (who: Who) => readonly string[] | undefined;
  dispatch: Dispatch;
  log: Logger;
  nowMs?: () => number;
  meter?: ChatMeter;
  /**
   * True the first time a request is seen (Redis SET NX shared by every bot process): a replayed
   * signed request, or a redelivered Socket Mode envelope, is acked and has no effect.
   */
  firstDelivery?: (requestId: string) => Promise<boolean>;
  /** The workspace's chat.update budget, shared with the workers' progress edits. */
  editBudget?: { take(): Promise<void> };
}

export interface SlackAdapter {
  outbox: Outbox;
  port(): number | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createSlackAdapter(options: SlackOptions): SlackAdapter {
  const { log } = options;
  const namespace = options.command ?? defaultNamespace;
  // config.ts checks only the shape; a built-in name would fail much later, when the app is created.
  assertNamespace(namespace, commandNamesOf(allCommands));
  const receiver = slackReceiver(options);
  const app = new App({
    token: options.botToken,
    receiver,
    clientOptions: clientOptions(options.apiUrl, log),
    logger: slackLogger(log),
    logLevel: LogLevel.WARN,
  });
  const outbox = withEditBudget(
    slackOutbox(metered(app.client, options.meter), options.meter, namespace),
    options.editBudget,
  );
  dropReplays(app, options);
  listen(app, outbox, namespace, options);

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

/** Socket Mode when there is an app token; otherwise signed HTTP requests on /slack/events. */
function slackReceiver(options: SlackOptions): SocketModeReceiver | ExpressReceiver {
  const { log } = options;
  if (options.appToken)
    return new SocketModeReceiver({
      appToken: options.appToken,
      logger: slackLogger(log),
      logLevel: LogLevel.WARN,
      // Not our Web API options: their three retries would let a Slack outage of a few seconds
      // during a reconnect end the process. The socket client keeps its own patient retries.
      installerOptions: { clientOptions: { slackApiUrl: options.apiUrl } },
      // Slack sends an envelope again when its ack did not arrive; its id stays the same.
      customPropertiesExtractor: (args: { envelope_id?: unknown }) => ({
        requestId: typeof args.envelope_id === 'string' ? args.envelope_id : undefined,
      }),
    });
  const web = express();
  web.use('/slack/events', rejectFutureTimestamps(options.nowMs ?? Date.now));
  return new ExpressReceiver({
    signingSecret: options.signingSecret ?? '',
    endpoints: '/slack/events',
    app: web,
    logger: slackLogger(log),
    // Slack's payloads are a few KB; Bolt's default of 4 MB would be read before verification.
    bodyLimit: maxBodyBytes,
    // A request's signature covers its timestamp and body: the same signature is the same request.
    customPropertiesExtractor: (req) => ({ requestId: digest(req.header('x-slack-signature')) }),
  });
}

/**
 * Registered before any listener: every request is acknowledged here, first, then one seen before is
 * dropped. Nothing waits on Redis before Slack's 3 s ack (a replay is acknowledged all the same), so
 * the listeners never ack themselves.
 */
function dropReplays(app: App, options: SlackOptions): void {
  const { log } = options;
  app.use(async (args) => {
    if ('ack' in args && typeof args.ack === 'function') await args.ack();
    const requestId = args.context.requestId;
    const first =
      typeof requestId === 'string' && options.firstDelivery
        ? await options.firstDelivery(requestId).catch((err: unknown) => {
            // Without Redis nothing can run anyway; the command itself then says so.
            log.warn({ err: String(err) }, 'could not check for a replayed request');
            return true;
          })
        : true;
    if (first) {
      await args.next();
      return;
    }
    log.warn({ requestId }, 'replayed Slack request dropped');
    options.meter?.chatDuplicateDropped?.('slack');
  });
}

/** Slash commands and fleetbot's buttons go to the dispatcher (other buttons were only acked); failures logged. */
function listen(app: App, outbox: Outbox, namespace: string, options: SlackOptions): void {
  const { dispatch, log } = options;
  const callerOf = async (userId: string, name: string | undefined, channelId: string): Promise<Caller> => {
    const who: Who = { platform: 'slack', userId, channelId };
    const adminChannels = options.adminChannels?.(who);
    return {
      platform: 'slack',
      userId,
      displayName: name ?? userId,
      role: await options.roleOf(who),
      ...(adminChannels ? { adminChannels } : {}),
    };
  };

  // One listener for every slash command: `/<namespace> jobs` becomes `/jobs`, and anything else (a command
  // created by hand before the manifest) goes to the dispatcher as typed, which answers even unknown ones.
  app.command(/^\/[a-z0-9_-]+$/i, async ({ command }) => {
    const caller = await callerOf(command.user_id, command.user_name, command.channel_id);
    const reply = createReply(outbox, {
      platform: 'slack',
      chatId: command.channel_id,
      userId: command.user_id,
    });
    await dispatch({
      caller,
      text: dispatchText(namespace, command.command, command.text),
      reply,
      updateId: command.trigger_id,
    });
  });

  app.action(/^cmd:\d+$/, async ({ body, action }) => {
    if (body.type !== 'block_actions' || !('value' in action) || !body.channel?.id) return;
    const channelId = body.channel.id;
    const caller = await callerOf(body.user.id, body.user.name ?? body.user.username, channelId);
    const ts = body.message?.ts;
    const reply = createReply(outbox, { platform: 'slack', chatId: channelId, userId: body.user.id });
    await dispatch({
      caller,
      text: action.value ?? '',
      reply,
      updateId: body.trigger_id,
      // The dispatcher takes the buttons away once the press is allowed, never before.
      ...(ts
        ? {
            pressed: {
              message: { platform: 'slack', chatId: channelId, messageId: ts },
              text: unescapeSlack(String(body.message?.text ?? '')),
              label: 'text' in action ? action.text.text : 'pressed',
            },
          }
        : {}),
    });
  });

  app.error(async (error) => {
    log.error({ err: error.message, code: error.code }, 'slack listener failed');
  });
}
