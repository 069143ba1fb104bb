/**
 * A successful deploy to a fleet of 1,000 instances with the service's defaults (poll interval,
 * concurrency, SSM budget), driven through `processRollout` with the real fleet, Run Command client,
 * Redis pacer and cancel flag, against moto + the AWS simulator. The numbers come from the
 * simulator's side of the wire: its call log and the invocations it was sent.
 */
import { CreateTagsCommand, EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { SSMClient } from '@aws-sdk/client-ssm';
import { createFleet } from '../src/aws/fleet.js';
import { createRunCommand } from '../src/aws/run-command.js';
import { type Env, loadConfig } from '../src/config.js';
import { planRollout } from '../src/core/rollout.js';
import type { RolloutPayload } from '../src/jobs/queues.js';
import { processRollout, type RolloutSummary } from '../src/jobs/rollout.js';
import { createLogger } from '../src/log.js';
import { createPlans, newPlanId } from '../src/store/plans.js';
import { createPacer } from '../src/store/rate-limits.js';
import { testAccountId, withAccount } from '../test/peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../test/peers/aws-simulator.js';
import { type MotoServer, startMoto } from '../test/peers/moto.js';
import { dropPrefix, testRedis, uniquePrefix } from '../test/peers/redis.js';
import { countThrottled } from '../test/support/token-bucket.js';
import {
  countBy,
  maxOverlap,
  mib,
  minGap,
  peakInWindow,
  peakRssOf,
  round,
  rssSampler,
  seconds,
  seededDraws,
} from './measure.js';
import type { Scenario, ScenarioResult, Target } from './scenario.js';

const region = 'us-east-1';
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
/** RunInstances per call; moto answers 100 in about a second. */
const launchChunk = 100;
/** CreateTags calls in flight at once while giving each instance its own user. */
const tagParallel = 8;
/** A hung rollout fails the bench instead of holding a CI job forever. */
const deadlineMs = 15 * 60_000;

/** How one instance's deploy goes: picked up after a moment, done a few seconds later. */
function outcomeFor(instanceId: string): { pendingMs: number; afterMs: number } {
  const draw = seededDraws(instanceId);
  const pendingMs = 300 + Math.floor(draw() * 1200);
  return { pendingMs, afterMs: pendingMs + 2000 + Math.floor(draw() * 4000) };
}

const timedMs = async <T>(work: () => Promise<T>): Promise<[T, number]> => {
  const started = performance.now();
  const value = await work();
  return [value, performance.now() - started];
};

/** `env` overrides configuration keys (as the service would read them) for a variant scenario. */
export function rolloutScenario(options: { name: string; instances: number; env?: Env }): Scenario {
  return {
    name: options.name,
    description: `deploy to ${options.instances} instances with ${options.env ? 'overridden' : 'the default'} rollout settings`,
    run: (say) => runRollout(options, say),
  };
}

export const rollout1000 = rolloutScenario({ name: 'rollout-1000', instances: 1000 });

async function runRollout(
  options: { name: string; instances: number; env?: Env },
  say: (line: string) => void,
): Promise<ScenarioResult> {
  const benchStarted = performance.now();
  // The service's own defaults, read the way the service reads them.
  const config = loadConfig({ AWS_REGION: region, ...options.env }, { roles: ['worker'] });
  const { pollMs, ssmRequestsPerSecond: budget, defaultConcurrency, defaultMaxErrors } = config.rollout;
  const instances = options.instances;

  const redis = testRedis();
  const prefix = uniquePrefix('bench');
  let moto: MotoServer | undefined;
  let simulator: AwsSimulator | undefined;
  try {
    const [startedMoto, motoStartMs] = await timedMs(() => startMoto());
    moto = startedMoto;
    // EC2 and SSM live in two simulator accounts (an account is only a state namespace there):
    // SendCommand checks the ids against every moto instance of its account, which would rescan
    // 1,000 instances in moto on each send. The SSM account knows the same ids as registered instances.
    const ec2Account = testAccountId();
    const ssmAccount = testAccountId();
    simulator = await startAwsSimulator({ motoUrl: moto.url, defaultAccountId: ec2Account });
    const sim = simulator;
    const ec2 = new EC2Client({ region, endpoint: sim.url, credentials });
    const ssm = withAccount(new SSMClient({ region, endpoint: sim.url, credentials }), ssmAccount);

    say(`moto up in ${seconds(motoStartMs)} s; launching ${instances} instances in chunks of ${launchChunk}`);
    const ids: string[] = [];
    const [, launchMs] = await timedMs(async () => {
      for (let n = 0; n < instances; n += launchChunk) {
        const count = Math.min(launchChunk, instances - n);
        const res = await ec2.send(
          new RunInstancesCommand({
            ImageId: 'ami-12c6146b',
            MinCount: count,
            MaxCount: count,
            TagSpecifications: [
              {
                ResourceType: 'instance',
                Tags: [
                  { Key: 'app', Value: 'fleetbot' },
                  { Key: 'env', Value: config.env },
                ],
              },
            ],
          }),
        );
        for (const i of res.Instances ?? []) if (i.InstanceId) ids.push(i.InstanceId);
      }
    });
    if (ids.length !== instances) throw new Error(`moto launched ${ids.length} of ${instances} instances`);
    // One member per server, as in production: each instance gets its own user tag.
    const [, tagMs] = await timedMs(async () => {
      let next = 0;
      await Promise.all(
        Array.from({ length: tagParallel }, async () => {
          for (let i = next++; i < ids.length; i = next++)
            await ec2.send(
              new CreateTagsCommand({
                Resources: [ids[i] ?? ''],
                Tags: [{ Key: 'user', Value: String(50_000 + i) }],
              }),
            );
        }),
      );
    });
    say(`launched in ${seconds(launchMs)} s, tagged in ${seconds(tagMs)} s`);
    const motoDescribeMs = await describeInMoto(moto.url, ec2Account, config.env);
    say(`moto DescribeInstances (fleet filters, ${instances} instances): ${seconds(motoDescribeMs)} s`);

    for (const id of ids) sim.control.registerInstance(ssmAccount, id);
    sim.control.scriptRunCommand(ssmAccount, '*', (_document, _parameters, instanceId) => ({
      status: 'Success',
      output: 'deployed',
      ...outcomeFor(instanceId),
    }));

    // Real deps, instrumented only to time the calls they make.
    const fleet = createFleet(ec2, { region, env: config.env, ...config.instances });
    const listMs: number[] = [];
    const runCommand = createRunCommand(ssm);
    const ssmLatency: Record<string, number[]> = {};
    const timedSsm =
      <A extends unknown[], R>(op: string, call: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        const [value, ms] = await timedMs(() => call(...args));
        ssmLatency[op] = [...(ssmLatency[op] ?? []), ms];
        return value;
      };
    const edits: { at: number; text: string }[] = [];
    const warnings: string[] = [];
    const log = createLogger('warn', {
      write: (line: string) => {
        warnings.push(line);
      },
    });
    const plans = createPlans(redis, prefix);
    // When the pacer let each SSM call go, to tell its spacing apart from what reached the simulator.
    const pacer = createPacer(redis, `${prefix}:pace:ssm`, budget);
    const releases: number[] = [];

    const planId = newPlanId();
    let saved: RolloutPayload = {
      planId,
      request: {
        operation: 'deploy',
        version: 'v9.9.9',
        reboot: 'never',
        targets: 'all',
        concurrency: defaultConcurrency,
        maxErrors: defaultMaxErrors,
        canary: 0,
      },
      requestedBy: 'UBENCH',
      approvedBy: 'UBENCH',
      message: { platform: 'console', chatId: 'bench', messageId: '1' },
      startedAt: Date.now(),
    };
    let writes = 0;
    sim.control.resetCalls();

    say(`rolling out: poll ${pollMs} ms, concurrency ${defaultConcurrency}, SSM budget ${budget}/s`);
    const rss = rssSampler();
    const rolloutStartedAt = Date.now();
    const deadline = new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`rollout still running after ${deadlineMs / 1000} s`)),
        deadlineMs,
      ).unref(),
    );
    const [summary, wallMs] = await timedMs(() =>
      Promise.race([
        processRollout(
          {
            id: `rollout-${planId}`,
            data: saved,
            updateData: async (data) => {
              writes++;
              saved = structuredClone(data);
            },
          },
          {
            fleet: {
              ...fleet,
              list: async () => {
                const [found, ms] = await timedMs(() => fleet.list());
                listMs.push(ms);
                return found;
              },
            },
            runCommand: {
              ...runCommand,
              sendBatch: timedSsm('SendCommand', runCommand.sendBatch),
              listInvocations: timedSsm('ListCommandInvocations', runCommand.listInvocations),
            },
            ssmPacer: {
              wait: async () => {
                await pacer.wait();
                releases.push(Date.now());
              },
            },
            editBudget: { tryTake: async () => true, take: async () => {} },
            isCancelled: (jobId) => plans.isCancelled(jobId),
            outboxes: {
              console: {
                send: async () => undefined,
                edit: async (_ref, message) => {
                  edits.push({ at: Date.now(), text: message.text });
                },
              },
            },
            settings: {
              pollMs,
              commandTimeoutSeconds: config.rollout.commandTimeoutSeconds,
              deployDocument: config.rollout.deployDocument,
              // As the worker wires it in src/main.ts.
              editIntervalMs: 3000,
            },
            log,
          },
        ),
        deadline,
      ]),
    );
    const rolloutRss = rss.stop();
    say(`rollout ${summary.outcome} in ${seconds(wallMs)} s`);

    return report({
      name: options.name,
      instances,
      config: { pollMs, budget, defaultConcurrency, defaultMaxErrors },
      summary,
      saved,
      writes,
      edits: edits.length,
      warnings,
      wallMs,
      rolloutStartedAt,
      listMs,
      ssmLatency,
      releases,
      ssmCalls: sim.control.calls(ssmAccount),
      ec2Calls: sim.control.calls(ec2Account),
      invocations: sim.control.invocations(ssmAccount),
      setup: { motoStartMs, launchMs, tagMs, motoDescribeMs },
      rss: {
        processPeak: process.resourceUsage().maxRSS * 1024,
        rolloutPeak: rolloutRss,
        motoPeak: await peakRssOf(moto.pid),
      },
      benchMs: performance.now() - benchStarted,
    });
  } finally {
    await simulator?.close();
    await moto?.stop();
    await dropPrefix(redis, prefix);
    await redis.quit();
  }
}

/** The same DescribeInstances the fleet sends, straight to moto: how much of a fleet listing is moto's. */
async function describeInMoto(motoUrl: string, accountId: string, env: string): Promise<number> {
  const form = new URLSearchParams({
    Action: 'DescribeInstances',
    Version: '2016-11-15',
    'Filter.1.Name': 'tag:app',
    'Filter.1.Value.1': 'fleetbot',
    'Filter.2.Name': 'tag:env',
    'Filter.2.Value.1': env,
  });
  const [, ms] = await timedMs(async () => {
    const res = await fetch(motoUrl, {
      method: 'POST',
      body: form.toString(),
      headers: {
        'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        // moto routes by the credential scope and does not check signatures.
        authorization: `AWS4-HMAC-SHA256 Credential=testing/20240101/${region}/ec2/aws4_request, SignedHeaders=host, Signature=0`,
        'x-moto-account-id': accountId,
      },
    });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`moto DescribeInstances answered ${res.status}`);
  });
  return ms;
}

interface Recorded {
  name: string;
  instances: number;
  config: { pollMs: number; budget: number; defaultConcurrency: string; defaultMaxErrors: string };
  summary: RolloutSummary;
  saved: RolloutPayload;
  writes: number;
  edits: number;
  warnings: string[];
  wallMs: number;
  rolloutStartedAt: number;
  listMs: number[];
  ssmLatency: Record<string, number[]>;
  releases: number[];
  ssmCalls: { at: number; service: string; operation: string; status: number }[];
  ec2Calls: { at: number; operation: string }[];
  invocations: { instanceId: string; requestedAt: number; status: string }[];
  setup: { motoStartMs: number; launchMs: number; tagMs: number; motoDescribeMs: number };
  rss: { processPeak: number; rolloutPeak: number; motoPeak: number | undefined };
  benchMs: number;
}

function report(r: Recorded): ScenarioResult {
  const { instances, config } = r;
  const batches = r.saved.batches ?? [];
  // The concurrency the job ran at, worked out by the job's own rule.
  const { concurrency } = planRollout(
    { concurrency: config.defaultConcurrency, maxErrors: config.defaultMaxErrors, canary: 0 },
    batches.flatMap((b) => b.instanceIds),
  );
  const batchSize = Math.max(...batches.map((b) => b.instanceIds.length));
  const ssmCalls = r.ssmCalls.filter((c) => c.service === 'ssm');
  const byOperation = countBy(ssmCalls, (c) => c.operation);
  const perInstance = round(ssmCalls.length / instances);
  const times = ssmCalls.map((c) => c.at);
  const peak = peakInWindow(times, 1000);
  const gap = minGap(times);
  const densest = ssmCalls
    .filter((c) => peak.startsAt !== undefined && c.at >= peak.startsAt && c.at < peak.startsAt + 1000)
    .map(
      (c) =>
        `+${c.at - (peak.startsAt ?? 0)} ${c.operation.replace('ListCommandInvocations', 'List').replace('SendCommand', 'Send')}`,
    )
    .join(', ');
  const releasePeak = peakInWindow(r.releases, 1000);
  const releaseGap = minGap(r.releases);
  const throttledOrFailed = ssmCalls.filter((c) => c.status !== 200).length;

  const intervals = r.invocations.map((inv) => {
    const { pendingMs, afterMs } = outcomeFor(inv.instanceId);
    return { start: inv.requestedAt, end: inv.requestedAt + Math.max(pendingMs, afterMs) };
  });
  const inFlight = maxOverlap(intervals);
  const perInstanceSends = countBy(r.invocations, (inv) => inv.instanceId);
  const sentOnceAndSucceeded = new Set(
    r.invocations
      .filter((inv) => perInstanceSends[inv.instanceId] === 1 && inv.status === 'Success')
      .map((inv) => inv.instanceId),
  ).size;

  const describes = r.ec2Calls.filter(
    (c) => c.at >= r.rolloutStartedAt && c.operation === 'DescribeInstances',
  );
  const firstSend = ssmCalls.find((c) => c.operation === 'SendCommand')?.at;
  const waves = Math.ceil(batches.length / Math.max(1, Math.floor(concurrency / batchSize)));
  const latency = Object.fromEntries(
    Object.entries(r.ssmLatency).map(([op, ms]) => [
      op,
      { mean: Math.round(ms.reduce((a, b) => a + b, 0) / ms.length), max: Math.round(Math.max(...ms)) },
    ]),
  );

  const targets: Target[] = [
    { label: 'SSM calls per instance', value: perInstance, op: '<=', limit: 0.25 },
    // As AWS meters it: a bucket of one second's worth of budget, refilled at the budget. (A strict
    // 1-s window can hold budget + 1 calls spaced exactly at the budget, plus arrival jitter.)
    {
      label: 'SSM calls over the budget (token bucket)',
      value: countThrottled(times, config.budget),
      op: '==',
      limit: 0,
    },
    { label: 'max instances in flight', value: inFlight.count, op: '<=', limit: concurrency },
    { label: 'succeeded (rollout summary)', value: r.summary.counts.succeeded, op: '==', limit: instances },
    { label: 'sent once, succeeded (simulator)', value: sentOnceAndSucceeded, op: '==', limit: instances },
  ];
  const opList = Object.entries(byOperation)
    .map(([op, n]) => `${op} ${n}`)
    .join(', ');
  const rows = [
    { label: 'wall time (processRollout)', value: `${seconds(r.wallMs)} s` },
    {
      label: '  of which poll sleeps (floor)',
      value: `${waves} waves x ${config.pollMs / 1000} s = ${seconds(waves * config.pollMs)} s`,
    },
    {
      label: '  plan: start to first send',
      value: firstSend === undefined ? '-' : `${seconds(firstSend - r.rolloutStartedAt)} s`,
    },
    {
      label: '  fleet listings (EC2)',
      value: `${describes.length} DescribeInstances, ${r.listMs.map((ms) => `${seconds(ms)} s`).join(' + ')}`,
    },
    { label: 'instances', value: String(instances) },
    { label: 'batches', value: `${batches.length} of <= ${batchSize}` },
    { label: 'outcome', value: `${r.summary.outcome} (${r.summary.counts.succeeded} succeeded)` },
    { label: 'SSM calls', value: `${ssmCalls.length}: ${opList}` },
    { label: 'SSM calls not answered 200', value: String(throttledOrFailed) },
    {
      label: 'SSM latency (mean / max)',
      value: Object.entries(latency)
        .map(([op, l]) => `${op} ${l.mean} / ${l.max} ms`)
        .join(', '),
    },
    {
      label: 'SSM calls at the simulator',
      value: `peak ${peak.count} in 1 s, min gap ${Number.isFinite(gap) ? `${gap} ms` : '-'}`,
    },
    { label: '  densest 1 s (ms)', value: densest || '-' },
    {
      label: 'SSM pacer releases',
      value: `peak ${releasePeak.count} in 1 s, min gap ${Number.isFinite(releaseGap) ? `${releaseGap} ms` : '-'} (spacing ${Math.ceil(1000 / config.budget)} ms)`,
    },
    { label: 'job record writes', value: String(r.writes) },
    { label: 'progress edits', value: String(r.edits) },
    { label: 'warnings logged', value: String(r.warnings.length) },
    {
      label: 'peak RSS',
      value: `${mib(r.rss.processPeak)} MiB bench process (fleetbot + simulator), ${mib(r.rss.rolloutPeak)} MiB during the rollout${r.rss.motoPeak ? `; moto ${mib(r.rss.motoPeak)} MiB` : ''}`,
    },
    {
      label: 'setup (moto)',
      value: `start ${seconds(r.setup.motoStartMs)} s, RunInstances x${Math.ceil(instances / launchChunk)} ${seconds(r.setup.launchMs)} s, CreateTags x${instances} ${seconds(r.setup.tagMs)} s, DescribeInstances ${seconds(r.setup.motoDescribeMs)} s`,
    },
    { label: 'bench total', value: `${seconds(r.benchMs)} s` },
  ];
  const notes = r.warnings.slice(0, 5).map((w) => `warning logged: ${w.trim().slice(0, 300)}`);

  return {
    scenario: r.name,
    title: `${r.name}: deploy to ${instances} instances, poll ${config.pollMs} ms, concurrency ${config.defaultConcurrency} (${concurrency}), max errors ${config.defaultMaxErrors}, SSM budget ${config.budget}/s`,
    rows,
    targets,
    notes,
    json: {
      instances,
      pollMs: config.pollMs,
      concurrency,
      ssmBudgetPerSecond: config.budget,
      wallMs: Math.round(r.wallMs),
      pollFloorMs: waves * config.pollMs,
      firstSendMs: firstSend === undefined ? null : firstSend - r.rolloutStartedAt,
      fleetListMs: r.listMs.map(Math.round),
      batches: batches.length,
      outcome: r.summary.outcome,
      succeeded: r.summary.counts.succeeded,
      ssmCalls: ssmCalls.length,
      ssmCallsByOperation: byOperation,
      ssmCallsPerInstance: perInstance,
      ssmNon200: throttledOrFailed,
      ssmLatencyMs: latency,
      peakSsmPerSecond: peak.count,
      minSsmGapMs: Number.isFinite(gap) ? gap : null,
      densestSsmSecond: densest,
      peakPacerReleasesPerSecond: releasePeak.count,
      minPacerReleaseGapMs: Number.isFinite(releaseGap) ? releaseGap : null,
      maxInFlight: inFlight.count,
      sentOnceAndSucceeded,
      recordWrites: r.writes,
      progressEdits: r.edits,
      warnings: r.warnings.length,
      peakRssBytes: r.rss.processPeak,
      rolloutPeakRssBytes: r.rss.rolloutPeak,
      motoPeakRssBytes: r.rss.motoPeak ?? null,
      setupMs: Object.fromEntries(Object.entries(r.setup).map(([k, v]) => [k, Math.round(v)])),
      benchMs: Math.round(r.benchMs),
    },
  };
}
