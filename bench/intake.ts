/**
 * Members paste both their secrets at once (their assistant's bot token and their OpenAI key) into a
 * real fleetbot through the fake Telegram Bot API: each is deleted, checked live (getMe on the fake
 * Bot API, /v1/models on the fake OpenAI API) and written with the SDK's PutParameter through the
 * AWS simulator to moto, paced by fleetbot's shared PutParameter pacer. In the same run a bare grammY
 * bot that only replies gets the same messages, for what the Bot API round trip costs by itself.
 * Every value carries a canary, looked for in everything fleetbot sent the Bot API and logged.
 */
import { randomBytes } from 'node:crypto';
import { GetParametersCommand } from '@aws-sdk/client-ssm';
import { run } from '@grammyjs/runner';
import { Bot } from 'grammy';
import type { Env } from '../src/config.js';
import type { FakeTelegram } from '../test/peers/telegram-api.js';
import { countThrottled } from '../test/support/token-bucket.js';
import { minGap, peakInWindow, percentile, round, seconds } from './measure.js';
import type { Scenario, ScenarioResult, Target } from './scenario.js';
import {
  type ChatStage,
  fleetbotToken,
  memberIds,
  ms,
  openStage,
  pacerSlots,
  secs,
  settle,
  stallMonitor,
  warningsIn,
} from './telegram-members.js';

export interface IntakeSizes {
  name?: string;
  members?: number;
  /** fleetbot configuration keys (PARAMETER_WRITES_PER_SECOND…); the service's defaults otherwise. */
  env?: Env;
}

const firstMember = 820_000;
/** The bare bot: a token of its own on the same fake Bot API. */
const bareToken = `7700000007:${'R'.repeat(35)}`;
const kinds = ['telegram-bot-token', 'openai-api-key'] as const;
/** How far past the PutParameter floor the bench waits before it gives up on the stragglers. */
const graceMs = 90_000;
/** In every value, so a leak is found even in a truncated or reformatted copy. */
const canary = 'CANARY';

export function intakeScenario(sizes: IntakeSizes = {}): Scenario {
  const members = sizes.members ?? 50;
  const name = sizes.name ?? `intake-${members}`;
  return {
    name,
    description: `${members} members paste both secrets at once into fleetbot (bot + worker process); a bare grammY bot for comparison`,
    run: (say) => runIntake({ name, members, env: sizes.env }, say),
  };
}

export const intake50 = intakeScenario();

interface Options {
  name: string;
  members: number;
  env?: Env;
}

interface Secrets {
  'telegram-bot-token': string;
  'openai-api-key': string;
}

/** Values of the right shape, each unique, each with the canary; random so no run sees another's. */
function secretsFor(userId: number, index: number): Secrets {
  const noise = (n: number) => randomBytes(n).toString('base64url').slice(0, n);
  const tokenTail = `${canary}${userId}`;
  return {
    // The assistant's bot id must not be fleetbot's own (live-checks.ts refuses that).
    'telegram-bot-token': `${8_100_000_000 + index}:${tokenTail}${noise(35 - tokenTail.length)}`,
    'openai-api-key': `sk-${canary}${userId}${noise(32)}`,
  };
}

async function runIntake(options: Options, say: (line: string) => void): Promise<ScenarioResult> {
  const benchStarted = performance.now();
  const ids = memberIds(options.members, firstMember);
  const stage = await openStage({ label: 'bench-intake', members: ids, env: options.env, openAi: true, say });
  try {
    const { config, simulator, accountId, telegram } = stage;
    const cap = config.intake.parameterWritesPerSecond;
    const secrets = new Map(ids.map((userId, i) => [userId, secretsFor(userId, i)]));
    for (const s of secrets.values()) {
      telegram.addBot(s['telegram-bot-token']);
      stage.openAi?.accept(s['openai-api-key']);
    }
    simulator.control.resetCalls(accountId);
    const callsBefore = telegram.calls(fleetbotToken).length;

    const pastes = ids.length * kinds.length;
    say(
      `${pastes} pastes from ${ids.length} members; PutParameter cap ${cap}/s (floor ${seconds((pastes / cap) * 1000)} s)`,
    );
    const stalls = stallMonitor();
    const fleetbot = await paste(telegram, fleetbotToken, ids, secrets, (pastes / cap) * 1000 + graceMs, say);
    const stallMs = stalls.stop();
    const fleetbotCalls = telegram.calls(fleetbotToken).slice(callsBefore);
    const stored = await readBack(stage, ids, secrets);

    say('the same pastes to a bare grammY bot that only replies');
    const bare = await bareBaseline(telegram, ids, secrets);

    return report({
      options,
      stage,
      ids,
      secrets,
      cap,
      fleetbot,
      fleetbotCalls,
      bare,
      stored,
      putCalls: simulator.control.calls(accountId, 'PutParameter'),
      stallMs,
      benchStartedAt: benchStarted,
    });
  } finally {
    await stage.close();
  }
}

interface Pasted {
  /** When each member's paste of each kind was published to the bot, by `${userId}/${kind}`. */
  sentAt: Map<string, number>;
  startedAt: number;
  finished: boolean;
}

/** Every member pastes both values at once; waits until every paste was answered (or the timeout). */
async function paste(
  telegram: FakeTelegram,
  token: string,
  ids: readonly number[],
  secrets: Map<number, Secrets>,
  timeoutMs: number,
  say: (line: string) => void,
): Promise<Pasted> {
  const sentAt = new Map<string, number>();
  const startedAt = Date.now();
  for (const userId of ids)
    for (const kind of kinds) {
      sentAt.set(`${userId}/${kind}`, Date.now());
      telegram.sendUserMessage(token, {
        userId,
        text: secrets.get(userId)?.[kind] ?? '',
        firstName: 'Member',
      });
    }
  // Each paste gets exactly one answer. One look per second at each open chat, which is cheap; the
  // fake's waitFor would re-read every chat on every call the bot makes.
  const open = new Set(ids);
  let lastSaid = Date.now();
  const finished = await settle(
    () => {
      for (const userId of open)
        if (telegram.chat(token, userId).sent.length >= kinds.length) open.delete(userId);
      if (Date.now() - lastSaid > 15_000) {
        lastSaid = Date.now();
        say(
          `${ids.length - open.size} of ${ids.length} members answered twice after ${seconds(Date.now() - startedAt)} s`,
        );
      }
      return open.size === 0;
    },
    timeoutMs,
    250,
  );
  if (!finished) say(`gave up waiting: ${open.size} members not answered twice`);
  return { sentAt, startedAt, finished };
}

/** Reads every parameter back, decrypted, ten names a call: the values must be the pasted ones. */
async function readBack(stage: ChatStage, ids: readonly number[], secrets: Map<number, Secrets>) {
  const names = new Map<string, string>();
  for (const userId of ids)
    for (const kind of kinds)
      names.set(
        `/${stage.config.aws.parameterPrefix}/users/${userId}/${kind}`,
        secrets.get(userId)?.[kind] ?? '',
      );
  const all = [...names.keys()];
  let matching = 0;
  for (let i = 0; i < all.length; i += 10) {
    const res = await stage.ssm.send(
      new GetParametersCommand({ Names: all.slice(i, i + 10), WithDecryption: true }),
    );
    for (const p of res.Parameters ?? []) if (p.Name && p.Value === names.get(p.Name)) matching++;
  }
  return { expected: all.length, matching };
}

/** A grammY bot with nothing but a reply per text message, polled as fleetbot polls (grammY runner). */
async function bareBaseline(telegram: FakeTelegram, ids: readonly number[], secrets: Map<number, Secrets>) {
  telegram.addBot(bareToken);
  const bot = new Bot(bareToken, { client: { apiRoot: telegram.apiRoot } });
  bot.on('message:text', (ctx) => ctx.reply('Received.'));
  await bot.init();
  const runner = run(bot);
  try {
    const pasted = await paste(telegram, bareToken, ids, secrets, 60_000, () => {});
    const latencies: number[] = [];
    // A chat's two pastes were published together, so its first reply is matched with the first paste.
    const byChat = new Map<number, number[]>();
    for (const c of telegram.calls(bareToken, 'sendMessage')) {
      const userId = Number(c.params.chat_id);
      byChat.set(userId, [...(byChat.get(userId) ?? []), c.at]);
    }
    for (const [userId, times] of byChat)
      times.forEach((at, i) => {
        const sent = pasted.sentAt.get(`${userId}/${kinds[i]}`);
        if (sent !== undefined) latencies.push(at - sent);
      });
    return { latencies, finished: pasted.finished };
  } finally {
    if (runner.isRunning()) await runner.stop();
  }
}

interface Recorded {
  options: Options;
  stage: ChatStage;
  ids: number[];
  secrets: Map<number, Secrets>;
  cap: number;
  fleetbot: Pasted;
  fleetbotCalls: ReturnType<FakeTelegram['calls']>;
  bare: { latencies: number[]; finished: boolean };
  stored: { expected: number; matching: number };
  putCalls: { at: number; status: number }[];
  stallMs: number;
  benchStartedAt: number;
}

function report(r: Recorded): ScenarioResult {
  const { ids, cap } = r;
  const pastes = ids.length * kinds.length;

  // Paste to its "Stored your <kind>" reply, by the time each reached the fake Bot API.
  const storedLatency: number[] = [];
  const otherReplies: string[] = [];
  for (const c of r.fleetbotCalls) {
    if (c.method !== 'sendMessage') continue;
    const text = String(c.params.text ?? '');
    const kind = kinds.find((k) => text.startsWith(`Stored your ${k} `));
    const sent = kind === undefined ? undefined : r.fleetbot.sentAt.get(`${c.params.chat_id}/${kind}`);
    if (sent !== undefined) storedLatency.push(c.at - sent);
    else otherReplies.push(text.split('\n')[0]?.slice(0, 120) ?? '');
  }
  const deletes = r.fleetbotCalls.filter((c) => c.method === 'deleteMessage' && c.response?.ok).length;

  const putTimes = r.putCalls.map((c) => c.at);
  const putNon200 = r.putCalls.filter((c) => c.status !== 200).length;
  const putPeak = peakInWindow(putTimes, 1000);
  const putGap = minGap(putTimes);
  const overBucket = countThrottled(putTimes, cap);
  const logs = r.stage.logs();
  const slots = pacerSlots(logs, `${r.stage.prefix}:pace:put-parameter`);
  const slotGap = minGap(slots);
  const putSpanMs = putTimes.length > 1 ? Math.max(...putTimes) - Math.min(...putTimes) : 0;

  // The canary: nothing fleetbot sent the Bot API (messages, edits, any other method) or logged may
  // hold a value, or the marker every value carries.
  const values = [...r.secrets.values()].flatMap((s) => kinds.map((k) => s[k]));
  const leaks = (text: string) => text.includes(canary) || values.some((v) => text.includes(v));
  const leakedCalls = r.stage.telegram
    .calls(fleetbotToken)
    .filter((c) => c.method.toLowerCase() !== 'getupdates' && leaks(JSON.stringify(c.params))).length;
  const leakedMessages = ids.filter((userId) => {
    const chat = r.stage.telegram.chat(fleetbotToken, userId);
    return [...chat.sent.map((m) => m.text ?? ''), ...chat.edits.map((e) => e.text ?? '')].some(leaks);
  }).length;
  const leakedLogLines = `${r.stage.fleetbot.out()}\n${r.stage.fleetbot.err()}`
    .split('\n')
    .filter(leaks).length;
  // The control: the same search finds every value where it must be, in the updates that carried
  // the pastes to the bare bot (the fake records them as that bot's getUpdates answers).
  const delivered = JSON.stringify(r.stage.telegram.calls(bareToken, 'getUpdates').map((c) => c.response));
  const control = values.filter((v) => delivered.includes(v)).length;

  const p50 = percentile(storedLatency, 50);
  const p99 = percentile(storedLatency, 99);
  const max = storedLatency.length > 0 ? Math.max(...storedLatency) : undefined;
  const bareP50 = percentile(r.bare.latencies, 50);
  const bareP99 = percentile(r.bare.latencies, 99);
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b <= 0 ? undefined : round(a / b, 1);
  const floorMs = (pastes / cap) * 1000;
  const warnings = warningsIn(logs);
  const benchMs = performance.now() - r.benchStartedAt;

  const targets: Target[] = [
    { label: '"stored" replies', value: storedLatency.length, op: '==', limit: pastes },
    { label: 'parameters in SSM with the pasted value', value: r.stored.matching, op: '==', limit: pastes },
    { label: 'PutParameter not answered 200', value: putNon200, op: '==', limit: 0 },
    // As Parameter Store meters it: a bucket of one second's worth, refilled at the cap.
    { label: `PutParameter over ${cap}/s (token bucket)`, value: overBucket, op: '==', limit: 0 },
    { label: 'Bot API calls holding a secret', value: leakedCalls, op: '==', limit: 0 },
    { label: 'log lines holding a secret', value: leakedLogLines, op: '==', limit: 0 },
    { label: 'canary control: values found in delivered updates', value: control, op: '==', limit: pastes },
  ];

  const rows = [
    {
      label: 'paste to "stored" reply',
      value: `p50 ${secs(p50)}, p99 ${secs(p99)}, max ${secs(max)} (${storedLatency.length} of ${pastes})`,
    },
    { label: '  PutParameter floor', value: `${pastes} / ${cap} per s = ${secs(floorMs)}` },
    {
      label: 'bare grammY bot, paste to reply',
      value: `p50 ${ms(bareP50)}, p99 ${ms(bareP99)} (${r.bare.latencies.length} of ${pastes})`,
    },
    {
      label: '  fleetbot / bare',
      value: `p50 x${ratio(p50, bareP50) ?? '-'}, p99 x${ratio(p99, bareP99) ?? '-'}`,
    },
    {
      label: 'PutParameter at the simulator',
      value: `${r.putCalls.length} (${putNon200} not 200) over ${secs(putSpanMs)}, peak ${putPeak.count} in 1 s, min gap ${Number.isFinite(putGap) ? `${putGap} ms` : '-'}`,
    },
    {
      label: '  put pacer slots (fleetbot log)',
      value: `${slots.length}, min gap ${Number.isFinite(slotGap) ? `${slotGap} ms` : '-'} (spacing ${Math.ceil(1000 / cap)} ms)`,
    },
    { label: 'pasted messages deleted', value: `${deletes} of ${pastes}` },
    {
      label: 'other replies',
      value: otherReplies.length > 0 ? `${otherReplies.length}: ${otherReplies[0]}` : '0',
    },
    {
      label: 'canary in Bot API messages / calls / logs',
      value: `${leakedMessages} chats / ${leakedCalls} calls / ${leakedLogLines} lines`,
    },
    { label: 'fleetbot warnings logged', value: String(warnings.length) },
    { label: 'bench event-loop stall, max', value: `${ms(r.stallMs)} (arrival times are stamped here)` },
    { label: 'bench total', value: secs(benchMs) },
  ];
  const notes = [
    ...otherReplies.slice(0, 3).map((t) => `reply that was not "stored": ${t}`),
    ...warnings.slice(0, 3).map((w) => `warning logged: ${w}`),
  ];

  return {
    scenario: r.options.name,
    title: `${r.options.name}: ${ids.length} members paste a bot token and an OpenAI key at once, PutParameter cap ${cap}/s`,
    rows,
    targets,
    notes,
    json: {
      members: ids.length,
      pastes,
      putParameterCapPerSecond: cap,
      storedReplies: storedLatency.length,
      storedInSsm: r.stored.matching,
      pasteToStoredMs: { p50: p50 ?? null, p99: p99 ?? null, max: max ?? null },
      putFloorMs: Math.round(floorMs),
      bareBotMs: { p50: bareP50 ?? null, p99: bareP99 ?? null, replies: r.bare.latencies.length },
      fleetbotOverBare: { p50: ratio(p50, bareP50) ?? null, p99: ratio(p99, bareP99) ?? null },
      putParameterCalls: r.putCalls.length,
      putParameterNon200: putNon200,
      peakPutParameterPerSecond: putPeak.count,
      minPutParameterGapMs: Number.isFinite(putGap) ? putGap : null,
      putParameterOverBucket: overBucket,
      minPutPacerSlotGapMs: Number.isFinite(slotGap) ? slotGap : null,
      deleted: deletes,
      otherReplies: otherReplies.length,
      canaryLeaks: { chats: leakedMessages, calls: leakedCalls, logLines: leakedLogLines },
      canaryControl: control,
      warnings: warnings.length,
      benchStallMaxMs: Math.round(r.stallMs),
      benchMs: Math.round(benchMs),
    },
  };
}
