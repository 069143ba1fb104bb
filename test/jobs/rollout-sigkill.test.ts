import { EC2Client } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { openQueues, type Queues, type RolloutPayload } from '../../src/jobs/queues.js';
import { awsEnv, testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, startFakeSlack } from '../peers/slack-api.js';
import { launchInstances } from '../support/fleet.js';
import { type FleetbotProcess, startFleetbotProcess } from '../support/fleetbot-process.js';
import { rolloutEventsEnv, rolloutEventsOn } from '../support/rollout-events.js';

/**
 * The real worker process, killed with SIGKILL at random points of real deploys: no `finally`, no
 * graceful close, the lock simply stops being renewed. Another worker process takes the job over once
 * the lock lapses and resumes from the record the dead one last saved. Every targeted instance must
 * receive each deploy exactly once, and every planned batch must be sent and finished.
 *
 * Replay a failure with the seed from the test name: ROLLOUT_SIGKILL_SEED=<seed> npx vitest run <this file>.
 */

const accountId = testAccountId();
const prefix = uniquePrefix('rollout-sigkill');
const redis = testRedis();
const channel = 'CSIGKILL';
// `npm run soak` raises these: 100 kills, 10 per deploy, two worker processes sharing the queue.
// Half as many in the events run, which runs beside this one.
const totalKills = Number(process.env.ROLLOUT_SIGKILL_KILLS ?? (rolloutEventsOn ? 10 : 20));
/**
 * Kills aimed at each deploy; a deploy that finishes first hands the rest to the next one. At most the
 * worker's maxStalledCount (10): a job stalled more often than that is given up by design.
 */
const killsPerDeploy = Math.min(10, Number(process.env.ROLLOUT_SIGKILL_KILLS_PER_DEPLOY ?? 5));
const maxDeploys = 2 * Math.ceil(totalKills / killsPerDeploy);
/** Worker processes running at once; each kill hits the one that holds the deploy. */
const workerCount = Number(process.env.ROLLOUT_SIGKILL_WORKERS ?? 1);
/** How long after a worker took the job (started or resumed it) the kill may come. */
const maxKillDelayMs = 1800;
/** Sends are held this long by the simulator, so kills also land while a batch is `sending`. */
const sendLatencyMs = 250;
const seed = Number(process.env.ROLLOUT_SIGKILL_SEED ?? Math.floor(Math.random() * 2 ** 31));
/**
 * Deadlines for things that do happen, only later on a busy machine: a worker process starting (tsx
 * compiles on start), taking a job once the dead one's lock lapses, finishing a deploy. Generous on
 * purpose; what this test asserts is exactly-once delivery, not speed.
 */
const workerStartsWithinMs = 60_000;
const jobTakenWithinMs = 90_000;
const deployEndsWithinMs = 300_000;

let simulator: AwsSimulator;
let slack: FakeSlack;
let queues: Queues;
let targeted: string[] = [];
/** Completion events, in the events run of this suite. */
let eventsEnv: Record<string, string> = {};
let untargeted: string[] = [];

type WorkerProcess = FleetbotProcess;

const workers: WorkerProcess[] = [];
/** Should this test process end without afterAll (a crash, a hard timeout), no worker outlives it. */
const killAllNow = () => {
  for (const w of workers)
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
};

function workerEnv(): Record<string, string> {
  return {
    ...awsEnv(simulator.url),
    REDIS_URL: testRedisUrl,
    REDIS_PREFIX: prefix,
    SLACK_BOT_TOKEN: 'xoxb-sigkill',
    SLACK_SIGNING_SECRET: 'sigkill-signing-secret',
    SLACK_API_URL: slack.apiUrl,
    // Workers check the approver again, against the same allow-list as the bot.
    SLACK_ADMIN_USER_IDS: 'UANN,UBOB',
    ROLLOUT_POLL_MS: '200',
    JOB_LOCK_SECONDS: '2',
    // The default pace: a send waits its slot after `sending` is saved, so kills also land before it left.
    SSM_REQUESTS_PER_SECOND: '5',
    // Restarted workers edit at once; the default workspace budget would hold back the final edits.
    SLACK_UPDATES_PER_MINUTE: '600',
    // Info, for the "rollout started" line that says this process took the job.
    LOG_LEVEL: 'info',
    ...eventsEnv,
  };
}

/** A worker as its own OS process, resolved once it logged that it started. */
async function startWorker(): Promise<WorkerProcess> {
  const worker = startFleetbotProcess(workerEnv(), ['--role', 'worker']);
  const { child } = worker;
  workers.push(worker);
  await until(
    () => worker.out().includes('"msg":"fleetbot started"'),
    workerStartsWithinMs,
    () =>
      `worker ${child.pid} did not start; stdout: ${worker.out().slice(-2000)} stderr: ${worker.err().slice(-2000)}`,
    () => child.exitCode !== null || child.signalCode !== null,
  );
  return worker;
}

/** The worker's complete JSON log lines so far (a line still being written is left for later). */
function logLines(worker: WorkerProcess): { msg?: string; jobId?: string }[] {
  return worker
    .out()
    .split('\n')
    .slice(0, -1)
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg?: string; jobId?: string });
}

async function kill(worker: WorkerProcess): Promise<void> {
  if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
  await worker.exit;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(
  done: () => boolean | Promise<boolean>,
  timeoutMs: number,
  explain: () => string,
  abort: () => boolean = () => false,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await done()) return;
    if (abort() || Date.now() > deadline) throw new Error(explain());
    await sleep(25);
  }
}

/** Park-Miller: the same seed gives the same kill delays. */
function seededRandom(start: number): () => number {
  let state = (start % 2_147_483_646) + 1;
  return () => {
    state = (state * 48_271) % 2_147_483_647;
    return (state - 1) / 2_147_483_646;
  };
}

async function postPlanMessage(text: string): Promise<string> {
  const res = await fetch(`${slack.apiUrl}chat.postMessage`, {
    method: 'POST',
    headers: { authorization: 'Bearer xoxb-sigkill', 'content-type': 'application/json; charset=utf-8' },
    body: JSON.stringify({ channel, text }),
  });
  const body = (await res.json()) as { ok: boolean; ts?: string };
  expect(body.ok).toBe(true);
  return String(body.ts);
}

const messageText = (ts: string) => slack.channel(channel).messages.find((m) => m.ts === ts)?.text ?? '';

/** Where the dead worker left the record, e.g. `done 2, sending 1, planned 3`, or `no plan yet`. */
function phase(data: RolloutPayload | undefined): string {
  if (!data?.batches) return 'no plan yet';
  const counts = new Map<string, number>();
  for (const b of data.batches) counts.set(b.state, (counts.get(b.state) ?? 0) + 1);
  return ['done', 'sent', 'sending', 'planned']
    .filter((s) => counts.has(s))
    .map((s) => `${s} ${counts.get(s)}`)
    .join(', ');
}

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  slack = await startFakeSlack();
  const ec2 = new EC2Client({
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  for (let user = 0; user < 3; user++)
    targeted.push(
      ...(await launchInstances(ec2, 20, { app: 'fleetbot', env: 'dev', user: String(50000 + user) })),
    );
  targeted = targeted.sort();
  // Another environment's instances: never part of these deploys.
  untargeted = await launchInstances(ec2, 4, { app: 'fleetbot', env: 'prod', user: '50009' });
  simulator.control.scriptRunCommand(accountId, '*', { status: 'Success', afterMs: 400 });
  simulator.control.injectFault(accountId, {
    kind: 'latency',
    operation: 'SendCommand',
    latencyMs: sendLatencyMs,
  });
  eventsEnv = await rolloutEventsEnv(simulator, accountId);
  queues = openQueues(redis, prefix);
  process.once('exit', killAllNow);
});

afterAll(async () => {
  await Promise.all(workers.map((w) => kill(w)));
  process.off('exit', killAllNow);
  await queues?.close();
  await slack?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

interface Kill {
  deploy: number;
  delayMs: number;
  phase: string;
}

describe('worker processes killed with SIGKILL during deploys', () => {
  it(
    `when a worker is SIGKILLed at ${totalKills} random points of deploys (seed ${seed}, ${workerCount} worker${workerCount > 1 ? 's' : ''}), then each targeted instance receives each deploy exactly once and no batch is lost`,
    async () => {
      const random = seededRandom(seed);
      const kills: Kill[] = [];
      const story = () =>
        `seed ${seed}; kills so far: ${kills.map((k) => `#${k.deploy} +${k.delayMs}ms [${k.phase}]`).join('; ')}`;
      let pool: WorkerProcess[] = [];
      for (let i = 0; i < workerCount; i++) pool.push(await startWorker());
      /** How often each worker had taken the job when last looked at: the next one to take it holds it. */
      const seen = new Map<WorkerProcess, number>();
      let duplicates = 0;
      let lostBatches = 0;
      for (let deploy = 0; kills.length < totalKills; deploy++) {
        expect(
          deploy,
          `more than ${maxDeploys} deploys needed for ${totalKills} kills; ${story()}`,
        ).toBeLessThan(maxDeploys);
        const version = `v${deploy + 1}.0.0`;
        const ts = await postPlanMessage(`Plan: deploy ${version}`);
        const jobId = await queues.rollout({
          planId: `sigkill${seed.toString(36)}${deploy}`,
          request: {
            operation: 'deploy',
            version,
            reboot: 'never',
            targets: 'all',
            concurrency: '10',
            maxErrors: '0',
            canary: 0,
          },
          requestedBy: 'UANN',
          approvedBy: 'UBOB',
          message: { platform: 'slack', chatId: channel, messageId: ts },
          startedAt: Date.now(),
        });

        const aimed = Math.min(killsPerDeploy, totalKills - kills.length);
        const taken = (w: WorkerProcess) =>
          logLines(w).filter((entry) => entry.msg === 'rollout started' && entry.jobId === jobId).length;
        seen.clear();
        for (let k = 0; k < aimed; k++) {
          // The kill is timed from the moment a worker took the job (started or resumed it).
          let holder: WorkerProcess | undefined;
          await until(
            () => {
              holder = pool.find((w) => taken(w) > (seen.get(w) ?? 0));
              return holder !== undefined;
            },
            jobTakenWithinMs,
            () =>
              `no worker took ${jobId}; ${story()}; worker stdout: ${pool.map((w) => w.out().slice(-1000)).join('\n')}`,
          );
          for (const w of pool) seen.set(w, taken(w));
          const current = holder as WorkerProcess;
          const delayMs = Math.floor(random() * maxKillDelayMs);
          await sleep(delayMs);
          if ((await queues.rolloutState(jobId)) === 'completed') break;
          await kill(current);
          pool = pool.filter((w) => w !== current);
          const left = await queues.rolloutJob(jobId);
          pool.push(await startWorker());
          // A kill after the job was already marked completed hit no deploy; it does not count.
          if (left?.state === 'completed') break;
          expect(left?.state, story()).toBe('active');
          kills.push({ deploy, delayMs, phase: phase(left?.data) });
        }

        await until(
          async () => {
            const state = await queues.rolloutState(jobId);
            if (state === 'failed')
              throw new Error(
                `${jobId} failed: ${(await queues.rolloutJob(jobId))?.failedReason}; ${story()}`,
              );
            return state === 'completed';
          },
          deployEndsWithinMs,
          () => `${jobId} did not complete; ${story()}`,
        );

        const job = await queues.rolloutJob(jobId);
        const received = simulator.control
          .invocations(accountId)
          .filter((i) => i.parameters.version?.[0] === version);
        const ids = received.map((i) => i.instanceId);
        duplicates += ids.length - new Set(ids).size;
        expect(ids, `${version}: one invocation per targeted instance; ${story()}`).toHaveLength(
          targeted.length,
        );
        expect([...new Set(ids)].sort(), `${version}: exactly the targeted instances; ${story()}`).toEqual(
          targeted,
        );
        expect(ids.filter((id) => untargeted.includes(id))).toEqual([]);
        expect(
          received.filter((i) => i.status !== 'Success'),
          `${version}: every invocation succeeded`,
        ).toEqual([]);

        // No batch lost: six batches of ten planned (more where freed slots were refilled with part of
        // one), every one sent once, finished, and the command the record names.
        const batches = job?.data?.batches ?? [];
        lostBatches += batches.filter((b) => b.state !== 'done').length;
        expect(batches.length).toBeGreaterThanOrEqual(6);
        expect(batches.filter((b) => b.state !== 'done')).toEqual([]);
        expect(batches.flatMap((b) => b.instanceIds).sort()).toEqual(targeted);
        const commands = new Map(received.map((i) => [i.commandId, i.comment]));
        expect(commands.size, `${version}: one SendCommand per batch; ${story()}`).toBe(batches.length);
        for (const [index, batch] of batches.entries())
          expect(commands.get(batch.commandId ?? ''), `${version} batch ${index}`).toBe(`${jobId}:${index}`);

        expect(job?.result).toMatchObject({ outcome: 'succeeded', total: 60, counts: { succeeded: 60 } });
        expect(messageText(ts)).toContain(
          `Deploy ${version} to all running fleet instances: succeeded on all 60 instances (job ${jobId}`,
        );
      }

      expect(kills, story()).toHaveLength(totalKills);
      const count = (msg: string) =>
        workers.reduce((n, w) => n + logLines(w).filter((entry) => entry.msg === msg).length, 0);
      console.info(
        `rollout-sigkill: ${kills.length} kills over ${new Set(kills.map((k) => k.deploy)).size} deploys with ${workerCount} worker${workerCount > 1 ? 's' : ''}: duplicates ${duplicates}, lost batches ${lostBatches}; ${story()}; resumed workers found ${count('recovered an unrecorded send')} unrecorded sends by Comment and resent ${count('resending a batch that never left')} batches that never left`,
      );
      expect(duplicates).toBe(0);
      expect(lostBatches).toBe(0);
      // 20 kills take about 120 s alone and 330 s with both cores busy; every kill must land.
    },
    Math.max(900_000, totalKills * 50_000),
  );
});
