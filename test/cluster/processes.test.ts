import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EC2Client } from '@aws-sdk/client-ec2';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { openQueues, type Queues } from '../../src/jobs/queues.js';
import { awsEnv, testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { type RedisClusterPeer, startRedisCluster } from '../peers/redis-cluster.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { launchInstances } from '../support/fleet.js';
import {
  type FleetbotProcess,
  type LogEntry,
  logEntries,
  startFleetbotProcess,
  waitForLog,
} from '../support/fleetbot-process.js';
import { planIdOf, pressApprove } from '../support/slack-admin.js';

/**
 * fleetbot deployed as it runs in production: separate OS processes of the real entry point, two bot
 * processes behind a load balancer, three workers and a dashboard, all sharing one Redis Cluster (three
 * masters) under one hash-tagged prefix. Whatever one process stores, another must find: a plan made on
 * one bot process is approved on the other, a job a dead worker held is finished by another, an update
 * one bot process answered is dropped by the other when Telegram delivers it again.
 */

const accountId = testAccountId();
const prefix = `{fb-procs-${randomUUID().slice(0, 8)}}`;
const telegramToken = `7000000031:${'P'.repeat(35)}`;
const webhookSecret = 'cluster-processes-webhook-secret';
const slackSecret = 'cluster-processes-signing-secret';
const dashboardPassword = 'cluster-processes-dashboard-pw';
/** Members of the Telegram bot, one private chat each, so each update's reply is counted in its own chat. */
const members = Array.from({ length: 20 }, (_, i) => 71_001 + i);
const fleetSize = 200;
/** Five batches: the deploy is still running after its first batch, when the worker holding it dies. */
const batchSize = 40;
/**
 * Deadlines for things that do happen, only later on a busy machine: processes starting through tsx,
 * a dead worker's lock lapsing, a deploy of 200 instances finishing. Generous on purpose.
 */
const startsWithinMs = 90_000;
const answersWithinMs = 30_000;
const deployEndsWithinMs = 240_000;

let cluster: RedisClusterPeer;
let redis: Cluster;
let queues: Queues;
let simulator: AwsSimulator;
let slack: FakeSlack;
let telegram: FakeTelegram;
let balancer: WebhookBalancer;
let instanceIds: string[] = [];

const processes: FleetbotProcess[] = [];
let bots: [FleetbotProcess, FleetbotProcess];
let workers: FleetbotProcess[] = [];
let dashboard: FleetbotProcess;
let botPorts: [Ports, Ports];
let dashboardPort = 0;
/** Processes this file SIGKILLed on purpose. */
const killedByTest: FleetbotProcess[] = [];
/** The deploy's job, for the dashboard to show. */
let deployJobId = '';
/** Should this test process end without afterAll (a crash, a hard timeout), no fleetbot outlives it. */
const killAllNow = () => {
  for (const p of processes) if (alive(p)) p.child.kill('SIGKILL');
};

const alive = (p: FleetbotProcess) => p.child.exitCode === null && p.child.signalCode === null;

function env(): Record<string, string> {
  return {
    ...awsEnv(simulator.url),
    REDIS_URL: cluster.url,
    REDIS_PREFIX: prefix,
    TELEGRAM_BOT_TOKEN: telegramToken,
    TELEGRAM_API_ROOT: telegram.apiRoot,
    TELEGRAM_MODE: 'webhook',
    // Telegram knows one URL: the load balancer's. Each bot process listens on a port of its own.
    TELEGRAM_WEBHOOK_URL: balancer.url,
    TELEGRAM_WEBHOOK_SECRET: webhookSecret,
    TELEGRAM_WEBHOOK_LISTEN: '127.0.0.1:0',
    TELEGRAM_ALLOWED_USER_IDS: members.join(','),
    SLACK_BOT_TOKEN: 'xoxb-cluster-processes',
    SLACK_SIGNING_SECRET: slackSecret,
    SLACK_API_URL: slack.apiUrl,
    SLACK_LISTEN: '127.0.0.1:0',
    SLACK_ADMIN_USER_IDS: 'UANN,UBOB',
    SLACK_ALLOWED_CHANNEL_IDS: 'COPS',
    DASHBOARD_PASSWORD: dashboardPassword,
    DASHBOARD_LISTEN: '127.0.0.1:0',
    ROLLOUT_POLL_MS: '200',
    // A dead worker's deploy is taken over about this long after its last renewal.
    JOB_LOCK_SECONDS: '3',
    SSM_REQUESTS_PER_SECOND: '20',
    // Resumed workers edit at once; the default workspace budget would hold back the final edits.
    SLACK_UPDATES_PER_MINUTE: '600',
    // Info, for the lines that say which process handled what.
    LOG_LEVEL: 'info',
  };
}

/** Starts a process; resolves with the ports it bound once it logged that it started. */
async function start(role: 'bot' | 'worker' | 'dashboard'): Promise<{ p: FleetbotProcess; ports: Ports }> {
  const p = startFleetbotProcess(env(), ['--role', role]);
  processes.push(p);
  const started = await waitForLog(p, (e) => e.msg === 'fleetbot started', startsWithinMs).catch(
    (error: unknown) => {
      throw new Error(`the ${role} process did not start: ${String(error)}; stderr: ${p.err().slice(-2000)}`);
    },
  );
  return { p, ports: started.ports as Ports };
}

interface Ports {
  slack?: number;
  telegramWebhook?: number;
  dashboard?: number;
}

/** The workers' last log lines, for a failure message. */
const workerLogs = () =>
  workers.map((w, i) => `worker ${i + 1} (pid ${w.child.pid}): ${w.out().slice(-1500)}`).join('\n');
const entries = (p: FleetbotProcess, msg: string): LogEntry[] => logEntries(p).filter((e) => e.msg === msg);
const errorsOf = (p: FleetbotProcess) => logEntries(p).filter((e) => e.level >= 50);

beforeAll(async () => {
  [cluster, simulator, slack, telegram, balancer] = await Promise.all([
    startRedisCluster(),
    startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId }),
    startFakeSlack(),
    // Held past fleetbot's own webhook timeout, so a slow machine never makes the fake retry on its own:
    // every second delivery in this test is one the test asked for.
    startFakeTelegram({ webhook: { timeoutMs: 60_000 } }),
    startWebhookBalancer(),
  ]);
  telegram.addBot(telegramToken, { username: 'fleet_cluster_bot' });
  redis = new Cluster(
    cluster.ports.map((port) => ({ host: '127.0.0.1', port })),
    { redisOptions: { maxRetriesPerRequest: null } },
  );
  queues = openQueues(redis, prefix);
  const ec2 = new EC2Client({
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  const groups = await Promise.all(
    [0, 1, 2, 3].map((group) =>
      launchInstances(ec2, fleetSize / 4, { app: 'fleetbot', env: 'dev', user: String(60_000 + group) }),
    ),
  );
  instanceIds = groups.flat().sort();
  simulator.control.scriptRunCommand(accountId, '*', { status: 'Success', afterMs: 800 });
  process.once('exit', killAllNow);

  // All six at once: each takes seconds to start through tsx.
  const [a, b, w1, w2, w3, d] = await Promise.all([
    start('bot'),
    start('bot'),
    start('worker'),
    start('worker'),
    start('worker'),
    start('dashboard'),
  ]);
  bots = [a.p, b.p];
  workers = [w1.p, w2.p, w3.p];
  dashboard = d.p;
  botPorts = [a.ports, b.ports];
  dashboardPort = d.ports.dashboard ?? 0;
  balancer.backends = botPorts.map((ports) => `http://127.0.0.1:${ports.telegramWebhook}/telegram/webhook`);
}, 300_000);

afterAll(async () => {
  for (const p of processes) if (alive(p)) p.child.kill('SIGKILL');
  await Promise.all(processes.map((p) => p.exit));
  process.off('exit', killAllNow);
  await queues?.close();
  redis?.disconnect();
  await balancer?.close();
  await telegram?.close();
  await slack?.close();
  await simulator?.close();
  await cluster?.stop();
}, 120_000);

describe('fleetbot as separate processes on one Redis Cluster', () => {
  it('when Telegram updates are spread over both bot processes and some are delivered again to the other one, then every update is answered exactly once', async () => {
    for (const userId of members) telegram.sendUserMessage(telegramToken, { userId, text: '/whoami' });
    for (const userId of members)
      await telegram.waitForMessage(
        telegramToken,
        userId,
        `You are Telegram user ${userId}`,
        answersWithinMs,
      );
    // Telegram's record of its webhook calls: answered once each, before any update is delivered again.
    const delivered = await telegram.waitFor(() => {
      const all = telegram.webhookDeliveries(telegramToken);
      return all.length === members.length && all;
    }, answersWithinMs);
    expect(delivered.map((d) => [d.attempt, d.status])).toEqual(members.map(() => [1, 200]));
    const firstRoutes = [...balancer.routes];
    expect(firstRoutes).toHaveLength(members.length);
    expect(firstRoutes.map((r) => r.status)).toEqual(members.map(() => 200));

    // Telegram retries a webhook it believes failed; the balancer sends the retry to the other process.
    const again = [firstRoutes[0], firstRoutes[1], firstRoutes[6], firstRoutes[7]].map(
      (r) => r?.updateId ?? 0,
    );
    for (const updateId of again) telegram.redeliver(telegramToken, updateId);
    const redelivered = await telegram.waitFor(() => {
      const later = balancer.routes.slice(firstRoutes.length);
      return later.length === again.length && later.every((r) => r.status !== undefined) && later;
    }, answersWithinMs);
    expect(redelivered.map((r) => r.updateId)).toEqual(again);
    expect(redelivered.map((r) => r.status)).toEqual(again.map(() => 200));
    for (const r of redelivered)
      expect(r.backend, `update ${r.updateId} went to the other process`).not.toBe(
        firstRoutes.find((f) => f.updateId === r.updateId)?.backend,
      );
    // Each process says it dropped exactly the updates that reached it a second time.
    for (const [index, bot] of bots.entries()) {
      const mine = redelivered.filter((r) => r.backend === index).map((r) => String(r.updateId));
      for (const updateId of mine)
        await waitForLog(
          bot,
          (e) => e.msg === 'duplicate update dropped' && e.update === updateId,
          answersWithinMs,
        );
      expect(entries(bot, 'duplicate update dropped').map((e) => e.update)).toEqual(mine);
    }

    // One reply per update, in its own chat: nobody answered a redelivery.
    for (const userId of members) {
      const replies = telegram
        .calls(telegramToken, 'sendMessage')
        .filter((c) => Number(c.params.chat_id) === userId);
      expect(
        replies.map((c) => c.params.text),
        `chat ${userId}`,
      ).toEqual([expect.stringContaining(`You are Telegram user ${userId}`)]);
    }
    // Both processes handled updates: exactly those the balancer sent them first.
    for (const [index, bot] of bots.entries()) {
      const handled = entries(bot, 'command ran')
        .filter((e) => e.command === 'whoami')
        .map((e) => e.update);
      const routedHere = firstRoutes.filter((r) => r.backend === index).map((r) => String(r.updateId));
      expect(routedHere.length).toBe(members.length / 2);
      expect([...handled].sort()).toEqual([...routedHere].sort());
    }
  });

  it('when an admin plans a deploy on one bot process, approves it on the other, and the worker holding it is SIGKILLed, then another worker finishes it and every instance gets it exactly once', async () => {
    const events = (bot: 0 | 1) => `http://127.0.0.1:${botPorts[bot].slack}/slack/events`;
    const posted = (predicate: (c: SlackCall) => boolean) =>
      slack.waitFor(
        (c) => (c.method === 'chat.postMessage' || c.method === 'chat.postEphemeral') && predicate(c),
        answersWithinMs,
      );
    const messageText = (ts: string) => slack.channel('COPS').messages.find((m) => m.ts === ts)?.text ?? '';

    const asked = await sendSlashCommand(
      events(0),
      slackSecret,
      typedCommand(`/deploy v2.0.0 all --concurrency ${batchSize}`, {
        user: 'UANN',
        channel: 'COPS',
        responseUrl: slack.responseUrl(),
      }),
    );
    expect(asked.status).toBe(200);
    const plan = await posted((c) => c.method === 'chat.postMessage');
    expect(String(plan.params.text)).toContain(
      `${fleetSize} running instances match, in ${fleetSize / batchSize} batches of at most ${batchSize}.`,
    );
    const ts = String(plan.response.ts);
    expect(planIdOf(plan)).not.toBe('');

    // A load balancer sends the press to the other bot process: the plan must be found there.
    const pressed = await pressApprove(events(1), slackSecret, slack, plan, {
      userId: 'UBOB',
      channelId: 'COPS',
    });
    expect(pressed.status).toBe(200);
    const approved = await posted(
      (c) => c.method === 'chat.postEphemeral' && String(c.params.text).startsWith('Approved'),
    );
    const jobId = /job (rollout-[a-f0-9]+)/.exec(String(approved.params.text))?.[1] ?? '';
    expect(jobId).not.toBe('');
    deployJobId = jobId;
    const took = (w: FleetbotProcess) => entries(w, 'rollout started').filter((e) => e.jobId === jobId);

    // The worker holding the job dies once at least its first batch was sent.
    const sentSoFar = () =>
      simulator.control.invocations(accountId).filter((i) => i.parameters.version?.[0] === 'v2.0.0');
    await expect
      .poll(() => sentSoFar().length, { timeout: answersWithinMs, interval: 20 })
      .toBeGreaterThanOrEqual(batchSize);
    // The one that took the job last (a machine too busy to renew a lock may have moved it already).
    const lastTook = (w: FleetbotProcess) => Math.max(0, ...took(w).map((e) => Number(e.time)));
    const holder = [...workers].sort((x, y) => lastTook(y) - lastTook(x))[0] as FleetbotProcess;
    expect(took(holder).length, workerLogs()).toBeGreaterThan(0);
    holder.child.kill('SIGKILL');
    killedByTest.push(holder);
    expect(await holder.exit).toBeNull();
    const sentBeforeKill = sentSoFar().length;
    expect(sentBeforeKill).toBeLessThan(fleetSize);

    await slack
      .waitFor(() => messageText(ts).includes(`succeeded on all ${fleetSize} instances`), deployEndsWithinMs)
      .catch((error: unknown) => {
        throw new Error(`${jobId} did not finish (${String(error)}): "${messageText(ts)}"; ${workerLogs()}`);
      });
    expect(messageText(ts)).toContain(
      `Deploy v2.0.0 to all running fleet instances: succeeded on all ${fleetSize} instances (job ${jobId}`,
    );

    // Another worker resumed the job from the record the dead one left.
    const survivors = workers.filter((w) => w !== holder);
    const workedOn = workers.filter((w) => took(w).length > 0);
    expect(workedOn.length).toBeGreaterThanOrEqual(2);
    expect(workedOn).toContain(holder);
    expect(survivors.some((w) => lastTook(w) > lastTook(holder))).toBe(true);
    // The first start planned the batches; every later one resumed from the record.
    const starts = workers.flatMap(took).sort((x, y) => Number(x.time) - Number(y.time));
    expect(starts.map((e) => e.resumed)).toEqual([false, ...starts.slice(1).map(() => true)]);

    // Exactly once per instance, one SendCommand per batch, each named after its batch.
    const received = sentSoFar();
    expect(received.map((i) => i.instanceId).sort()).toEqual(instanceIds);
    expect(received.filter((i) => i.status !== 'Success')).toEqual([]);
    // The summary is edited in just before the worker marks the job completed.
    await expect.poll(() => queues.rolloutState(jobId), { timeout: answersWithinMs }).toBe('completed');
    const job = await queues.rolloutJob(jobId);
    expect(job?.state).toBe('completed');
    const batches = job?.data?.batches ?? [];
    expect(batches.map((b) => b.state)).toEqual(Array(fleetSize / batchSize).fill('done'));
    expect(batches.flatMap((b) => b.instanceIds).sort()).toEqual(instanceIds);
    const commands = new Map(received.map((i) => [i.commandId, i.comment]));
    expect(commands.size).toBe(batches.length);
    for (const [index, batch] of batches.entries())
      expect(commands.get(batch.commandId ?? ''), `batch ${index}`).toBe(`${jobId}:${index}`);
    expect(job?.result).toMatchObject({
      outcome: 'succeeded',
      total: fleetSize,
      counts: { succeeded: fleetSize },
    });
    for (const p of [...bots, ...survivors]) expect(errorsOf(p)).toEqual([]);
  }, 360_000);

  it('when the dashboard process runs on the cluster, then it is ready and its job list shows the deploy', async () => {
    expect(deployJobId).not.toBe('');
    const base = `http://127.0.0.1:${dashboardPort}`;
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      status: 'ready',
      checks: { redis: 'ok', aws: 'ok', redisMaxmemoryPolicy: 'noeviction' },
    });
    const authorization = `Basic ${Buffer.from(`ops:${dashboardPassword}`).toString('base64')}`;
    expect((await fetch(`${base}/jobs/api/queues`)).status).toBe(401);
    const res = await fetch(`${base}/jobs/api/queues?activeQueue=rollout&status=completed&page=1`, {
      headers: { authorization },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      queues: { name: string; jobs: { id: string; returnValue?: { outcome?: string } }[] }[];
    };
    const rollout = body.queues.find((q) => q.name === 'rollout');
    expect(rollout?.jobs.map((j) => j.id)).toEqual([deployJobId]);
    expect(rollout?.jobs[0]?.returnValue).toMatchObject({ outcome: 'succeeded' });
    expect(errorsOf(dashboard)).toEqual([]);
  });

  it('when every process still running gets SIGTERM, then each one stops cleanly and exits 0', async () => {
    // None ended on its own: only the worker this file killed is gone.
    expect(processes.filter((p) => !alive(p))).toEqual(killedByTest);
    const running = processes.filter(alive);
    for (const p of running) p.child.kill('SIGTERM');
    const codes = await Promise.all(running.map((p) => p.exit));
    expect(codes).toEqual(running.map(() => 0));
    for (const p of running) expect(entries(p, 'fleetbot stopped')).toHaveLength(1);
  }, 120_000);
});

interface Route {
  updateId: number;
  /** Index of the bot process the update went to. */
  backend: number;
  /** The bot process's HTTP status, once it answered. */
  status?: number;
}

interface WebhookBalancer {
  url: string;
  /** The bot processes' webhook addresses, filled in once they started. */
  backends: string[];
  /** Every delivery, in arrival order. */
  routes: Route[];
  close(): Promise<void>;
}

/**
 * The load balancer in front of the bot processes, as Telegram's webhook URL: new updates alternate
 * between the processes; an update delivered again goes to another process than the first time, as a
 * retry after a timeout or a reset connection may.
 */
async function startWebhookBalancer(): Promise<WebhookBalancer> {
  const balancer: WebhookBalancer = { url: '', backends: [], routes: [], close: async () => {} };
  let next = 0;
  const read = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await read(req);
      const updateId = Number((JSON.parse(body) as { update_id: number }).update_id);
      const before = balancer.routes.find((r) => r.updateId === updateId);
      const backend = before
        ? (before.backend + 1) % balancer.backends.length
        : next++ % balancer.backends.length;
      const route: Route = { updateId, backend };
      balancer.routes.push(route);
      const answer = await fetch(balancer.backends[backend] ?? '', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-telegram-bot-api-secret-token': String(req.headers['x-telegram-bot-api-secret-token'] ?? ''),
        },
        body,
      });
      const text = await answer.text();
      route.status = answer.status;
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'text/plain' });
      res.end(text);
    })().catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(502).end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  balancer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/telegram/webhook`;
  balancer.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return balancer;
}
