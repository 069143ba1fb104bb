import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { freePort } from './free-port.js';
import { attachSocketMode, type FakeSocketMode } from './slack-socket-mode.js';
import { type Waiters, waitOn } from './wait-on.js';

/**
 * A fake Slack Web API on a real HTTP server, for Bolt's WebClient (`clientOptions.slackApiUrl`)
 * and for Bolt's `respond()` (point a payload's `response_url` at `responseUrl()`).
 *
 * Behaviour modelled on Slack (documented where it is a choice):
 * - Errors are HTTP 200 with `{ok:false, error}`, as Slack does; only rate limits are 429.
 * - Tokens come from `Authorization: Bearer` or a `token` form field. None -> `not_authed`;
 *   one outside `options.tokens` (default: anything starting `xoxb-`/`xoxp-`) or, for `xapp-` tokens,
 *   outside `options.appTokens` (default: anything starting `xapp-`) -> `invalid_auth`.
 * - Token types, as Slack checks them: `apps.connections.open` takes only an app-level token (`xapp-`),
 *   and every other method here refuses one; the wrong type -> `not_allowed_token_type`.
 * - Socket Mode (`apps.connections.open` and the WebSocket it points to): see slack-socket-mode.ts.
 * - `blocks` that are not a JSON array -> `invalid_blocks_format`; more than 50 -> `invalid_blocks`;
 *   text over 40,000 characters -> `msg_too_long`.
 * - `chat.update` keeps the previous blocks when none are sent (Slack's documented rule).
 * - A response_url accepts at most 5 posts (Slack: "up to 5 times within 30 minutes"); the 6th and
 *   later answer HTTP 404 `{ok:false,error:'used_url'}`, after 30 minutes or `expireResponseUrl()` HTTP 404
 *   `{ok:false,error:'expired_url'}`, a URL never minted by `responseUrl()` HTTP 404 `invalid_url`,
 *   a body without text/blocks/attachments (and no `delete_original`) HTTP 400 `no_text`.
 */

export interface SlackCall {
  method: string;
  /** Request parameters without `token`; JSON-valued form fields (`blocks`, `view`…) already parsed. */
  params: Record<string, unknown>;
  token: string | undefined;
  at: number;
  /** HTTP status the fake answered, so 429s show up next to the retry that followed. */
  status: number;
  response: Record<string, unknown>;
}

export interface SlackMessage {
  channel: string;
  ts: string;
  text: string | undefined;
  blocks: unknown[] | undefined;
  thread_ts: string | undefined;
  user: string;
  bot_id: string;
  edited?: { user: string; ts: string };
}

export interface SlackChannelState {
  /** Current state of each message still in the channel, oldest first. */
  messages: SlackMessage[];
  posts: Record<string, unknown>[];
  updates: Record<string, unknown>[];
  ephemerals: Array<Record<string, unknown> & { message_ts: string }>;
  deletes: Record<string, unknown>[];
}

export interface ResponseUrlPost {
  id: string;
  body: Record<string, unknown>;
  at: number;
  status: number;
  /** False when the fake refused it (used, expired, no text…). */
  accepted: boolean;
  error: string | undefined;
}

export type SlackFailure =
  | { retryAfter: number; times?: number }
  | { error: string; times?: number; status?: number };

export type SlackMethodHandler = (
  params: Record<string, unknown>,
  call: { token: string },
) => Record<string, unknown>;

export interface FakeSlackOptions {
  port?: number;
  botUserId?: string;
  teamId?: string;
  /** Tokens the fake accepts; default: any `xoxb-`/`xoxp-` token. */
  tokens?: string[];
  /** App-level tokens the fake accepts; default: any `xapp-` token. */
  appTokens?: string[];
  appId?: string;
}

export interface FakeSlack {
  /** `http://127.0.0.1:PORT/api/`, the value for `clientOptions.slackApiUrl`. */
  apiUrl: string;
  baseUrl: string;
  port: number;
  botUserId: string;
  botId: string;
  teamId: string;
  appId: string;
  /** The Socket Mode side: connections, envelopes to push, acks received. */
  socketMode: FakeSocketMode;
  calls(method?: string): SlackCall[];
  channel(id: string): SlackChannelState;
  /**
   * Mints a response_url on this server. Binding a channel (and the message it came from) makes
   * `in_channel`, `replace_original` and `delete_original` posts change that channel's messages.
   */
  responseUrl(id?: string, bind?: { channel?: string; messageTs?: string }): string;
  responses(id?: string): ResponseUrlPost[];
  expireResponseUrl(id: string): void;
  /** The next `times` (default 1) calls of `method` fail this way, after the auth check. */
  failNext(method: string, failure: SlackFailure): void;
  /** Answers a method the fake does not know (e.g. `users.info`) or overrides one it does. */
  handle(method: string, handler: SlackMethodHandler): void;
  /** Resolves with the first recorded call (past or future) matching, rejects after timeoutMs. */
  waitFor(predicate: (call: SlackCall) => boolean, timeoutMs?: number): Promise<SlackCall>;
  waitForResponse(
    predicate: (post: ResponseUrlPost) => boolean,
    timeoutMs?: number,
  ): Promise<ResponseUrlPost>;
  /**
   * Forgets calls, messages, response_urls, pending failures, envelopes, acks and closed Socket Mode
   * connections, so one server can serve many tests; open connections stay open.
   */
  reset(): void;
  close(): Promise<void>;
}

const RESPONSE_URL_MAX_POSTS = 5;
const RESPONSE_URL_TTL_MS = 30 * 60_000;
const MAX_BLOCKS = 50;
const MAX_TEXT = 40_000;
const JSON_FIELDS = ['blocks', 'attachments', 'view', 'metadata'];

class SlackApiError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

interface ResponseUrlState {
  createdAt: number;
  posts: number;
  expired: boolean;
  channel: string | undefined;
  messageTs: string | undefined;
}

export async function startFakeSlack(options: FakeSlackOptions = {}): Promise<FakeSlack> {
  const port = options.port ?? (await freePort());
  const baseUrl = `http://127.0.0.1:${port}`;
  const botUserId = options.botUserId ?? 'U0FAKEBOT';
  const botId = 'B0FAKEBOT';
  const teamId = options.teamId ?? 'T0FAKE';
  const appId = options.appId ?? 'A0FAKEAPP';
  const events = new EventEmitter();
  events.setMaxListeners(0);

  let calls: SlackCall[] = [];
  let responsePosts: ResponseUrlPost[] = [];
  let channels = new Map<
    string,
    { messages: Map<string, SlackMessage> } & Omit<SlackChannelState, 'messages'>
  >();
  let responseUrls = new Map<string, ResponseUrlState>();
  let failures = new Map<string, Array<SlackFailure & { left: number }>>();
  const handlers = new Map<string, SlackMethodHandler>();
  const closers = new Set<(err: Error) => void>();
  const waiters: Waiters = { events, closers };
  let tsCounter = 0;
  let urlCounter = 0;

  // Slack ts values are "seconds.micros" strings; equal length keeps string and numeric order in step.
  const nextTs = () => {
    tsCounter += 1;
    const micros = tsCounter * 100;
    return `${1_700_000_000 + Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, '0')}`;
  };

  const channelState = (id: string) => {
    let state = channels.get(id);
    if (!state) {
      state = { messages: new Map(), posts: [], updates: [], ephemerals: [], deletes: [] };
      channels.set(id, state);
    }
    return state;
  };

  const isAppToken = (token: string) => token.startsWith('xapp-');
  const tokenOk = (token: string) => {
    const accepted = isAppToken(token) ? options.appTokens : options.tokens;
    return accepted ? accepted.includes(token) : /^(xox[bp]|xapp)-/.test(token);
  };
  const appTokenMethods = new Set(['apps.connections.open']);

  const requireString = (params: Record<string, unknown>, key: string, error: string): string => {
    const value = params[key];
    if (typeof value !== 'string' || value === '') throw new SlackApiError(error);
    return value;
  };

  const checkContent = (params: Record<string, unknown>, requireSome: boolean) => {
    const { text, blocks, attachments } = params;
    if (blocks !== undefined) {
      if (!Array.isArray(blocks)) throw new SlackApiError('invalid_blocks_format');
      if (blocks.length > MAX_BLOCKS) throw new SlackApiError('invalid_blocks');
    }
    if (typeof text === 'string' && text.length > MAX_TEXT) throw new SlackApiError('msg_too_long');
    const empty =
      (typeof text !== 'string' || text === '') && blocks === undefined && attachments === undefined;
    if (requireSome && empty) throw new SlackApiError('no_text');
  };

  const messageView = (m: SlackMessage) => ({
    type: 'message',
    text: m.text ?? '',
    ...(m.blocks ? { blocks: m.blocks } : {}),
    ...(m.thread_ts ? { thread_ts: m.thread_ts } : {}),
    ts: m.ts,
    user: m.user,
    bot_id: m.bot_id,
    team: teamId,
  });

  const methods: Record<
    string,
    (params: Record<string, unknown>, call: { token: string }) => Record<string, unknown>
  > = {
    'api.test': (params) => ({ ok: true, args: params }),
    'auth.test': () => ({
      ok: true,
      url: 'https://fake-workspace.slack.com/',
      team: 'Fake Workspace',
      user: 'fleetbot',
      team_id: teamId,
      user_id: botUserId,
      bot_id: botId,
      is_enterprise_install: false,
    }),
    'chat.postMessage': (params) => {
      const channel = requireString(params, 'channel', 'channel_not_found');
      checkContent(params, true);
      const ts = nextTs();
      const message: SlackMessage = {
        channel,
        ts,
        text: typeof params.text === 'string' ? params.text : undefined,
        blocks: Array.isArray(params.blocks) ? params.blocks : undefined,
        thread_ts: typeof params.thread_ts === 'string' ? params.thread_ts : undefined,
        user: botUserId,
        bot_id: botId,
      };
      const state = channelState(channel);
      state.messages.set(ts, message);
      state.posts.push({ ...params, ts });
      return { ok: true, channel, ts, message: messageView(message) };
    },
    'chat.update': (params) => {
      const channel = requireString(params, 'channel', 'channel_not_found');
      const ts = requireString(params, 'ts', 'message_not_found');
      checkContent(params, false);
      const message = channels.get(channel)?.messages.get(ts);
      if (!message) throw new SlackApiError('message_not_found');
      if (typeof params.text === 'string') message.text = params.text;
      if (Array.isArray(params.blocks)) message.blocks = params.blocks;
      message.edited = { user: botUserId, ts: nextTs() };
      channelState(channel).updates.push({ ...params });
      return { ok: true, channel, ts, text: message.text ?? '', message: messageView(message) };
    },
    'chat.postEphemeral': (params) => {
      const channel = requireString(params, 'channel', 'channel_not_found');
      requireString(params, 'user', 'user_not_in_channel');
      checkContent(params, true);
      const messageTs = nextTs();
      channelState(channel).ephemerals.push({ ...params, message_ts: messageTs });
      return { ok: true, message_ts: messageTs };
    },
    'chat.delete': (params) => {
      const channel = requireString(params, 'channel', 'channel_not_found');
      const ts = requireString(params, 'ts', 'message_not_found');
      const state = channels.get(channel);
      if (!state?.messages.delete(ts)) throw new SlackApiError('message_not_found');
      state.deletes.push({ ...params });
      return { ok: true, channel, ts };
    },
    'apps.connections.open': (_params, { token }) => socketMode.openConnection(token),
    'views.open': (params) => {
      requireString(params, 'trigger_id', 'invalid_arguments');
      const view = params.view;
      if (typeof view !== 'object' || view === null) throw new SlackApiError('invalid_arguments');
      urlCounter += 1;
      return {
        ok: true,
        view: {
          id: `V${String(urlCounter).padStart(8, '0')}`,
          team_id: teamId,
          app_id: 'A0FAKEAPP',
          ...view,
        },
      };
    },
  };

  const record = <T>(list: T[], event: string, item: T) => {
    list.push(item);
    events.emit(event, item);
  };

  const handleApi = (method: string, req: IncomingMessage, raw: string, url: URL) => {
    let params: Record<string, unknown>;
    try {
      params = parseParams(req.headers['content-type'], raw, url);
    } catch {
      const response = { ok: false, error: 'invalid_json' };
      record(calls, 'call', {
        method,
        params: { raw },
        token: undefined,
        at: Date.now(),
        status: 200,
        response,
      });
      return { status: 200, headers: {}, response };
    }
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const token = bearer ?? (typeof params.token === 'string' ? params.token : undefined);
    delete params.token;
    let status = 200;
    let headers: Record<string, string> = {};
    let response: Record<string, unknown>;
    const queue = failures.get(method);
    const failure = queue?.[0];
    if (token === undefined || token === '') {
      response = { ok: false, error: 'not_authed' };
    } else if (!tokenOk(token)) {
      response = { ok: false, error: 'invalid_auth' };
    } else if (isAppToken(token) !== appTokenMethods.has(method)) {
      response = { ok: false, error: 'not_allowed_token_type' };
    } else if (queue && failure) {
      failure.left -= 1;
      if (failure.left <= 0) queue.shift();
      if ('retryAfter' in failure) {
        status = 429;
        headers = { 'retry-after': String(failure.retryAfter) };
        response = { ok: false, error: 'ratelimited' };
      } else {
        status = failure.status ?? 200;
        response = { ok: false, error: failure.error };
      }
    } else {
      const handler = handlers.get(method);
      const impl = methods[method];
      try {
        if (handler) response = handler(params, { token });
        else if (impl) response = impl(params, { token });
        else response = { ok: false, error: 'unknown_method', req_method: method };
      } catch (err) {
        if (!(err instanceof SlackApiError)) throw err;
        response = { ok: false, error: err.code };
      }
    }
    record(calls, 'call', { method, params, token, at: Date.now(), status, response });
    return { status, headers, response };
  };

  const handleResponseUrl = (id: string, raw: string) => {
    const reply = (status: number, error: string | undefined, body: Record<string, unknown>) => {
      record(responsePosts, 'response', { id, body, at: Date.now(), status, accepted: !error, error });
      return { status, headers: {}, response: error ? { ok: false, error } : { ok: true } };
    };
    let body: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed !== 'object' || parsed === null) throw new Error('not an object');
      body = parsed as Record<string, unknown>;
    } catch {
      return reply(400, 'invalid_payload', { raw });
    }
    const state = responseUrls.get(id);
    if (!state) return reply(404, 'invalid_url', body);
    if (state.expired || Date.now() - state.createdAt > RESPONSE_URL_TTL_MS)
      return reply(404, 'expired_url', body);
    if (state.posts >= RESPONSE_URL_MAX_POSTS) return reply(404, 'used_url', body);
    if (body.delete_original !== true) {
      try {
        checkContent(body, true);
      } catch (err) {
        return reply(400, err instanceof SlackApiError ? err.code : 'invalid_payload', body);
      }
    }
    state.posts += 1;
    applyResponseToChannel(state, body);
    return reply(200, undefined, body);
  };

  const applyResponseToChannel = (state: ResponseUrlState, body: Record<string, unknown>) => {
    if (!state.channel) return;
    const messages = channelState(state.channel).messages;
    const original = state.messageTs ? messages.get(state.messageTs) : undefined;
    if (body.delete_original === true) {
      if (state.messageTs) messages.delete(state.messageTs);
      return;
    }
    const text = typeof body.text === 'string' ? body.text : undefined;
    const blocks = Array.isArray(body.blocks) ? body.blocks : undefined;
    if (body.replace_original === true && original) {
      original.text = text;
      original.blocks = blocks;
      original.edited = { user: botUserId, ts: nextTs() };
    } else if (body.response_type === 'in_channel') {
      const ts = nextTs();
      const thread = typeof body.thread_ts === 'string' ? body.thread_ts : undefined;
      messages.set(ts, {
        channel: state.channel,
        ts,
        text,
        blocks,
        thread_ts: thread,
        user: botUserId,
        bot_id: botId,
      });
    }
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url ?? '/', baseUrl);
      let result: { status: number; headers: Record<string, string>; response: Record<string, unknown> };
      try {
        const api = /^\/api\/([\w.]+)$/.exec(url.pathname);
        const respond = /^\/response\/([^/]+)$/.exec(url.pathname);
        if (api?.[1]) result = handleApi(api[1], req, raw, url);
        else if (respond?.[1] && req.method === 'POST')
          result = handleResponseUrl(decodeURIComponent(respond[1]), raw);
        else result = { status: 404, headers: {}, response: { ok: false, error: 'not_found' } };
      } catch (err) {
        result = {
          status: 500,
          headers: {},
          response: { ok: false, error: 'fake_slack_bug', detail: String(err) },
        };
      }
      res.writeHead(result.status, { 'content-type': 'application/json; charset=utf-8', ...result.headers });
      res.end(JSON.stringify(result.response));
    });
  });

  const socketMode = attachSocketMode(server, { baseWsUrl: `ws://127.0.0.1:${port}`, appId, waiters });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });

  return {
    apiUrl: `${baseUrl}/api/`,
    baseUrl,
    port,
    botUserId,
    botId,
    teamId,
    appId,
    socketMode,
    calls: (method) => structuredClone(method ? calls.filter((c) => c.method === method) : calls),
    channel: (id) => {
      const state = channels.get(id);
      if (!state) return { messages: [], posts: [], updates: [], ephemerals: [], deletes: [] };
      const messages = [...state.messages.values()].sort((a, b) => Number(a.ts) - Number(b.ts));
      return structuredClone({ ...state, messages });
    },
    responseUrl: (id, bind = {}) => {
      urlCounter += 1;
      const key = id ?? `r${urlCounter}`;
      responseUrls.set(key, {
        createdAt: Date.now(),
        posts: 0,
        expired: false,
        channel: bind.channel,
        messageTs: bind.messageTs,
      });
      return `${baseUrl}/response/${encodeURIComponent(key)}`;
    },
    responses: (id) => structuredClone(id ? responsePosts.filter((p) => p.id === id) : responsePosts),
    expireResponseUrl: (id) => {
      const state = responseUrls.get(id);
      if (!state) throw new Error(`fake Slack: no response_url ${id}`);
      state.expired = true;
    },
    failNext: (method, failure) => {
      const queue = failures.get(method) ?? [];
      queue.push({ ...failure, left: failure.times ?? 1 });
      failures.set(method, queue);
    },
    handle: (method, handler) => {
      handlers.set(method, handler);
    },
    waitFor: (predicate, timeoutMs = 5000) =>
      waitOn(
        waiters,
        () => calls,
        'call',
        predicate,
        timeoutMs,
        () => calls.map((c) => `${c.method}(${c.status})`).join(', ') || 'no calls',
      ),
    waitForResponse: (predicate, timeoutMs = 5000) =>
      waitOn(
        waiters,
        () => responsePosts,
        'response',
        predicate,
        timeoutMs,
        () => responsePosts.map((p) => `${p.id}(${p.status})`).join(', ') || 'no response_url posts',
      ),
    reset: () => {
      calls = [];
      responsePosts = [];
      channels = new Map();
      responseUrls = new Map();
      failures = new Map();
      handlers.clear();
      socketMode.reset();
    },
    close: async () => {
      for (const close of [...closers]) close(new Error('fake Slack closed'));
      socketMode.close();
      // Keep-alive sockets from WebClient's fetch would otherwise hold close() open for seconds.
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function parseParams(contentType: string | undefined, raw: string, url: URL): Record<string, unknown> {
  const params: Record<string, unknown> = Object.fromEntries(url.searchParams);
  if (contentType?.startsWith('application/json')) {
    if (raw !== '') {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed === 'object' && parsed !== null) Object.assign(params, parsed);
    }
    return params;
  }
  Object.assign(params, Object.fromEntries(new URLSearchParams(raw)));
  // WebClient form-encodes objects and arrays as JSON strings; Slack decodes these fields.
  for (const field of JSON_FIELDS) {
    const value = params[field];
    if (typeof value !== 'string') continue;
    try {
      params[field] = JSON.parse(value);
    } catch {
      // left as a string, which the blocks check then rejects like Slack does
    }
  }
  return params;
}
