/**
 * A burst of `/fleet` from many admins at once, over signed HTTP to fleetbot's real Slack receiver
 * (its real entry point, `src/main.ts --role bot`, in a process of its own), against moto + the AWS
 * simulator. The AWS calls are counted where AWS would count them: the simulator's call log.
 *
 * The rule that keeps the burst cheap (src/core/fleet-view.ts): every reader of the fleet shares the
 * one listing in flight, and a finished listing serves every reader for FLEET_CACHE_SECONDS from
 * its answer. A burst that arrives while one listing is under way therefore costs one
 * DescribeInstances (moto answers the whole fleet in one page) and one agent sweep, which is one
 * DescribeInstanceInformation per 50 instance ids: 1 + ceil(instances / 50) calls, however many
 * admins ask. One listing per request would be `burst` times that.
 */
import { EC2Client } from '@aws-sdk/client-ec2';
import { loadConfig } from '../src/config.js';
import { testAccountId } from '../test/peers/aws-account.js';
import { type AwsSimulator, type CallRecord, startAwsSimulator } from '../test/peers/aws-simulator.js';
import { type MotoServer, startMoto } from '../test/peers/moto.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../test/peers/redis.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../test/peers/slack-api.js';
import { typedCommand } from '../test/peers/slack-signer.js';
import { launchInstances } from '../test/support/fleet.js';
import { countBy, seconds } from './measure.js';
import type { Scenario, ScenarioResult, Target } from './scenario.js';
import {
  createSlackClient,
  type Delivery,
  formatSpread,
  type RunningFleetbot,
  type SlackClient,
  type Spread,
  slackAckLimitMs,
  spread,
  startFleetbot,
} from './slack-client.js';

export interface FleetBurstOptions {
  /** `/fleet` commands sent at once, each from an admin of its own. */
  burst?: number;
  /** The fleet: this many members, each with this many servers. */
  usersWithServers?: number;
  serversPerUser?: number;
  /** FLEET_CACHE_SECONDS for fleetbot; default: the service's own default. */
  cacheSeconds?: number;
  /** Target: p99 of the time until an admin sees the listing, ms. */
  answerBudgetMs?: number;
  /** The bench gives up waiting for answers after this long. */
  giveUpMs?: number;
}

const region = 'us-east-1';
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const signingSecret = 'bench-fleet-burst-signing-secret';
const channel = 'CBENCHOPS';
/** DescribeInstanceInformation takes at most 50 instance ids per call (its InstanceIds filter). */
const sweepChunk = 50;

export function fleetBurstScenario(options: FleetBurstOptions = {}): Scenario {
  const settings = {
    burst: options.burst ?? 60,
    // 55 servers: more than one DescribeInstanceInformation chunk, so the sweep's chunking is counted too.
    usersWithServers: options.usersWithServers ?? 11,
    serversPerUser: options.serversPerUser ?? 5,
    cacheSeconds: options.cacheSeconds,
    // Slack's 3 s is the ack's limit (also measured here); the listing itself comes as a message
    // afterwards, and Slack sets it no deadline. 10 s is what an admin who typed /fleet would still
    // wait for without typing it again. Unshared, a burst of 60 was not answered within minutes.
    answerBudgetMs: options.answerBudgetMs ?? 10_000,
    giveUpMs: options.giveUpMs ?? 60_000,
  };
  return {
    name: 'fleet-burst',
    description: `${settings.burst} admins' /fleet at once against ${settings.usersWithServers * settings.serversPerUser} instances (moto + simulator + Redis, about 45 s)`,
    run: (say) => runFleetBurst(settings, say),
  };
}

export const fleetBurst = fleetBurstScenario();

type Settings = Required<Omit<FleetBurstOptions, 'cacheSeconds'>> & { cacheSeconds: number | undefined };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function runFleetBurst(settings: Settings, say: (line: string) => void): Promise<ScenarioResult> {
  const benchStarted = performance.now();
  // The service's own defaults, read the way the service reads them.
  const config = loadConfig(
    {
      AWS_REGION: region,
      ...(settings.cacheSeconds !== undefined ? { FLEET_CACHE_SECONDS: String(settings.cacheSeconds) } : {}),
    },
    { roles: ['worker'] },
  );
  const cacheMs = config.fleetCacheMs;
  const fleetSize = settings.usersWithServers * settings.serversPerUser;
  const admins = Array.from({ length: settings.burst }, (_, i) => `UBENCHADMIN${i}`);

  const redis = testRedis();
  const prefix = uniquePrefix('bench-fleet-burst');
  const accountId = testAccountId();
  let moto: MotoServer | undefined;
  let simulator: AwsSimulator | undefined;
  let slack: FakeSlack | undefined;
  let fleetbot: RunningFleetbot | undefined;
  let client: SlackClient | undefined;
  try {
    moto = await startMoto({ say });
    simulator = await startAwsSimulator({ motoUrl: moto.url, defaultAccountId: accountId });
    const sim = simulator;
    slack = await startFakeSlack();
    const fake = slack;
    const ec2 = new EC2Client({ region, endpoint: sim.url, credentials });
    for (let user = 0; user < settings.usersWithServers; user++)
      await launchInstances(ec2, settings.serversPerUser, {
        app: 'fleetbot',
        env: config.env,
        user: String(70_000 + user),
      });
    ec2.destroy();
    say(`moto, simulator and ${fleetSize} instances ready in ${seconds(performance.now() - benchStarted)} s`);

    fleetbot = await startFleetbot({
      AWS_REGION: region,
      AWS_ENDPOINT_URL: sim.url,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      SLACK_BOT_TOKEN: 'xoxb-bench-fleet-burst',
      SLACK_SIGNING_SECRET: signingSecret,
      SLACK_API_URL: fake.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ADMIN_USER_IDS: admins.join(','),
      SLACK_ALLOWED_CHANNEL_IDS: channel,
      FLEET_CACHE_SECONDS: String(cacheMs / 1000),
      DASHBOARD_PASSWORD: 'unused-dashboard-password',
    });
    const { eventsUrl } = fleetbot;
    const http = createSlackClient();
    client = http;
    const fleetAnswer = (c: SlackCall) =>
      (c.method === 'chat.postMessage' || c.method === 'chat.postEphemeral') &&
      String(c.params.text).startsWith(`${fleetSize} instances: `);
    const fleetCommand = (user: string) =>
      http.command(
        eventsUrl,
        signingSecret,
        typedCommand('/fleet', { user, channel, responseUrl: fake.responseUrl() }),
      );

    // A long-running process has made its first AWS call and filled its JIT long before a burst: one
    // /fleet warms those up. Its listing is then left to expire, so the burst has to list again.
    const warm = await fleetCommand(admins[0] ?? '');
    if (warm.status !== 200) throw new Error(`warm-up /fleet answered ${warm.status} ${warm.error ?? ''}`);
    const warmAnswer = await fake.waitFor(fleetAnswer, settings.giveUpMs);
    say(`warm-up /fleet answered; waiting ${seconds(cacheMs + 1000)} s for its listing to expire`);
    await sleep(Math.max(0, warmAnswer.at + cacheMs + 1000 - Date.now()));

    sim.control.resetCalls(accountId);
    fake.reset();
    say(`sending ${settings.burst} /fleet at once`);
    // Every request is written in one turn of the event loop, without waiting for any answer.
    const burstStartedAt = Date.now();
    const acks = await Promise.all(admins.map((admin) => fleetCommand(admin)));
    const answers = await waitForAnswers(fake, fleetAnswer, settings.burst, settings.giveUpMs);
    // Anything the burst still had in flight has reached the simulator by now; a late call would show.
    await sleep(500);
    return report({
      settings,
      fleetSize,
      cacheMs,
      acks,
      answerMs: answers.map((a) => a.at - burstStartedAt),
      answersWrong: answers.filter((a) => a.params.channel !== channel).length,
      awsCalls: sim.control.calls(accountId),
      burstStartedAt,
      problems: fleetbot.problems(),
      benchMs: performance.now() - benchStarted,
    });
  } finally {
    client?.close();
    await fleetbot?.stop();
    await slack?.close();
    await simulator?.close();
    await moto?.stop();
    await dropPrefix(redis, prefix);
    await redis.quit();
  }
}

/** The first `count` answers, as the fake Slack recorded them; fewer when `giveUpMs` passed first. */
async function waitForAnswers(
  fake: FakeSlack,
  isAnswer: (c: SlackCall) => boolean,
  count: number,
  giveUpMs: number,
): Promise<SlackCall[]> {
  const deadline = Date.now() + giveUpMs;
  for (;;) {
    const answers = fake.calls().filter(isAnswer);
    if (answers.length >= count || Date.now() > deadline) return answers.slice(0, count);
    await sleep(100);
  }
}

interface Recorded {
  settings: Settings;
  fleetSize: number;
  cacheMs: number;
  acks: Delivery[];
  /** From the moment the burst was sent to each answer reaching the fake Slack. */
  answerMs: number[];
  answersWrong: number;
  awsCalls: CallRecord[];
  burstStartedAt: number;
  problems: string[];
  benchMs: number;
}

function report(r: Recorded): ScenarioResult {
  const { settings } = r;
  const answers: Spread = spread(r.answerMs);
  const acks: Spread = spread(r.acks.map((a) => a.ms));
  const acked = r.acks.filter((a) => a.status === 200 && a.ms <= slackAckLimitMs).length;
  const byOperation = countBy(r.awsCalls, (c) => c.operation);
  const notOk = r.awsCalls.filter((c) => c.status !== 200).length;
  const sharedBound = 1 + Math.ceil(r.fleetSize / sweepChunk);
  const opList = Object.entries(byOperation)
    .map(([op, n]) => `${op} ${n}`)
    .join(', ');

  const targets: Target[] = [
    { label: 'admins answered with the listing', value: answers.n, op: '==', limit: settings.burst },
    { label: 'acked 200 within 3 s', value: acked, op: '==', limit: settings.burst },
    { label: 'answer p99 (ms)', value: answers.p99, op: '<=', limit: settings.answerBudgetMs },
    { label: 'AWS calls during the burst', value: r.awsCalls.length, op: '<=', limit: sharedBound },
  ];
  const rows = [
    { label: 'burst', value: `${settings.burst} /fleet from ${settings.burst} admins, sent at once` },
    {
      label: 'fleet',
      value: `${r.fleetSize} instances (${settings.usersWithServers} members x ${settings.serversPerUser}), cache ${r.cacheMs / 1000} s`,
    },
    { label: 'answer p50 / p99 / max', value: formatSpread(answers) },
    { label: 'ack p50 / p99 / max', value: formatSpread(acks) },
    { label: 'answers outside the channel', value: String(r.answersWrong) },
    { label: 'AWS calls during the burst', value: `${r.awsCalls.length}: ${opList || 'none'}` },
    {
      label: '  arrived at the simulator',
      value:
        r.awsCalls
          .map((c) => `+${c.at - r.burstStartedAt} ms ${c.operation}`)
          .slice(0, 8)
          .join(', ') || '-',
    },
    { label: 'AWS calls not answered 200', value: String(notOk) },
    {
      label: 'AWS calls, one listing per request',
      value: `would be ${settings.burst * sharedBound} (${settings.burst} x ${sharedBound})`,
    },
    { label: 'fleetbot warnings or errors logged', value: String(r.problems.length) },
    { label: 'bench total', value: `${seconds(r.benchMs)} s` },
  ];
  const notes = [
    "answer = from sending the burst to the fake Slack receiving each chat.postMessage with the listing (/fleet answers in the channel, not through response_url; all requests were written at once, so this is each admin's wait to within a few ms)",
    'a warm-up /fleet ran first and its listing was left to expire: the burst starts on a cold cache',
    `shared bound: 1 DescribeInstances + ceil(${r.fleetSize} / ${sweepChunk}) DescribeInstanceInformation per listing`,
    ...r.problems.slice(0, 3).map((p) => `fleetbot logged: ${p.slice(0, 300)}`),
  ];
  return {
    scenario: 'fleet-burst',
    title: `fleet-burst: ${settings.burst} admins' /fleet at once, ${r.fleetSize} instances, through the Slack receiver against moto + simulator`,
    rows,
    targets,
    notes,
    json: {
      burst: settings.burst,
      instances: r.fleetSize,
      cacheSeconds: r.cacheMs / 1000,
      answered: answers.n,
      answerMs: answers,
      ackMs: acks,
      acked200Within3s: acked,
      answersOutsideChannel: r.answersWrong,
      awsCalls: r.awsCalls.length,
      awsCallsByOperation: byOperation,
      awsCallsNot200: notOk,
      awsCallOffsetsMs: r.awsCalls.map((c) => c.at - r.burstStartedAt),
      awsCallBound: sharedBound,
      fleetbotProblems: r.problems.length,
      benchMs: Math.round(r.benchMs),
    },
  };
}
