/**
 * How fast fleetbot acknowledges a Slack slash command, next to a bare Bolt app on the same machine.
 * Slack shows the user an error when the ack takes over 3 s, whatever the command does afterwards.
 *
 * Two targets, each its own process, driven by one client in this process:
 * - fleetbot through its real entry point (`src/main.ts --role bot`): Redis, queues, the Express
 *   receiver with its middleware (future-timestamp check, replay check in Redis), the real
 *   dispatcher. The command is `/fleetbot ping`: admin-only, so it goes through the role lookup, its
 *   arguments are validated, it is audited, and it answers in the channel and enqueues a job. It
 *   never touches AWS; nothing in fleetbot's ack path does.
 * - the same @slack/bolt with the same ExpressReceiver and one command listener that only acks.
 *
 * Requests are sent open-loop at a fixed rate (never waiting for an answer before the next), in
 * blocks that alternate between the targets in the order ABBA ABBA..., so drift in the machine's
 * load falls on both alike. After each block the client waits until fleetbot's log shows that every
 * command of the block ran, so fleetbot's work after its acks never lands in a block of the bare app.
 * The first round of each rate, and a closed-loop warm-up before all, are not counted.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../test/peers/redis.js';
import { typedCommand } from '../test/peers/slack-signer.js';
import { cpuMsOf, round, seconds } from './measure.js';
import type { Row, Scenario, ScenarioResult, Target } from './scenario.js';
import {
  createSlackClient,
  type Delivery,
  formatSpread,
  type SlackClient,
  type Spread,
  slackAckLimitMs,
  spread,
  startFakeSlackChild,
  startFleetbot,
  startNodeChild,
} from './slack-client.js';

export interface AckOptions {
  /** Requests per second, each measured separately. */
  rates?: number[];
  /** Counted seconds of load per rate and target. */
  seconds?: number;
  /** Seconds of one block; the targets take turns block by block. */
  blockSeconds?: number;
  /** Closed-loop requests per target before anything is counted (connections, JIT, Bolt's auth.test). */
  warmup?: number;
  /** The fleetbot command line sent. */
  command?: string;
  /** Targets: fleetbot's p99 at most this many times the bare app's, and at most this many ms. */
  maxP99Ratio?: number;
  maxP99Ms?: number;
}

const signingSecret = 'bench-ack-signing-secret-0123456789';
/** Send slip (p99) above which the client did not hold its rate; see the note in `report`. */
const busyClientSlipMs = 10;
const botToken = 'xoxb-bench-ack';
const admin = 'UBENCHADMIN';
const channel = 'CBENCHOPS';

export function ackScenario(options: AckOptions = {}): Scenario {
  const settings = {
    rates: options.rates ?? [20, 100],
    seconds: options.seconds ?? 10,
    blockSeconds: options.blockSeconds ?? 1,
    warmup: options.warmup ?? 50,
    command: options.command ?? '/fleetbot ping',
    maxP99Ratio: options.maxP99Ratio ?? 1.5,
    maxP99Ms: options.maxP99Ms ?? 300,
  };
  return {
    name: 'ack',
    description: `Slack slash command acks at ${settings.rates.join(' and ')}/s, fleetbot next to a bare Bolt app (Redis, about ${Math.round(settings.rates.length * settings.seconds * 2.6 + 15)} s)`,
    run: (say) => runAck(settings, say),
  };
}

export const ack = ackScenario();

type Settings = Required<AckOptions>;
type TargetName = 'fleetbot' | 'bare';

interface Measured {
  rate: number;
  samples: Record<TargetName, Delivery[]>;
  /** Process CPU spent during the counted blocks, ms. */
  cpuMs: Record<TargetName, number>;
  /** How late the client fired requests against their schedule, ms. */
  slipMs: number[];
}

/** The bare app: Bolt's defaults, the same receiver class fleetbot uses, a listener that only acks. */
const bareBolt = `
  import bolt from '@slack/bolt';
  const { App, ExpressReceiver, LogLevel } = bolt;
  const receiver = new ExpressReceiver({
    signingSecret: process.env.SIGNING_SECRET,
    endpoints: '/slack/events',
    logLevel: LogLevel.WARN,
  });
  const app = new App({
    token: process.env.BOT_TOKEN,
    receiver,
    clientOptions: { slackApiUrl: process.env.SLACK_API_URL },
    logLevel: LogLevel.WARN,
  });
  app.command(/^\\/[a-z0-9_-]+$/i, async ({ ack }) => {
    await ack();
  });
  const server = await receiver.start({ port: 0, host: '127.0.0.1' });
  console.log(JSON.stringify({ eventsUrl: 'http://127.0.0.1:' + server.address().port + '/slack/events' }));
  process.once('SIGTERM', () => app.stop().then(() => process.exit(0)));
`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Fires `count` requests `1000 / rate` ms apart without waiting for answers; resolves with every answer. */
async function openLoop(
  count: number,
  rate: number,
  send: () => Promise<Delivery>,
  slip: number[],
): Promise<Delivery[]> {
  const interval = 1000 / rate;
  const start = performance.now() + 2;
  const answers: Promise<Delivery>[] = [];
  for (let i = 0; i < count; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    slip.push(Math.max(0, performance.now() - due));
    answers.push(send());
  }
  return Promise.all(answers);
}

async function runAck(settings: Settings, say: (line: string) => void): Promise<ScenarioResult> {
  const benchStarted = performance.now();
  const redis = testRedis();
  const prefix = uniquePrefix('bench-ack');
  const stops: (() => Promise<void>)[] = [];
  let client: SlackClient | undefined;
  try {
    const slack = await startFakeSlackChild();
    stops.unshift(slack.stop);
    const [fleetbot, bare] = await Promise.all([
      startFleetbot({
        REDIS_URL: testRedisUrl,
        REDIS_PREFIX: prefix,
        SLACK_BOT_TOKEN: botToken,
        SLACK_SIGNING_SECRET: signingSecret,
        SLACK_API_URL: slack.info.apiUrl,
        SLACK_LISTEN: '127.0.0.1:0',
        SLACK_ADMIN_USER_IDS: admin,
        SLACK_ALLOWED_CHANNEL_IDS: channel,
        AWS_REGION: 'us-east-1',
        // Nothing here may reach AWS; were anything to try, it would fail at once instead of going out.
        AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
        AWS_ACCESS_KEY_ID: 'testing',
        AWS_SECRET_ACCESS_KEY: 'testing',
        DASHBOARD_PASSWORD: 'unused-dashboard-password',
      }).then((f) => {
        stops.unshift(f.stop);
        return f;
      }),
      startNodeChild<{ eventsUrl: string }>(bareBolt, {
        SIGNING_SECRET: signingSecret,
        BOT_TOKEN: botToken,
        SLACK_API_URL: slack.info.apiUrl,
      }).then((b) => {
        stops.unshift(b.stop);
        return b;
      }),
    ]);
    say(
      `fleetbot pid ${fleetbot.pid} and bare Bolt pid ${bare.pid} up in ${seconds(performance.now() - benchStarted)} s`,
    );

    const http = createSlackClient();
    client = http;
    const fields = () =>
      typedCommand(settings.command, { user: admin, channel, responseUrl: slack.info.responseUrl });
    const targets: Record<TargetName, { pid: number; send: () => Promise<Delivery> }> = {
      fleetbot: { pid: fleetbot.pid, send: () => http.command(fleetbot.eventsUrl, signingSecret, fields()) },
      bare: { pid: bare.pid, send: () => http.command(bare.info.eventsUrl, signingSecret, fields()) },
    };
    let sentToFleetbot = 0;
    /** fleetbot has finished every command sent so far (its log says so), or `timeoutMs` passed. */
    const fleetbotIdle = (timeoutMs = 15_000) =>
      fleetbot.waitLogged('command ran', sentToFleetbot, timeoutMs);

    // Closed loop, one at a time: the first requests pay for connections, JIT and Bolt's auth.test.
    for (const name of ['fleetbot', 'bare'] as const)
      for (let i = 0; i < settings.warmup; i++) {
        const d = await targets[name].send();
        if (name === 'fleetbot') sentToFleetbot++;
        if (d.status !== 200) throw new Error(`warm-up: ${name} answered ${d.status} ${d.error ?? ''}`);
      }
    if (!(await fleetbotIdle())) throw new Error('warm-up: fleetbot did not run every command');

    // The client's own event-loop delay while it sends, one monitor per counted block (a monitor
    // paused between blocks would count the pause as delay); the worst block is kept.
    const loopDelay = { p99: 0, max: 0 };
    const measured: Measured[] = [];
    for (const rate of settings.rates) {
      const perBlock = Math.max(1, Math.round(rate * settings.blockSeconds));
      const rounds = Math.ceil(settings.seconds / settings.blockSeconds);
      const m: Measured = {
        rate,
        samples: { fleetbot: [], bare: [] },
        cpuMs: { fleetbot: 0, bare: 0 },
        slipMs: [],
      };
      say(
        `${rate}/s: ${rounds} counted rounds of ${perBlock} requests per target (one more round of warm-up)`,
      );
      // Round 0 warms the rate up and is not counted. ABBA ABBA: each target goes first as often as last.
      for (let r = 0; r <= rounds; r++) {
        const order: TargetName[] = r % 2 === 0 ? ['fleetbot', 'bare'] : ['bare', 'fleetbot'];
        for (const name of order) {
          const target = targets[name];
          const cpuBefore = await cpuMsOf(target.pid);
          const blockDelay = monitorEventLoopDelay({ resolution: 1 });
          blockDelay.enable();
          const slip: number[] = [];
          const answers = await openLoop(perBlock, rate, target.send, slip);
          blockDelay.disable();
          if (name === 'fleetbot') {
            sentToFleetbot += perBlock;
            if (!(await fleetbotIdle()))
              say(`${rate}/s round ${r}: fleetbot had not run every command after 15 s`);
          } else await sleep(100);
          const cpuAfter = await cpuMsOf(target.pid);
          if (r === 0) continue;
          loopDelay.p99 = Math.max(loopDelay.p99, blockDelay.percentile(99) / 1e6);
          loopDelay.max = Math.max(loopDelay.max, blockDelay.max / 1e6);
          m.samples[name].push(...answers);
          m.slipMs.push(...slip);
          m.cpuMs[name] += (cpuAfter ?? 0) - (cpuBefore ?? 0);
        }
      }
      measured.push(m);
    }

    return report({
      settings,
      measured,
      commandsRan: fleetbot.logged('command ran'),
      sentToFleetbot,
      problems: fleetbot.problems(),
      loopDelayP99Ms: loopDelay.p99,
      loopDelayMaxMs: loopDelay.max,
      benchMs: performance.now() - benchStarted,
    });
  } finally {
    client?.close();
    for (const stop of stops) await stop().catch((err: unknown) => say(`stopping: ${String(err)}`));
    await dropPrefix(redis, prefix);
    await redis.quit();
  }
}

interface Recorded {
  settings: Settings;
  measured: Measured[];
  commandsRan: number;
  sentToFleetbot: number;
  problems: string[];
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  benchMs: number;
}

function report(r: Recorded): ScenarioResult {
  const { settings } = r;
  const rows: Row[] = [];
  const targets: Target[] = [];
  const perRate = r.measured.map((m) => {
    const stats = (name: TargetName) => {
      const samples = m.samples[name];
      const within = samples.filter((d) => d.status === 200 && d.ms <= slackAckLimitMs).length;
      const failures = samples.filter((d) => d.status !== 200);
      return {
        ...spread(samples.map((d) => d.ms)),
        answered200Within3s: within,
        notOk: failures.length,
        firstFailure: failures[0] ? `${failures[0].status} ${failures[0].error ?? ''}`.trim() : undefined,
        cpuMsPerRequest: samples.length > 0 ? round(m.cpuMs[name] / samples.length, 2) : null,
      };
    };
    const fleetbot = stats('fleetbot');
    const bare = stats('bare');
    const ratio = (k: keyof Spread) => round(fleetbot[k] / bare[k], 2);
    return {
      rate: m.rate,
      fleetbot,
      bare,
      ratio: { p50: ratio('p50'), p99: ratio('p99'), max: ratio('max') },
      slip: spread(m.slipMs),
    };
  });

  for (const p of perRate) {
    const at = `${p.rate}/s`;
    rows.push(
      { label: `${at} fleetbot ack p50 / p99 / max`, value: formatSpread(p.fleetbot) },
      { label: `${at} bare Bolt ack p50 / p99 / max`, value: formatSpread(p.bare) },
      { label: `${at} fleetbot / bare`, value: `${p.ratio.p50} / ${p.ratio.p99} / ${p.ratio.max}` },
      {
        label: `${at} answered 200 within 3 s`,
        value: `fleetbot ${p.fleetbot.answered200Within3s} of ${p.fleetbot.n}, bare ${p.bare.answered200Within3s} of ${p.bare.n}${p.fleetbot.firstFailure ? ` (fleetbot: ${p.fleetbot.firstFailure})` : ''}`,
      },
      {
        label: `${at} CPU per request`,
        value: `fleetbot ${p.fleetbot.cpuMsPerRequest ?? '-'} ms (ack and command), bare ${p.bare.cpuMsPerRequest ?? '-'} ms`,
      },
      { label: `${at} client send slip p99 / max`, value: `${p.slip.p99} / ${p.slip.max} ms` },
    );
    targets.push(
      { label: `${at} fleetbot p99 / bare p99`, value: p.ratio.p99, op: '<=', limit: settings.maxP99Ratio },
      { label: `${at} fleetbot ack p99 (ms)`, value: p.fleetbot.p99, op: '<=', limit: settings.maxP99Ms },
      {
        label: `${at} fleetbot answered 200 within 3 s`,
        value: p.fleetbot.answered200Within3s,
        op: '==',
        limit: p.fleetbot.n,
      },
    );
  }
  rows.push(
    {
      label: 'commands fleetbot ran (its log)',
      value: `${r.commandsRan} of ${r.sentToFleetbot} sent (warm-up included)`,
    },
    {
      label: 'client event-loop delay p99 / max',
      value: `${round(r.loopDelayP99Ms, 1)} / ${round(r.loopDelayMaxMs, 1)} ms (worst block, while sending)`,
    },
    { label: 'fleetbot warnings or errors logged', value: String(r.problems.length) },
    { label: 'bench total', value: `${seconds(r.benchMs)} s` },
  );
  const notes = [
    `ack = client-side time from writing a signed ${settings.command} to the last byte of the HTTP answer, over keep-alive connections`,
    `open-loop at each rate, ${settings.blockSeconds} s blocks alternating fleetbot and bare Bolt (ABBA), ${settings.seconds} s counted per rate and target; warm-up excluded`,
    "fleetbot's CPU per request covers the ack and the command's work after it (role lookup, audit, a chat.postMessage, a BullMQ job); its ack waits only for one Redis SET NX (replay check)",
    'each target is its own process, as is the fake Slack API fleetbot answers through, so the client measures on an otherwise idle event loop',
    ...r.problems.slice(0, 3).map((p) => `fleetbot logged: ${p.slice(0, 300)}`),
  ];
  // A client that cannot keep its own schedule sends bursts instead of a rate: then the machine, not
  // either target, sets the numbers, and a run on a quieter machine is the one to believe.
  const worstSlip = Math.max(...perRate.map((p) => p.slip.p99));
  if (worstSlip > busyClientSlipMs)
    notes.unshift(
      `the machine was busy: the client sent its requests up to ${worstSlip} ms late (p99) and its event loop stalled up to ${round(r.loopDelayMaxMs, 0)} ms; these numbers are mostly the machine's`,
    );
  return {
    scenario: 'ack',
    title: `ack: Slack slash command acks at ${settings.rates.join(' and ')}/s, fleetbot (${settings.command}) vs a bare Bolt app`,
    rows,
    targets,
    notes,
    json: {
      command: settings.command,
      seconds: settings.seconds,
      blockSeconds: settings.blockSeconds,
      rates: perRate.map((p) => ({
        rate: p.rate,
        fleetbot: p.fleetbot,
        bare: p.bare,
        ratio: p.ratio,
        sendSlipMs: { p99: p.slip.p99, max: p.slip.max },
      })),
      commandsRan: r.commandsRan,
      sentToFleetbot: r.sentToFleetbot,
      clientLoopDelayMs: { p99: round(r.loopDelayP99Ms, 1), max: round(r.loopDelayMaxMs, 1) },
      fleetbotProblems: r.problems.length,
      benchMs: Math.round(r.benchMs),
    },
  };
}
