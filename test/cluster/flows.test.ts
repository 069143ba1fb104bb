import { readFile } from 'node:fs/promises';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import type { Message } from 'grammy/types';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { main, type Running, StartupError } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { type RedisClusterPeer, startRedisCluster } from '../peers/redis-cluster.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import { launchInstances } from '../support/fleet.js';
import { capturedLogger } from '../support/quiet-log.js';
import { redisKeys, redisKeysMatching } from '../support/redis-sweep.js';
import { planIdOf, pressApprove } from '../support/slack-admin.js';

/**
 * The whole product on a managed-style Redis Cluster: three masters, TLS only with a private CA, an
 * auth token. A bot process and a worker process (two `main` calls) run a member's intake and
 * /provision from Telegram and an admin's /deploy and /schedule from Slack; afterwards every key
 * they wrote sits under the hash-tagged prefix in one slot, and the member's secret is in none.
 */

const password = `cluster-token-${Date.now()}`;
const prefix = `{fb-cluster-${process.pid}${Date.now() % 100_000}}`;
const token = `7700000077:${'K'.repeat(35)}`;
const canary = `sk-CANARY${Date.now()}cluster${'q'.repeat(16)}`;
const botTokenCanary = `7712345678:CANARY${'B'.repeat(29)}`;
const member = 9301;
const signingSecret = 'cluster-signing-secret';
const accountId = testAccountId();
const fleetSize = 30;
const logs = capturedLogger();
/** Deadlines for what does happen, only later on a busy machine: these tests are about order and counts. */
const answersWithinMs = 30_000;
const jobEndsWithinMs = 60_000;

let cluster: RedisClusterPeer;
let simulator: AwsSimulator;
let fake: FakeTelegram;
let slack: FakeSlack;
let ec2: EC2Client;
let ssm: SSMClient;
let bot: Running;
let worker: Running;

/** When each instance's bootstrap check first ran: it succeeds a moment later, as a real first boot does. */
const firstCheck = new Map<string, number>();

/** The cluster's seed nodes without the auth token in them, for a process that is given it apart. */
const urlWithoutPassword = () => cluster.url.replaceAll(`:${encodeURIComponent(password)}@`, '');

function env(extra: Record<string, string>): Record<string, string> {
  return {
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: simulator.url,
    REDIS_TLS_CA_FILE: cluster.caFile ?? '',
    REDIS_PREFIX: prefix,
    PARAMETER_PREFIX: 'fbcluster',
    TELEGRAM_BOT_TOKEN: token,
    TELEGRAM_API_ROOT: fake.apiRoot,
    TELEGRAM_ALLOWED_USER_IDS: String(member),
    SLACK_BOT_TOKEN: 'xoxb-cluster',
    SLACK_SIGNING_SECRET: signingSecret,
    SLACK_API_URL: slack.apiUrl,
    SLACK_ADMIN_USER_IDS: 'UANN',
    SLACK_ALLOWED_CHANNEL_IDS: 'COPS',
    SLACK_ALERT_CHANNEL_ID: 'CREPORTS',
    INSTANCE_AMI_ID: 'ami-12c6146b',
    INSTANCE_SERVICE_VERSION: 'v1.4.0',
    PROVISION_POLL_MS: '200',
    PROVISION_COOLDOWN_SECONDS: '0',
    PROVISION_CHECKS_TIMEOUT_SECONDS: '20',
    PROVISION_BOOTSTRAP_TIMEOUT_SECONDS: '20',
    ROLLOUT_POLL_MS: '150',
    // One approving admin is enough here; the two-person rule is tested in test/jobs/rollout.test.ts.
    ROLLOUT_TWO_PERSON_RULE: 'false',
    // A scheduled run may still be going when the test stops the worker; it is left to the next one.
    SHUTDOWN_GRACE_MS: '2000',
    LOG_LEVEL: 'debug',
    ...extra,
  };
}

beforeAll(async () => {
  cluster = await startRedisCluster({ tls: true, password });
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  simulator.control.setBootTiming(accountId, { pendingMs: 300, initializingMs: 500 });
  simulator.control.scriptRunCommand(accountId, '*', (document, _parameters, instanceId) => {
    if (document !== 'fleetbot-bootstrap-check') return { status: 'Success' };
    const first = firstCheck.get(instanceId) ?? Date.now();
    firstCheck.set(instanceId, first);
    return Date.now() - first >= 1000
      ? { status: 'Success', output: 'bootstrap done' }
      : { status: 'Failed', responseCode: 1, output: 'bootstrap: running' };
  });
  fake = await startFakeTelegram();
  fake.addBot(token, { username: 'fleet_cluster_bot' });
  slack = await startFakeSlack();
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  const clientOptions = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  ec2 = new EC2Client(clientOptions);
  ssm = new SSMClient(clientOptions);
  // The fleet an admin deploys to: members' servers, a few of them in the early patch ring.
  for (let n = 0; n < fleetSize; n++)
    await launchInstances(ec2, 1, {
      app: 'fleetbot',
      env: 'dev',
      user: String(31000 + n),
      ring: n < 4 ? 'early' : 'main',
    });
  // The bot is given the auth token apart from the URL (REDIS_PASSWORD), as a secret injected by the
  // platform is; the worker takes it from the URL.
  bot = await main(
    env({ REDIS_URL: urlWithoutPassword(), REDIS_PASSWORD: password, SLACK_LISTEN: '127.0.0.1:0' }),
    ['--role', 'bot'],
    { logDestination: logs.destination },
  );
  worker = await main(env({ REDIS_URL: cluster.url }), ['--role', 'worker'], {
    logDestination: logs.destination,
  });
});

afterAll(async () => {
  await worker?.stop();
  await bot?.stop();
  await fake?.close();
  await slack?.close();
  await simulator?.close();
  ec2?.destroy();
  ssm?.destroy();
  await cluster?.stop();
});

async function send(text: string): Promise<{ sent: Message; reply: Message.TextMessage }> {
  const before = fake.chat(token, member).sent.length;
  const sent = fake.sendUserMessage(token, { userId: member, text, firstName: 'C' });
  const reply = await fake.waitFor(() => fake.chat(token, member).sent.slice(before)[0], answersWithinMs);
  return { sent, reply: reply as Message.TextMessage };
}

const currentText = (messageId: number) =>
  fake.chat(token, member).messages.find((m) => m.message_id === messageId)?.text ?? '';

const events = () => `http://127.0.0.1:${bot.ports.slack}/slack/events`;

async function slash(text: string): Promise<void> {
  const res = await sendSlashCommand(
    events(),
    signingSecret,
    typedCommand(text, { user: 'UANN', channel: 'COPS', responseUrl: slack.responseUrl() }),
  );
  expect(res.status).toBe(200);
}

async function answer(predicate: (c: SlackCall) => boolean): Promise<SlackCall> {
  return slack.waitFor(
    (c) => (c.method === 'chat.postMessage' || c.method === 'chat.postEphemeral') && predicate(c),
    answersWithinMs,
  );
}

/** The text of a channel message as it is now (after every chat.update). */
const messageText = (channel: string, ts: string) =>
  slack.channel(channel).messages.find((m) => m.ts === ts)?.text ?? '';

/** Posts the command, then presses Approve on the plan it posts, as the same admin. */
async function planAndApprove(command: string): Promise<{ plan: SlackCall; ts: string }> {
  await slash(command);
  const plan = await answer((c) => c.method === 'chat.postMessage' && c.params.channel === 'COPS');
  const ts = String(plan.response.ts);
  expect(planIdOf(plan)).not.toBe('');
  await pressApprove(events(), signingSecret, slack, plan, { userId: 'UANN', channelId: 'COPS' });
  return { plan, ts };
}

async function runningFleet(): Promise<string[]> {
  const res = await ec2.send(
    new DescribeInstancesCommand({
      Filters: [
        { Name: 'tag:app', Values: ['fleetbot'] },
        { Name: 'tag:env', Values: ['dev'] },
        { Name: 'instance-state-name', Values: ['running'] },
      ],
    }),
  );
  return (res.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => i.InstanceId ?? '');
}

/** How many times SendCommand named each instance, for one document and version. */
function sendsPerInstance(document: string, version?: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const call of simulator.control.calls(accountId, 'SendCommand')) {
    const params = call.params as {
      DocumentName?: string;
      InstanceIds?: string[];
      Parameters?: { version?: string[] };
    };
    if (call.status !== 200 || params.DocumentName !== document) continue;
    if (version !== undefined && params.Parameters?.version?.[0] !== version) continue;
    for (const id of params.InstanceIds ?? []) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

describe('fleetbot on a TLS Redis Cluster with an auth token', () => {
  it('when the bot gets the auth token apart from its URL and the worker in its URL, then both run on the cluster over TLS', () => {
    expect(urlWithoutPassword()).not.toContain(password);
    for (const running of [bot, worker])
      expect(running.config.redis).toMatchObject({ cluster: true, tls: true, password, prefix });
    expect(bot.config.redis.nodes.map((n) => n.port)).toEqual(cluster.ports);
  });

  it('when a member pastes an OpenAI key in the DM, then it is stored in Parameter Store, the message is deleted and the reply says stored', async () => {
    const { sent, reply } = await send(canary);
    expect(reply.text).toMatch(/^Stored your openai-api-key \(…[0-9a-f]{4}\)/);
    expect(fake.chat(token, member).deleted).toContain(sent.message_id);
    const stored = await ssm.send(
      new GetParameterCommand({ Name: `/fbcluster/users/${member}/openai-api-key`, WithDecryption: true }),
    );
    expect(stored.Parameter?.Value).toBe(canary);
    expect(stored.Parameter?.Type).toBe('SecureString');
  });

  it('when the member provisions with both secrets stored, then the worker walks the message to ready', async () => {
    await ssm.send(
      new PutParameterCommand({
        Name: `/fbcluster/users/${member}/telegram-bot-token`,
        Value: botTokenCanary,
        Type: 'SecureString',
      }),
    );
    const { reply: message } = await send('/provision');
    expect(message.text).toBe(
      'Setting up your server: launching… → running → health checks → bootstrapping → ready',
    );
    await fake.waitFor(
      () => currentText(message.message_id).startsWith('Your server is ready'),
      jobEndsWithinMs,
    );
    expect(currentText(message.message_id)).toMatch(
      /^Your server is ready \(instance i-[0-9a-f]+, took \d+s\)\.$/,
    );
    const instanceId = /instance (i-[0-9a-f]+)/.exec(currentText(message.message_id))?.[1] ?? '';
    expect(sendsPerInstance('fleetbot-bootstrap-check').get(instanceId)).toBeGreaterThanOrEqual(1);
  });

  it('when an admin deploys to all and approves the plan, then the job ends with its summary and every instance got the deploy exactly once', async () => {
    const fleet = (await runningFleet()).sort();
    // The fleet launched above plus the member's new server.
    expect(fleet).toHaveLength(fleetSize + 1);
    slack.reset();
    const { plan, ts } = await planAndApprove('/deploy v1.2.3 all');
    expect(String(plan.params.text)).toContain('Plan: Deploy v1.2.3 to all running fleet instances.');
    expect(String(plan.params.text)).toContain(`${fleet.length} running instances match`);
    const approved = await answer(
      (c) => c.method === 'chat.postEphemeral' && String(c.params.text).startsWith('Approved'),
    );
    const jobId = /job (rollout-[a-f0-9]+)/.exec(String(approved.params.text))?.[1] ?? '';
    expect(jobId).not.toBe('');
    await slack.waitFor(
      () => messageText('COPS', ts).includes(`succeeded on all ${fleet.length} instances`),
      jobEndsWithinMs,
    );
    expect(messageText('COPS', ts)).toContain(
      `Deploy v1.2.3 to all running fleet instances: succeeded on all ${fleet.length} instances (job ${jobId}`,
    );
    const sends = sendsPerInstance('fleetbot-deploy', 'v1.2.3');
    expect([...sends.keys()].sort()).toEqual(fleet);
    expect([...sends.values()].every((n) => n === 1)).toBe(true);
  });

  it('when an admin schedules a patch scan on a seconds cron and approves it, then it runs against the early ring and can be removed', async () => {
    const early = (
      (await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:ring', Values: ['early'] }] })))
        .Reservations ?? []
    )
      .flatMap((r) => r.Instances ?? [])
      .map((i) => i.InstanceId ?? '')
      .sort();
    expect(early).toHaveLength(4);
    slack.reset();
    const { plan, ts } = await planAndApprove('/schedule patch scan "*/2 * * * * *" tag:ring=early');
    expect(String(plan.params.text)).toMatch(
      /^Plan: Patch scan to instances tagged ring=early on the schedule "\*\/2 \* \* \* \* \*" \(UTC\)\./,
    );
    await slack.waitFor(() => messageText('COPS', ts).startsWith('Scheduled:'), answersWithinMs);
    const id = /(sched-[a-f0-9]{6})/.exec(messageText('COPS', ts))?.[1] ?? '';
    expect(id).not.toBe('');

    // A run posts its report to the report channel and edits it into its summary.
    const report = await slack.waitFor(
      (c) => c.method === 'chat.postMessage' && c.params.channel === 'CREPORTS',
      jobEndsWithinMs,
    );
    const reportTs = String(report.response.ts);
    await slack.waitFor(
      () => messageText('CREPORTS', reportTs).includes('succeeded on all 4 instances'),
      jobEndsWithinMs,
    );
    expect(messageText('CREPORTS', reportTs)).toContain(
      'Patch scan to instances tagged ring=early: succeeded on all 4 instances',
    );
    // Every run so far scanned the early ring and nothing else.
    expect([...sendsPerInstance('AWS-RunPatchBaseline').keys()].sort()).toEqual(early);

    slack.reset();
    await slash(`/unschedule ${id}`);
    expect(String((await answer((c) => c.params.channel === 'COPS')).params.text)).toBe(
      `Removed schedule ${id}. Runs already started finish on their own.`,
    );
    slack.reset();
    await slash('/schedules');
    expect(String((await answer((c) => c.params.channel === 'COPS')).params.text)).toBe(
      'Nothing is scheduled.',
    );
  });

  it('when the flows are done, then every key on every master is under the hash-tagged prefix, all in one slot, and no key or value holds a secret', async () => {
    // Stopped first, so nothing is written after the sweep has read a node.
    await worker.stop();
    await bot.stop();
    // Every node the peer started, asked directly: the nodes a cluster client knows of depend on
    // its last slots refresh, and a sweep that missed a node would pass for the wrong reason.
    const ca = await readFile(cluster.caFile ?? '', 'utf8');
    const masters = cluster.ports.map(
      (port) => new Redis({ host: '127.0.0.1', port, password, tls: { ca } }),
    );
    const [anyNode] = masters as [Redis];
    try {
      for (const node of masters) expect(((await node.call('ROLE')) as string[])[0]).toBe('master');
      const keys = (await Promise.all(masters.map((node) => redisKeys(node)))).flat();
      // Intake, provision, deploy and schedule each leave keys: queues, plans, audit, rate limits.
      expect(keys.length).toBeGreaterThan(10);
      expect(keys.filter((k) => !k.startsWith(`${prefix}:`))).toEqual([]);
      const slots = new Set(
        await Promise.all(keys.map(async (k) => Number(await anyNode.cluster('KEYSLOT', k)))),
      );
      expect([...slots]).toEqual([Number(await anyNode.cluster('KEYSLOT', prefix))]);

      const leaks = (text: string) => text.includes(canary) || text.includes(botTokenCanary);
      for (const node of masters) expect(await redisKeysMatching(node, leaks)).toEqual([]);
      expect(logs.lines.filter(leaks)).toEqual([]);
      // Nothing the cluster refused (CROSSSLOT, a script's undeclared key, a misrouted command) was
      // logged as an error by either process along the way.
      expect(logs.lines.filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
    } finally {
      for (const node of masters) node.disconnect();
    }
  });
});

describe('a process that cannot log in to the cluster', () => {
  /** Starts a worker with these settings and returns why it did not start. */
  async function startupFailure(settings: Record<string, string>): Promise<string> {
    const failure = await main(settings, ['--role', 'worker'], { logDestination: logs.destination }).then(
      async (running) => {
        await running.stop();
        return new Error('it started');
      },
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(StartupError);
    const message = (failure as StartupError).message;
    expect(message).toMatch(
      /^Redis does not answer at 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+ \(REDIS_URL\)\. /,
    );
    expect(message).not.toContain('\n');
    expect(message).not.toContain(password);
    return message;
  }

  it('when REDIS_PASSWORD is wrong while the URL holds the right token, then REDIS_PASSWORD wins and startup fails with one plain line saying so', async () => {
    const message = await startupFailure(env({ REDIS_URL: cluster.url, REDIS_PASSWORD: 'not-the-token' }));
    expect(message).toContain('It said: WRONGPASS invalid username-password pair or user is disabled. Check');
    expect(message).not.toContain('not-the-token');
  });

  it('when the private CA is not given, then startup fails with one plain line pointing at REDIS_TLS_CA_FILE', async () => {
    const { REDIS_TLS_CA_FILE: _, ...withoutCa } = env({ REDIS_URL: cluster.url });
    const message = await startupFailure(withoutCa);
    expect(message).toContain('with a private CA, REDIS_TLS_CA_FILE.');
  });
});
