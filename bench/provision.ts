/**
 * Members send /provision at once through the fake Telegram Bot API to a real fleetbot (grammY bot,
 * BullMQ provision worker, Redis, the SDK's EC2 and SSM clients against moto + the AWS simulator),
 * each followed to "ready" in the message the job edits. Instances boot for a few seconds in the
 * simulator. The numbers come from the simulator's call log and the edits the fake Bot API recorded.
 */

import { availableParallelism } from 'node:os';
import { DescribeInstancesCommand, EC2Client, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import type { Env } from '../src/config.js';
import { withAccount } from '../test/peers/aws-account.js';
import type { CallRecord, SentInvocation } from '../test/peers/aws-simulator.js';
import { countThrottled } from '../test/support/token-bucket.js';
import { countBy, cpuMsOf, minGap, peakInWindow, percentile, round, seconds } from './measure.js';
import type { Scenario, ScenarioResult, Target } from './scenario.js';
import {
  type ChatStage,
  fleetbotToken,
  inParallel,
  maxOf,
  memberIds,
  ms,
  openStage,
  pacerSlots,
  secs,
  settle,
  stallMonitor,
  warningsIn,
} from './telegram-members.js';

export interface ProvisionSizes {
  name?: string;
  members?: number;
  /** How long a new instance is pending, then initializing (status checks not yet ok). */
  boot?: { pendingMs: number; initializingMs: number };
  /** fleetbot configuration keys (LAUNCHES_PER_SECOND, PROVISION_POLL_MS…); the service's defaults otherwise. */
  env?: Env;
}

const defaultBoot = { pendingMs: 2000, initializingMs: 3000 };
/** Member ids start here; any numbers do. */
const firstMember = 810_000;
/** How far past the launch-pacing floor the bench waits before it gives up on the stragglers. */
const graceMs = 180_000;
const readyPrefix = 'Your server is ready';
/** The last words of a provision that failed (src/jobs/provision.ts settleFailure). */
const failedSuffix = 'You can try /provision again later.';

export function provisionScenario(sizes: ProvisionSizes = {}): Scenario {
  const members = sizes.members ?? 200;
  const name = sizes.name ?? `provision-${members}`;
  return {
    name,
    description: `${members} members send /provision at once to fleetbot (bot + worker process), followed to ready`,
    run: (say) => runProvision({ name, members, boot: sizes.boot ?? defaultBoot, env: sizes.env }, say),
  };
}

export const provision200 = provisionScenario();

interface Options {
  name: string;
  members: number;
  boot: { pendingMs: number; initializingMs: number };
  env?: Env;
}

async function runProvision(options: Options, say: (line: string) => void): Promise<ScenarioResult> {
  const benchStarted = performance.now();
  const ids = memberIds(options.members, firstMember);
  const stage = await openStage({ label: 'bench-provision', members: ids, env: options.env, say });
  try {
    const { config, simulator, accountId, telegram } = stage;
    const sim = simulator.control;
    const { pollMs, launchesPerSecond, requiredSecrets, bootstrapCheckDocument } = config.provisioning;

    // What /provision needs: every required secret stored for every member.
    const [, secretsMs] = await timed(() =>
      inParallel(
        ids.flatMap((userId) => requiredSecrets.map((kind) => ({ userId, kind }))),
        8,
        async ({ userId, kind }) => {
          await stage.ssm.send(
            new PutParameterCommand({
              Name: `/${config.aws.parameterPrefix}/users/${userId}/${kind}`,
              Value: `bench-${kind}-${userId}`,
              Type: 'SecureString',
            }),
          );
        },
      ),
    );
    say(`stored ${ids.length * requiredSecrets.length} secrets in ${seconds(secretsMs)} s`);

    sim.setBootTiming(accountId, options.boot);
    // The bootstrap finished while the status checks were still initializing, as on a real boot,
    // so the first bootstrap check finds the sentinel: the instance is ready once its checks pass.
    sim.scriptRunCommand(accountId, '*', (document) =>
      document === bootstrapCheckDocument
        ? { status: 'Success', output: 'bootstrap: done\n', pendingMs: 200, afterMs: 500 }
        : { status: 'Success' },
    );
    sim.resetCalls(accountId);
    const editsBefore = telegram.calls(fleetbotToken).length;

    say(
      `${ids.length} x /provision: launches ${launchesPerSecond}/s (floor ${seconds((ids.length / launchesPerSecond) * 1000)} s), poll ${pollMs} ms, boot ${options.boot.pendingMs} + ${options.boot.initializingMs} ms`,
    );
    const cpuBefore = await cpuUse(stage);
    const stalls = stallMonitor();
    const registrar = registerLaunches(stage);
    const burstAt = Date.now();
    const sentAt = new Map<number, number>();
    const open = new Set(ids);
    let finished: boolean;
    try {
      for (const userId of ids) {
        sentAt.set(userId, Date.now());
        telegram.sendUserMessage(fleetbotToken, { userId, text: '/provision', firstName: 'Member' });
      }
      // One look per second at each open chat (cheap); the fake's waitFor would re-read all of them
      // on every call fleetbot makes.
      const floorMs = (ids.length / launchesPerSecond) * 1000;
      let lastSaid = Date.now();
      finished = await settle(
        () => {
          for (const userId of open) {
            const texts = telegram.chat(fleetbotToken, userId).messages.map((m) => m.text ?? '');
            if (texts.some((t) => t.startsWith(readyPrefix) || t.endsWith(failedSuffix))) open.delete(userId);
            else if (texts.length > 0 && !texts.some((t) => t.startsWith('Setting up your server')))
              open.delete(userId); // refused: its answer is all it gets
          }
          if (Date.now() - lastSaid > 15_000) {
            lastSaid = Date.now();
            say(`${ids.length - open.size} of ${ids.length} done after ${seconds(Date.now() - burstAt)} s`);
          }
          return open.size === 0;
        },
        floorMs + graceMs,
        1000,
      );
    } finally {
      await registrar.stop();
    }
    const stallMs = stalls.stop();
    const cpuAfter = await cpuUse(stage);
    if (!finished) say(`gave up waiting: ${open.size} members not done`);
    // Read before the bench's own EC2 reads below, which go through the simulator too.
    const calls = sim.calls(accountId);

    return report({
      options,
      stage,
      ids,
      sentAt,
      burstAt,
      calls,
      invocations: sim.invocations(accountId),
      botCalls: telegram.calls(fleetbotToken).slice(editsBefore),
      owners: await instanceOwners(stage),
      settings: { pollMs, launchesPerSecond, bootstrapCheckDocument },
      setup: { secretsMs },
      stallMs,
      cpu: { fleetbot: cpuAfter.fleetbot - cpuBefore.fleetbot, moto: cpuAfter.moto - cpuBefore.moto },
      benchStartedAt: benchStarted,
    });
  } finally {
    await stage.close();
  }
}

/**
 * The simulator knows SSM-managed nodes from one moto DescribeInstances, which moto answers with its
 * first page only (100 reservations), so from the 101st single-instance launch on SendCommand would
 * refuse the new instance and its bootstrap check would never run. Each launched instance is
 * registered with the simulator as it appears, as its agent would register with SSM; the lookup goes
 * to moto directly, so it stays out of the call log the scenario measures.
 */
function registerLaunches(stage: ChatStage): { stop(): Promise<void> } {
  const { simulator, accountId } = stage;
  const motoEc2 = withAccount(
    new EC2Client({
      region: stage.config.aws.region,
      endpoint: stage.moto.url,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    }),
    accountId,
  );
  const seen = new Set<string>();
  let stopped = false;
  const registerNew = async () => {
    const users = simulator.control
      .calls(accountId, 'RunInstances')
      .filter((c) => c.status === 200)
      .map(launchedFor)
      .filter((u): u is string => u !== undefined && !seen.has(u));
    // EC2 takes at most 200 values in one filter.
    for (let i = 0; i < users.length; i += 200) {
      const res = await motoEc2.send(
        new DescribeInstancesCommand({
          Filters: [{ Name: 'tag:user', Values: users.slice(i, i + 200) }],
          MaxResults: 1000,
        }),
      );
      for (const r of res.Reservations ?? [])
        for (const instance of r.Instances ?? []) {
          const user = instance.Tags?.find((t) => t.Key === 'user')?.Value;
          if (!instance.InstanceId || !user) continue;
          simulator.control.registerInstance(accountId, instance.InstanceId);
          seen.add(user);
        }
    }
  };
  const loop = (async () => {
    while (!stopped) {
      // A failed look is tried again on the next round; the bootstrap check comes seconds later.
      await registerNew().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      motoEc2.destroy();
    },
  };
}

async function cpuUse(stage: ChatStage) {
  return {
    fleetbot: ((await cpuMsOf(stage.fleetbot.child.pid)) ?? Number.NaN) / 1000,
    moto: ((await cpuMsOf(stage.moto.pid)) ?? Number.NaN) / 1000,
  };
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await work();
  return [value, performance.now() - started];
}

/** Every live fleet instance, by owner: the bench reads EC2 once the run is over. */
async function instanceOwners(stage: ChatStage): Promise<Map<string, { id: string; user: string }[]>> {
  const owners = new Map<string, { id: string; user: string }[]>();
  for await (const page of paginateDescribeInstances(
    { client: stage.ec2 },
    { Filters: [{ Name: 'tag:app', Values: ['fleetbot'] }] },
  ))
    for (const r of page.Reservations ?? [])
      for (const i of r.Instances ?? []) {
        const user = i.Tags?.find((t) => t.Key === 'user')?.Value;
        if (!i.InstanceId || !user || ['terminated', 'shutting-down'].includes(i.State?.Name ?? '')) continue;
        owners.set(user, [...(owners.get(user) ?? []), { id: i.InstanceId, user }]);
      }
  return owners;
}

/** The user tag a RunInstances request carried (its flat Query form: TagSpecification.N.Tag.M.Key). */
function launchedFor(call: CallRecord): string | undefined {
  for (const [key, value] of Object.entries(call.params)) {
    const m = /^(TagSpecification\.\d+\.Tag\.\d+)\.Key$/.exec(key);
    if (m && value === 'user') return String(call.params[`${m[1]}.Value`]);
  }
  return undefined;
}

/** DescribeInstanceStatus calls split into poll ticks: a tick's calls follow each other at once. */
function ticksOf(statusCalls: CallRecord[], pollMs: number) {
  const ticks: { at: number; calls: number; ids: number }[] = [];
  let last = Number.NEGATIVE_INFINITY;
  for (const call of [...statusCalls].sort((a, b) => a.at - b.at)) {
    const ids = Object.keys(call.params).filter((k) => k.startsWith('InstanceId.')).length;
    const tick = ticks.at(-1);
    if (tick && call.at - last < pollMs / 2) {
      tick.calls++;
      tick.ids += ids;
    } else ticks.push({ at: call.at, calls: 1, ids });
    last = call.at;
  }
  return ticks;
}

interface Recorded {
  options: Options;
  stage: ChatStage;
  ids: number[];
  sentAt: Map<number, number>;
  burstAt: number;
  calls: CallRecord[];
  invocations: SentInvocation[];
  botCalls: ReturnType<ChatStage['telegram']['calls']>;
  owners: Map<string, { id: string; user: string }[]>;
  settings: { pollMs: number; launchesPerSecond: number; bootstrapCheckDocument: string };
  setup: { secretsMs: number };
  stallMs: number;
  /** CPU seconds each process used from the burst to the last answer. */
  cpu: { fleetbot: number; moto: number };
  benchStartedAt: number;
}

function report(r: Recorded): ScenarioResult {
  const { options, ids, settings } = r;
  const { pollMs, launchesPerSecond } = settings;
  const bootMs = options.boot.pendingMs + options.boot.initializingMs;
  const calls = r.calls.filter((c) => c.at >= r.burstAt);

  // Launches: what reached the simulator, and what fleetbot's shared pacer scheduled.
  const runs = calls.filter((c) => c.operation === 'RunInstances');
  const launched = runs.filter((c) => c.status === 200);
  const launchTimes = launched.map((c) => c.at);
  const launchPeak = peakInWindow(launchTimes, 1000);
  const launchGap = minGap(launchTimes);
  const overBucket = countThrottled(launchTimes, launchesPerSecond);
  const slots = pacerSlots(r.stage.logs(), `${r.stage.prefix}:pace:run-instances`);
  const slotGap = minGap(slots);
  const launchAt = new Map<string, number>();
  for (const c of launched) {
    const user = launchedFor(c);
    if (user && !launchAt.has(user)) launchAt.set(user, c.at);
  }

  // Status polls: one batched DescribeInstanceStatus per tick (EC2 takes 100 ids a call).
  const ticks = ticksOf(
    calls.filter((c) => c.operation === 'DescribeInstanceStatus'),
    pollMs,
  );
  const maxCallsPerTick = Math.max(0, ...ticks.map((t) => t.calls));
  const maxIdsPerTick = Math.max(0, ...ticks.map((t) => t.ids));
  const overBatch = Math.max(0, ...ticks.map((t) => t.calls - Math.max(1, Math.ceil(t.ids / 100))));
  const tickSpacing = ticks.slice(1).map((t, i) => t.at - (ticks[i]?.at ?? 0));

  // The bootstrap check is sent the moment the job saw the status checks pass.
  const instanceUser = new Map<string, string>();
  for (const list of r.owners.values()) for (const i of list) instanceUser.set(i.id, i.user);
  const checkSentAt = new Map<string, number>();
  for (const c of calls)
    if (
      c.operation === 'SendCommand' &&
      c.status === 200 &&
      c.params.DocumentName === settings.bootstrapCheckDocument
    )
      for (const id of (c.params.InstanceIds as string[] | undefined) ?? []) {
        const user = instanceUser.get(id);
        if (user && !checkSentAt.has(user)) checkSentAt.set(user, c.at);
      }

  // When the simulator accepted each check: it looks every instance up in moto first.
  const checkAcceptedAt = new Map<string, number>();
  for (const inv of r.invocations)
    if (inv.documentName === settings.bootstrapCheckDocument) {
      const user = instanceUser.get(inv.instanceId);
      if (user && !checkAcceptedAt.has(user)) checkAcceptedAt.set(user, inv.requestedAt);
    }
  // The last read of each instance's invocation: the one that found the check done.
  const checkReadAt = new Map<string, number>();
  for (const c of calls)
    if (c.operation === 'GetCommandInvocation' && c.status === 200) {
      const user = instanceUser.get(String(c.params.InstanceId ?? ''));
      if (user) checkReadAt.set(user, c.at);
    }

  // Per member, from the fake Bot API: the first answer, and the edit that said "ready".
  const firstAnswerAt = new Map<string, number>();
  const readyAt = new Map<string, number>();
  const failed: string[] = [];
  for (const c of r.botCalls) {
    const chat = String(c.params.chat_id ?? '');
    const text = String(c.params.text ?? '');
    if (c.method === 'sendMessage' && !firstAnswerAt.has(chat)) firstAnswerAt.set(chat, c.at);
    if (c.method === 'editMessageText' && c.response?.ok) {
      if (text.startsWith(readyPrefix) && !readyAt.has(chat)) readyAt.set(chat, c.at);
      if (text.endsWith(failedSuffix)) failed.push(`${chat}: ${text.split('\n')[0]}`);
    }
  }
  const lastReady = Math.max(r.burstAt, ...readyAt.values());
  const wallMs = lastReady - r.burstAt;
  const floorMs = (ids.length / launchesPerSecond) * 1000;

  // Ready lag: the "ready" edit against the moment the simulator had the instance ready (its status
  // checks ok; the bootstrap was done by then). The boot clock starts when moto has answered
  // RunInstances, a moment after the call's arrival used here, so lags are if anything overstated.
  // Split at the bootstrap check's SendCommand: the status polls' share, then the check's.
  const lagLimitMs = pollMs + 2000;
  const lags: {
    user: string;
    lag: number;
    seen: number;
    check: number;
    accept: number;
    read: number;
    edit: number;
  }[] = [];
  for (const userId of ids) {
    const user = String(userId);
    const launchedAt = launchAt.get(user);
    const ready = readyAt.get(user);
    if (launchedAt === undefined || ready === undefined) continue;
    const simReady = launchedAt + bootMs;
    const sent = checkSentAt.get(user);
    const accepted = checkAcceptedAt.get(user);
    const read = checkReadAt.get(user);
    const between = (from: number | undefined, to: number | undefined) =>
      from === undefined || to === undefined ? Number.NaN : to - from;
    lags.push({
      user,
      lag: ready - simReady,
      seen: between(simReady, sent),
      check: between(sent, ready),
      accept: between(sent, accepted),
      read: between(accepted, read),
      edit: between(read, ready),
    });
  }
  const lagValues = lags.map((l) => l.lag);
  const worstLag = Math.max(0, ...lagValues);
  const lateCount = lags.filter((l) => l.lag > lagLimitMs).length;
  const seenLags = lags.map((l) => l.seen).filter(Number.isFinite);
  const checkStage = lags.map((l) => l.check).filter(Number.isFinite);
  const checkAccept = lags.map((l) => l.accept).filter(Number.isFinite);
  const checkRead = lags.map((l) => l.read).filter(Number.isFinite);
  const readToEdit = lags.map((l) => l.edit).filter(Number.isFinite);

  const answerLags = ids.flatMap((u) => {
    const at = firstAnswerAt.get(String(u));
    const sent = r.sentAt.get(u);
    return at === undefined || sent === undefined ? [] : [at - sent];
  });
  const queueWaits = ids.flatMap((u) => {
    const at = launchAt.get(String(u));
    const sent = r.sentAt.get(u);
    return at === undefined || sent === undefined ? [] : [at - sent];
  });

  const exactlyOne = ids.filter((u) => (r.owners.get(String(u)) ?? []).length === 1).length;
  const byOperation = countBy(calls, (c) => `${c.service}:${c.operation}`);
  const perMember = Object.fromEntries(
    Object.entries(byOperation)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([op, n]) => [op, round(n / ids.length, 2)]),
  );
  const non200 = countBy(
    calls.filter((c) => c.status !== 200),
    (c) => `${c.operation} ${c.status}`,
  );
  const edits = r.botCalls.filter((c) => c.method === 'editMessageText').length;
  const warnings = warningsIn(r.stage.logs());
  const benchMs = performance.now() - r.benchStartedAt;

  const targets: Target[] = [
    { label: 'members whose message reached ready', value: readyAt.size, op: '==', limit: ids.length },
    { label: 'members with exactly one instance', value: exactlyOne, op: '==', limit: ids.length },
    // As EC2 meters it: a bucket of one second's worth, refilled at the rate (see rollout-1000).
    { label: 'RunInstances over the launch rate (token bucket)', value: overBucket, op: '==', limit: 0 },
    { label: 'status calls in a tick beyond 1 per 100 waiting', value: overBatch, op: '==', limit: 0 },
    { label: `ready later than poll + 2 s (${seconds(lagLimitMs)} s)`, value: lateCount, op: '==', limit: 0 },
  ];

  const rows = [
    {
      label: 'wall time (first /provision to last ready)',
      value: `${secs(wallMs)}${readyAt.size < ids.length ? ` (only ${readyAt.size} of ${ids.length} ready)` : ''}`,
    },
    {
      label: '  launch-pacing floor',
      value: `${ids.length} / ${launchesPerSecond} per s = ${secs(floorMs)}; wall / floor ${round(wallMs / floorMs, 2)}`,
    },
    {
      label: 'first answer (/provision to "Setting up")',
      value: `p50 ${ms(percentile(answerLags, 50))}, p99 ${ms(percentile(answerLags, 99))}, max ${ms(maxOf(answerLags))}`,
    },
    {
      label: '/provision to RunInstances',
      value: `p50 ${secs(percentile(queueWaits, 50))}, max ${secs(maxOf(queueWaits))}`,
    },
    {
      label: 'RunInstances at the simulator',
      value: `${launched.length} answered 200 (${runs.length - launched.length} not), peak ${launchPeak.count} in 1 s (at +${secs((launchPeak.startsAt ?? r.burstAt) - r.burstAt)}), min gap ${Number.isFinite(launchGap) ? `${launchGap} ms` : '-'}`,
    },
    {
      label: '  launch pacer slots (fleetbot log)',
      value: `${slots.length}, min gap ${Number.isFinite(slotGap) ? `${slotGap} ms` : '-'} (spacing ${Math.ceil(1000 / launchesPerSecond)} ms)`,
    },
    {
      label: 'status poll ticks',
      value: `${ticks.length}, spacing mean ${ms(tickSpacing.reduce((a, b) => a + b, 0) / Math.max(1, tickSpacing.length))} (poll ${pollMs} ms)`,
    },
    {
      label: '  DescribeInstanceStatus per tick',
      value: `max ${maxCallsPerTick} call(s), max ${maxIdsPerTick} instances in one tick`,
    },
    {
      label: 'ready lag (edit - simulator ready)',
      value: `p50 ${secs(percentile(lagValues, 50))}, p90 ${secs(percentile(lagValues, 90))}, max ${secs(worstLag)}; ${lateCount} over ${secs(lagLimitMs)}`,
    },
    {
      label: '  checks ok to bootstrap check sent',
      value: `p50 ${secs(percentile(seenLags, 50))}, max ${secs(maxOf(seenLags))} (status polls: running, then checks ok)`,
    },
    {
      label: '  bootstrap check sent to ready edit',
      value: `p50 ${secs(percentile(checkStage, 50))}, max ${secs(maxOf(checkStage))} (the check itself takes 0.5 s)`,
    },
    {
      label: '    SendCommand in the simulator',
      value: `p50 ${secs(percentile(checkAccept, 50))}, max ${secs(maxOf(checkAccept))} (it asks moto about the named instance)`,
    },
    {
      label: '    accepted to result read',
      value: `p50 ${secs(percentile(checkRead, 50))}, max ${secs(maxOf(checkRead))} (the first read waits 1 s after the send)`,
    },
    {
      label: '    result read to ready edit',
      value: `p50 ${ms(percentile(readToEdit, 50))}, max ${ms(maxOf(readToEdit))}`,
    },
    { label: 'failed provisions', value: String(failed.length) },
    { label: 'message edits', value: `${edits} (${round(edits / ids.length, 1)} per member)` },
    {
      label: 'AWS calls per member',
      value: Object.entries(perMember)
        .map(([op, n]) => `${op.replace(/^(ec2|ssm):/, '')} ${n}`)
        .join(', '),
    },
    {
      label: 'AWS calls not answered 200',
      value:
        Object.entries(non200)
          .map(([k, n]) => `${k} x${n}`)
          .join(', ') || '0',
    },
    { label: 'fleetbot warnings logged', value: String(warnings.length) },
    {
      label: 'CPU used during the run',
      value: `fleetbot ${round(r.cpu.fleetbot, 1)} s, moto ${round(r.cpu.moto, 1)} s, over ${secs(wallMs)} on ${availableParallelism()} cores`,
    },
    {
      label: 'bench event-loop stall, max',
      value: `${ms(r.stallMs)} (arrival times are stamped here)`,
    },
    { label: 'setup', value: `secrets ${secs(r.setup.secretsMs)}` },
    { label: 'bench total', value: secs(benchMs) },
  ];
  const notes = [
    ...failed.slice(0, 3).map((f) => `failed: ${f}`),
    ...warnings.slice(0, 3).map((w) => `warning logged: ${w}`),
  ];

  return {
    scenario: options.name,
    title: `${options.name}: ${ids.length} members /provision at once, launches ${launchesPerSecond}/s, provision poll ${pollMs} ms, boot ${options.boot.pendingMs} + ${options.boot.initializingMs} ms`,
    rows,
    targets,
    notes,
    json: {
      members: ids.length,
      launchesPerSecond,
      pollMs,
      bootMs: options.boot,
      wallMs: readyAt.size === ids.length ? Math.round(wallMs) : null,
      launchFloorMs: Math.round(floorMs),
      wallOverFloor: round(wallMs / floorMs, 3),
      ready: readyAt.size,
      failed: failed.length,
      exactlyOneInstance: exactlyOne,
      runInstances: launched.length,
      runInstancesNon200: runs.length - launched.length,
      peakLaunchesPerSecond: launchPeak.count,
      minLaunchGapMs: Number.isFinite(launchGap) ? launchGap : null,
      launchesOverBucket: overBucket,
      minPacerSlotGapMs: Number.isFinite(slotGap) ? slotGap : null,
      pollTicks: ticks.length,
      maxStatusCallsPerTick: maxCallsPerTick,
      maxInstancesPerTick: maxIdsPerTick,
      statusCallsOverBatch: overBatch,
      readyLagMs: {
        p50: percentile(lagValues, 50) ?? null,
        p90: percentile(lagValues, 90) ?? null,
        max: worstLag,
        limit: lagLimitMs,
        over: lateCount,
      },
      checksOkToBootstrapSentMs: { p50: percentile(seenLags, 50) ?? null, max: maxOf(seenLags) ?? null },
      bootstrapSentToReadyMs: { p50: percentile(checkStage, 50) ?? null, max: maxOf(checkStage) ?? null },
      bootstrapSendInSimulatorMs: {
        p50: percentile(checkAccept, 50) ?? null,
        max: maxOf(checkAccept) ?? null,
      },
      bootstrapAcceptedToReadMs: { p50: percentile(checkRead, 50) ?? null, max: maxOf(checkRead) ?? null },
      bootstrapReadToEditMs: { p50: percentile(readToEdit, 50) ?? null, max: maxOf(readToEdit) ?? null },
      firstAnswerMs: { p50: percentile(answerLags, 50) ?? null, p99: percentile(answerLags, 99) ?? null },
      provisionToLaunchMs: { p50: percentile(queueWaits, 50) ?? null, max: maxOf(queueWaits) ?? null },
      edits,
      awsCallsPerMember: perMember,
      awsNon200: non200,
      warnings: warnings.length,
      benchStallMaxMs: Math.round(r.stallMs),
      cpuSeconds: { fleetbot: round(r.cpu.fleetbot, 1), moto: round(r.cpu.moto, 1) },
      setupMs: { secrets: Math.round(r.setup.secretsMs) },
      benchMs: Math.round(benchMs),
    },
  };
}
