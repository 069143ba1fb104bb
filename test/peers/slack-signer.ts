import { createHmac, randomUUID } from 'node:crypto';

/**
 * Talks to a real Bolt HTTP receiver the way Slack does: form-encoded bodies signed with
 * `v0=` + HMAC-SHA256(signing secret, `v0:<timestamp>:<raw body>`), timestamp in seconds.
 */

export interface SlackRequestOptions {
  /** Seconds since the epoch; default now. Move it to test replay windows. */
  timestampSec?: number;
  /** Sent instead of the computed signature, for bad-signature tests. */
  signature?: string;
  /** Extra or overriding headers (e.g. `x-slack-retry-num`). */
  headers?: Record<string, string>;
}

export interface SlackDelivery {
  status: number;
  body: string;
  /** The body parsed, when it is JSON. */
  json?: unknown;
  elapsedMs: number;
}

export interface SlashCommandFields {
  command: string;
  text: string;
  user_id: string;
  user_name?: string;
  channel_id: string;
  channel_name?: string;
  team_id?: string;
  team_domain?: string;
  response_url: string;
  trigger_id?: string;
  api_app_id?: string;
  [field: string]: string | undefined;
}

export interface ButtonPress {
  actionId: string;
  value?: string;
  blockId?: string;
  userId: string;
  userName?: string;
  channelId: string;
  teamId?: string;
  /** ts of the message holding the button. */
  messageTs: string;
  messageText?: string;
  messageBlocks?: unknown[];
  responseUrl: string;
  triggerId?: string;
  buttonText?: string;
}

export function signSlackRequest(signingSecret: string, rawBody: string, timestampSec: number): string {
  return `v0=${createHmac('sha256', signingSecret).update(`v0:${timestampSec}:${rawBody}`).digest('hex')}`;
}

/** Posts an already-encoded body, signed; exported for shapes the two helpers below do not cover. */
export async function sendSignedForm(
  eventsUrl: string,
  signingSecret: string,
  rawBody: string,
  opts: SlackRequestOptions = {},
): Promise<SlackDelivery> {
  const timestampSec = opts.timestampSec ?? Math.floor(Date.now() / 1000);
  const started = performance.now();
  const res = await fetch(eventsUrl, {
    method: 'POST',
    headers: {
      // Exactly this value: Bolt compares content-type with === and would not parse a charset suffix.
      'content-type': 'application/x-www-form-urlencoded',
      'user-agent': 'Slackbot 1.0 (+https://api.slack.com/robots)',
      'x-slack-request-timestamp': String(timestampSec),
      'x-slack-signature': opts.signature ?? signSlackRequest(signingSecret, rawBody, timestampSec),
      ...opts.headers,
    },
    body: rawBody,
  });
  const body = await res.text();
  const elapsedMs = performance.now() - started;
  let json: unknown;
  try {
    json = body === '' ? undefined : JSON.parse(body);
  } catch {
    json = undefined;
  }
  return json === undefined
    ? { status: res.status, body, elapsedMs }
    : { status: res.status, body, json, elapsedMs };
}

/** A slash command's fields as Slack sends them, in Slack's order: the form body over HTTP, the payload over Socket Mode. */
export function slashCommandPayload(fields: SlashCommandFields): Record<string, string> {
  const teamId = fields.team_id ?? 'T0FAKE';
  // Slack's field order and its deprecated verification token, which Bolt ignores.
  const all: Record<string, string | undefined> = {
    token: 'deprecated-verification-token',
    team_id: teamId,
    team_domain: fields.team_domain ?? 'fake-workspace',
    channel_id: fields.channel_id,
    channel_name: fields.channel_name ?? 'fleet-admin',
    user_id: fields.user_id,
    user_name: fields.user_name ?? fields.user_id.toLowerCase(),
    command: fields.command,
    text: fields.text,
    api_app_id: fields.api_app_id ?? 'A0FAKEAPP',
    is_enterprise_install: 'false',
    response_url: fields.response_url,
    trigger_id: fields.trigger_id ?? newTriggerId(),
    // Extra fields the caller adds; undefined ones must not erase the defaults above.
    ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)),
  };
  const payload: Record<string, string> = {};
  for (const [key, value] of Object.entries(all)) if (value !== undefined) payload[key] = value;
  return payload;
}

/** A command line as typed in Slack (`/deploy v1.2.3 all`), as the fields of its slash command. */
export function typedCommand(
  line: string,
  from: { user: string; channel: string; responseUrl: string },
): SlashCommandFields {
  const [command = '', ...rest] = line.split(' ');
  return {
    command,
    text: rest.join(' '),
    user_id: from.user,
    channel_id: from.channel,
    response_url: from.responseUrl,
  };
}

export function sendSlashCommand(
  eventsUrl: string,
  signingSecret: string,
  fields: SlashCommandFields,
  opts?: SlackRequestOptions,
): Promise<SlackDelivery> {
  const form = new URLSearchParams(slashCommandPayload(fields));
  return sendSignedForm(eventsUrl, signingSecret, form.toString(), opts);
}

export function sendInteraction(
  eventsUrl: string,
  signingSecret: string,
  payload: object,
  opts?: SlackRequestOptions,
): Promise<SlackDelivery> {
  const form = new URLSearchParams({ payload: JSON.stringify(payload) });
  return sendSignedForm(eventsUrl, signingSecret, form.toString(), opts);
}

/** A `block_actions` payload as Slack sends it when someone presses a button on a bot message. */
export function blockActionsPayload(press: ButtonPress): Record<string, unknown> {
  const teamId = press.teamId ?? 'T0FAKE';
  const blockId = press.blockId ?? 'actions';
  const nowTs = (Date.now() / 1000).toFixed(6);
  const button = {
    type: 'button',
    action_id: press.actionId,
    block_id: blockId,
    text: { type: 'plain_text', text: press.buttonText ?? press.actionId, emoji: true },
    ...(press.value !== undefined ? { value: press.value } : {}),
  };
  return {
    type: 'block_actions',
    user: {
      id: press.userId,
      username: press.userName ?? press.userId.toLowerCase(),
      name: press.userName ?? press.userId.toLowerCase(),
      team_id: teamId,
    },
    api_app_id: 'A0FAKEAPP',
    token: 'deprecated-verification-token',
    container: {
      type: 'message',
      message_ts: press.messageTs,
      channel_id: press.channelId,
      is_ephemeral: false,
    },
    trigger_id: press.triggerId ?? newTriggerId(),
    team: { id: teamId, domain: 'fake-workspace' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: press.channelId, name: 'fleet-admin' },
    message: {
      type: 'message',
      subtype: 'bot_message',
      text: press.messageText ?? '',
      ts: press.messageTs,
      bot_id: 'B0FAKEBOT',
      blocks: press.messageBlocks ?? [{ type: 'actions', block_id: blockId, elements: [button] }],
    },
    state: { values: {} },
    response_url: press.responseUrl,
    actions: [{ ...button, action_ts: nowTs }],
  };
}

function newTriggerId(): string {
  return `${Date.now()}.${randomUUID().slice(0, 8)}`;
}
