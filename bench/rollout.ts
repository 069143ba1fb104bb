/**
 * Deploys to fleets of 1,000 and 10,000 instances through `processRollout` with the real fleet, Run
 * Command client, Redis pacer, chat.update budget and cancel flag, against moto + the AWS simulator
 * (fleetbot's side in a process of its own, bench/rollout-worker.ts, so its memory is its own):
 * once with Run Command's completion events (EventBridge → SQS in moto → fleetbot's receiver → the
 * Redis fan-out) and once with adaptive polling alone. Beside each, the limit the same instances
 * set: the makespan of an ideal per-instance refill at the same concurrency, the SendCommand pacing
 * floor of the SSM budget, and what SSM's own rate control does with one Targets command.
 * The numbers come from the simulator's side of the wire: its call log and the invocations it ran.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CreateQueueCommand, SQSClient } from '@aws-sdk/client-sqs';
import { SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { type Env, loadConfig } from '../src/config.js';
import { planRollout } from '../src/core/rollout.js';
import type { RolloutSummary } from '../src/jobs/rollout.js';
import { testAccountId, withAccount } from '../test/peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../test/peers/aws-simulator.js';
import { startMoto } from '../test/peers/moto.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../test/peers/redis.js';
import { countThrottled } from '../test/support/token-bucket.js';
import { countBy, maxOverlap, mib, peakInWindow, round, seconds, seededDraws } from './measure.js';
import type { RolloutRun, RolloutTask } from './rollout-worker.js';
import type { Row, Scenario, ScenarioResult, Target } from './scenario.js';

const region = 'us-east-1';
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
/** What the infra's rule forwards (infra/fleetbot.yaml, RolloutEventsRule): terminal statuses only. */
const terminalStatuses = ['Success', 'Failed', 'Cancelled', 'TimedOut'];
const maxIdsPerSend = 50;

/** How one instance's deploy goes: picked up after a moment, done a few seconds later (2.3–7.5 s). */
function outcomeFor(instanceId: string): { pendingMs: number; afterMs: number } {
  const draw = seededDraws(instanceId);
  const pendingMs = 300 + Math.floor(draw() * 1200);
  return { pendingMs, afterMs: pendingMs + 2000 + Math.floor(draw() * 4000) };
}

export interface FleetSize {
  instances: number;
  /** `--concurrency` as an admin would type it. */
  concurrency: string;
}

export type Mode = 'events' | 'polling';

export interface RolloutBenchOptions {
  name: string;
  sizes: FleetSize[];
  modes: Mode[];
  /** Configuration keys as the service reads them; the service's defaults otherwise. */
  env?: Env;
}

/**
 * At 10,000 instances the SSM budget, not the concurrency, sets the pace at 20% (2,000 slots would
 * free 400 a second, 8 SendCommands a second at 50 ids, past the default 5 calls a second), so the
 * big fleet runs at a concurrency the budget can feed and the comparison with the ideal stays about
 * the rollout, not the budget.
 */
export const defaultSizes: FleetSize[] = [
  { instances: 1000, concurrency: '20%' },
  { instances: 10_000, concurrency: '400' },
];

export function rolloutScenario(options: RolloutBenchOptions): Scenario {
  const sizes = options.sizes.map((s) => `${s.instances} at ${s.concurrency}`).join(' and ');
  return {
    name: options.name,
    description: `deploy to ${sizes} instances, ${options.modes.join(' and ')}, beside the ideal refill and SSM's own rate control (moto + simulator + Redis)`,
    run: (say) => runScenario(options, say),
  };
}

export const rolloutBench = rolloutScenario({
  name: 'rollout',
  sizes: defaultSizes,
  modes: ['events', 'polling'],
});

interface Measured {
  size: FleetSize;
  mode: Mode;
  concurrency: number;
  summary: RolloutSummary;
  wallMs: number;
  idealMs: number;
  refillMs: number;
  sendFloorMs: number;
  awsAloneMs: number | undefined;
  ssmCalls: number;
  ssmByOperation: Record<string, number>;
  overBudget: number;
  maxInFlight: number;
  sentOnceSucceeded: number;
  sends: number;
  batchRecords: number;
  editsPeakPerMinute: number;
  eventLoopP99Ms: number;
  rolloutRss: number;
  ec2FromIndex: number;
  events?: { matched: number; delivered: number; lost: number };
}

async function runScenario(
  options: RolloutBenchOptions,
  say: (line: string) => void,
): Promise<ScenarioResult> {
  const benchStarted = performance.now();
  const config = loadConfig({ AWS_REGION: region, ...options.env }, { roles: ['worker'] });
  const redis = testRedis();
  const prefix = uniquePrefix('bench');
  const moto = await startMoto();
  const simulator = await startAwsSimulator({ motoUrl: moto.url, defaultAccountId: testAccountId() });
  const measured: Measured[] = [];
  try {
    for (const size of options.sizes) {
      const awsAloneMs = await awsAlone(simulator, size, config.rollout.deployDocument);
      say(
        `${size.instances} instances: SSM's own rate control finishes in ${seconds(awsAloneMs ?? Number.NaN)} s`,
      );
      // The modes run side by side, each in an account, a process and an SSM budget of its own (as
      // two deployments would): they share only the machine's cores, which makes neither faster.
      const runs = await Promise.all(
        options.modes.map(async (mode) => {
          const m = await rollOut({ simulator, prefix, config, env: options.env, size, mode, awsAloneMs });
          say(
            `${size.instances} instances, ${mode}: ${m.summary.outcome} in ${seconds(m.wallMs)} s, ideal ${seconds(m.idealMs)} s (x${round(m.wallMs / m.idealMs, 2)})`,
          );
          return m;
        }),
      );
      measured.push(...runs);
    }
  } finally {
    await simulator.close();
    await moto.stop();
    await dropPrefix(redis, prefix);
    await redis.quit();
  }
  return report(options.name, config, measured, performance.now() - benchStarted);
}

/** Indexed instances of one size in a fresh account: the simulator answers EC2 reads itself. */
function fleetOf(
  simulator: AwsSimulator,
  size: FleetSize,
  env: string,
): { accountId: string; ids: string[] } {
  const accountId = testAccountId();
  const ids = Array.from(
    { length: size.instances },
    (_, i) => `i-${(0x1000_0000 + i).toString(16).padStart(17, '0')}`,
  );
  simulator.control.indexFleet(
    accountId,
    ids.map((instanceId, i) => ({
      instanceId,
      tags: { app: 'fleetbot', env, user: String(50_000 + i) },
    })),
  );
  simulator.control.scriptRunCommand(accountId, '*', (_document, _parameters, instanceId) => ({
    status: 'Success',
    output: 'deployed',
    ...outcomeFor(instanceId),
  }));
  return { accountId, ids };
}

/** One SendCommand over the whole fleet by tag, with MaxConcurrency: what SSM alone would do. */
async function awsAlone(
  simulator: AwsSimulator,
  size: FleetSize,
  document: string,
): Promise<number | undefined> {
  const { accountId, ids } = fleetOf(simulator, size, 'dev');
  const ssm = withAccount(new SSMClient({ region, endpoint: simulator.url, credentials }), accountId);
  try {
    const { concurrency } = planRollout({ concurrency: size.concurrency, maxErrors: '0', canary: 0 }, ids);
    await ssm.send(
      new SendCommandCommand({
        DocumentName: document,
        Targets: [{ Key: 'tag:app', Values: ['fleetbot'] }],
        MaxConcurrency: String(concurrency),
        MaxErrors: '0',
        Parameters: { version: ['v9.9.9'] },
      }),
    );
    const invocations = simulator.control.invocations(accountId);
    const requestedAt = invocations[0]?.requestedAt ?? 0;
    const ends = invocations.map((i) => i.endedAt);
    if (ends.some((e) => e === undefined) || invocations.length !== ids.length) return undefined;
    return Math.max(...(ends as number[])) - requestedAt;
  } finally {
    ssm.destroy();
  }
}

/** The makespan of refilling each slot the moment it frees, in plan order: list scheduling. */
export function idealRefillMs(durations: readonly number[], slots: number): number {
  const ends: number[] = [];
  let makespan = 0;
  for (const [i, duration] of durations.entries()) {
    // The earliest-freed slot takes the next instance (a min-heap would be faster; 10,000 is small).
    let start = 0;
    if (i >= slots) {
      let best = 0;
      for (let s = 1; s < ends.length; s++) if ((ends[s] ?? 0) < (ends[best] ?? 0)) best = s;
      start = ends[best] ?? 0;
      ends[best] = start + duration;
    } else ends.push(duration);
    makespan = Math.max(makespan, start + duration);
  }
  return makespan;
}

async function rollOut(args: {
  simulator: AwsSimulator;
  prefix: string;
  config: ReturnType<typeof loadConfig>;
  env?: Env;
  size: FleetSize;
  mode: Mode;
  awsAloneMs: number | undefined;
}): Promise<Measured> {
  const { simulator, config, size, mode } = args;
  const { accountId, ids } = fleetOf(simulator, size, config.env);
  let queueUrl: string | undefined;
  if (mode === 'events') {
    const sqs = withAccount(new SQSClient({ region, endpoint: simulator.url, credentials }), accountId);
    queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `rollout-events-${size.instances}` })))
      .QueueUrl;
    sqs.destroy();
    if (!queueUrl) throw new Error('moto created no queue');
    simulator.control.emitRunCommandEvents(accountId, {
      queueUrl,
      statuses: terminalStatuses,
      documents: [config.rollout.deployDocument],
    });
  }
  const plan = planRollout({ concurrency: size.concurrency, maxErrors: '0', canary: 0 }, [...ids].sort());
  const refillMs = idealRefillMs(
    plan.batches.flat().map((id) => outcomeFor(id).afterMs),
    plan.concurrency,
  );
  const sendFloorMs = (Math.ceil(ids.length / maxIdsPerSend) / config.rollout.ssmRequestsPerSecond) * 1000;
  simulator.control.resetCalls(accountId);
  try {
    const run = await runWorker({
      simulatorUrl: simulator.url,
      accountId,
      redisUrl: testRedisUrl,
      prefix: `${args.prefix}:${size.instances}:${mode}`,
      env: args.env,
      instances: size.instances,
      concurrency: size.concurrency,
      queueUrl,
    });
    const calls = simulator.control.calls(accountId).filter((c) => c.service === 'ssm');
    const invocations = simulator.control.invocations(accountId);
    const perInstance = countBy(invocations, (i) => i.instanceId);
    const intervals = invocations.map((i) => ({ start: i.requestedAt, end: i.endedAt ?? i.requestedAt }));
    const stats = queueUrl ? simulator.control.runCommandEventStats(accountId) : undefined;
    return {
      size,
      mode,
      concurrency: plan.concurrency,
      summary: run.summary,
      wallMs: run.wallMs,
      idealMs: Math.max(refillMs, sendFloorMs),
      refillMs,
      sendFloorMs,
      awsAloneMs: args.awsAloneMs,
      ssmCalls: calls.length,
      ssmByOperation: countBy(calls, (c) => c.operation),
      overBudget: countThrottled(
        calls.map((c) => c.at),
        config.rollout.ssmRequestsPerSecond,
      ),
      maxInFlight: maxOverlap(intervals).count,
      sentOnceSucceeded: invocations.filter((i) => perInstance[i.instanceId] === 1 && i.status === 'Success')
        .length,
      sends: calls.filter((c) => c.operation === 'SendCommand' && c.status === 200).length,
      batchRecords: run.batchRecords,
      editsPeakPerMinute: peakInWindow(run.edits, 60_000).count,
      eventLoopP99Ms: run.eventLoopP99Ms,
      rolloutRss: run.rss,
      ec2FromIndex: simulator.control.fleetIndexStats(accountId).served.DescribeInstances,
      events: stats && { matched: stats.matched, delivered: stats.delivered, lost: stats.lost },
    };
  } finally {
    simulator.control.emitRunCommandEvents(accountId, undefined);
  }
}

/** fleetbot's side of one rollout, in a process of its own (bench/rollout-worker.ts). */
function runWorker(task: RolloutTask): Promise<RolloutRun> {
  const entry = fileURLToPath(new URL('./rollout-worker.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', entry, JSON.stringify(task)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.trim().split('\n').at(-1);
      if (code === 0 && line) resolve(JSON.parse(line) as RolloutRun);
      else reject(new Error(`the rollout process exited with ${code}`));
    });
  });
}

function report(
  name: string,
  config: ReturnType<typeof loadConfig>,
  all: Measured[],
  benchMs: number,
): ScenarioResult {
  const budget = config.rollout.ssmRequestsPerSecond;
  const rows: Row[] = [];
  const targets: Target[] = [];
  for (const m of all) {
    const label = `${m.size.instances} ${m.mode}`;
    const ratio = round(m.wallMs / m.idealMs, 2);
    rows.push(
      {
        label: `${label}: wall`,
        value: `${seconds(m.wallMs)} s, ${m.summary.outcome}, ${m.summary.counts.succeeded} succeeded (concurrency ${m.size.concurrency} = ${m.concurrency})`,
      },
      {
        label: `${label}: ideal`,
        value: `${seconds(m.idealMs)} s = max(per-instance refill ${seconds(m.refillMs)} s, SendCommand floor ${seconds(m.sendFloorMs)} s); wall / ideal ${ratio}`,
      },
      {
        label: `${label}: SSM alone`,
        value:
          m.awsAloneMs === undefined
            ? 'not finished'
            : `${seconds(m.awsAloneMs)} s (one SendCommand, Targets tag:app, MaxConcurrency ${m.concurrency}); wall / that ${round(m.wallMs / m.awsAloneMs, 2)}`,
      },
      {
        label: `${label}: SSM calls`,
        value: `${m.ssmCalls} (${round(m.ssmCalls / m.size.instances)} per instance): ${Object.entries(
          m.ssmByOperation,
        )
          .map(([op, n]) => `${op} ${n}`)
          .join(', ')}`,
      },
      {
        label: `${label}: sends`,
        value: `${m.sends} SendCommand, ${m.batchRecords} batch records, max in flight ${m.maxInFlight}`,
      },
      {
        label: `${label}: process`,
        value: `RSS ${mib(m.rolloutRss)} MiB, event-loop delay p99 ${round(m.eventLoopP99Ms, 1)} ms, chat.update peak ${m.editsPeakPerMinute}/min`,
      },
    );
    if (m.events)
      rows.push({
        label: `${label}: events`,
        value: `${m.events.matched} matched the rule, ${m.events.delivered} delivered, ${m.events.lost} lost`,
      });
    targets.push(
      { label: `${label}: wall / ideal`, value: ratio, op: '<=', limit: m.mode === 'events' ? 1.25 : 1.6 },
      {
        label: `${label}: SSM calls per instance`,
        value: round(m.ssmCalls / m.size.instances),
        op: '<=',
        limit: 0.25,
      },
      { label: `${label}: SSM calls over the budget`, value: m.overBudget, op: '==', limit: 0 },
      {
        label: `${label}: max in flight over concurrency`,
        value: Math.max(0, m.maxInFlight - m.concurrency),
        op: '==',
        limit: 0,
      },
      {
        label: `${label}: deployed exactly once`,
        value: m.sentOnceSucceeded,
        op: '==',
        limit: m.size.instances,
      },
      {
        label: `${label}: event-loop delay p99 (ms)`,
        value: round(m.eventLoopP99Ms, 1),
        op: '<=',
        limit: 100,
      },
      {
        label: `${label}: chat.update in any minute`,
        value: m.editsPeakPerMinute,
        op: '<=',
        limit: config.rollout.slackUpdatesPerMinute,
      },
    );
  }
  for (const mode of new Set(all.map((m) => m.mode))) {
    const runs = all.filter((m) => m.mode === mode).sort((a, b) => a.size.instances - b.size.instances);
    const small = runs[0];
    const large = runs.at(-1);
    if (!small || !large || small === large) continue;
    const delta = mib(large.rolloutRss - small.rolloutRss);
    rows.push({
      label: `RSS ${large.size.instances} − ${small.size.instances} (${mode})`,
      value: `${delta} MiB`,
    });
    targets.push({
      label: `RSS ${large.size.instances} − ${small.size.instances} (${mode}, MiB)`,
      value: delta,
      op: '<=',
      limit: 50,
    });
  }
  rows.push({ label: 'bench total', value: `${seconds(benchMs)} s` });
  const indexReads = all.reduce((n, m) => n + m.ec2FromIndex, 0);
  return {
    scenario: name,
    title: `${name}: deploys with completion events and with adaptive polling, poll ${config.rollout.pollMs} ms, SSM budget ${budget}/s`,
    rows,
    targets,
    notes: [
      `EC2 reads came from the simulator's own fleet index (${indexReads} DescribeInstances), not moto: moto takes seconds per 1,000 instances.`,
      'Instances take 2.3–7.5 s each (seeded per instance id); RSS and event-loop delay are of the process running the rollout alone (bench/rollout-worker.ts).',
      'The events and polling runs of one size go at the same time, each in its own account, process and SSM budget; they share the CPUs.',
    ],
    json: {
      runs: all.map((m) => ({
        instances: m.size.instances,
        mode: m.mode,
        concurrency: m.concurrency,
        wallMs: Math.round(m.wallMs),
        idealMs: Math.round(m.idealMs),
        refillMs: Math.round(m.refillMs),
        sendFloorMs: Math.round(m.sendFloorMs),
        awsAloneMs: m.awsAloneMs === undefined ? null : Math.round(m.awsAloneMs),
        wallOverIdeal: round(m.wallMs / m.idealMs, 3),
        ssmCalls: m.ssmCalls,
        ssmByOperation: m.ssmByOperation,
        ssmCallsPerInstance: round(m.ssmCalls / m.size.instances),
        overBudget: m.overBudget,
        maxInFlight: m.maxInFlight,
        sends: m.sends,
        batchRecords: m.batchRecords,
        sentOnceSucceeded: m.sentOnceSucceeded,
        eventLoopP99Ms: round(m.eventLoopP99Ms, 1),
        rolloutRssBytes: m.rolloutRss,
        editsPeakPerMinute: m.editsPeakPerMinute,
        events: m.events ?? null,
      })),
      ssmBudgetPerSecond: budget,
      benchMs: Math.round(benchMs),
    },
  };
}
