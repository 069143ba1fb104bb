import {
  EC2Client,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../../src/main.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, type CallRecord, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { launchInstances } from '../support/fleet.js';
import { capturedLogger } from '../support/quiet-log.js';
import { pressApprove } from '../support/slack-admin.js';

/**
 * The fleet changes under a rollout: a member destroys their server while a deploy is planned or
 * running, or an agent drops off. Deploys run end to end (signed Slack requests to the real Bolt
 * receiver, the AWS simulator in front of moto), and each must end with every instance accounted
 * for: succeeded, failed, timed out, cancelled, not reachable or not started.
 */

const accountId = testAccountId();
const prefix = uniquePrefix('targets');
const redis = testRedis();
const logs = capturedLogger();
const secret = 'targets-signing-secret';
// The shortest the configuration allows, so an agent that goes silent times out within the test.
const commandTimeoutSeconds = 30;
// Well inside the command timeout, so giving up on a Delayed invocation is told apart from its expiry.
const deliveryWaitSeconds = 2;
let simulator: AwsSimulator;
let slack: FakeSlack;
let running: Running;
let ec2: EC2Client;

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  slack = await startFakeSlack();
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  ec2 = new EC2Client({
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  running = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      SLACK_BOT_TOKEN: 'xoxb-targets',
      SLACK_SIGNING_SECRET: secret,
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      // Servers are launched behind fleetbot's back between plans: every plan must list afresh.
      FLEET_CACHE_SECONDS: '0',
      SLACK_ADMIN_USER_IDS: 'UANN',
      SLACK_ALLOWED_CHANNEL_IDS: 'COPS',
      ROLLOUT_POLL_MS: '150',
      ROLLOUT_COMMAND_TIMEOUT_SECONDS: String(commandTimeoutSeconds),
      ROLLOUT_DELIVERY_WAIT_SECONDS: String(deliveryWaitSeconds),
      SHUTDOWN_GRACE_MS: '2000',
      DASHBOARD_PASSWORD: 'unused-dashboard-password',
      DASHBOARD_LISTEN: '127.0.0.1:0',
    },
    ['--role', 'all'],
    { logDestination: logs.destination },
  );
}, 60_000);

afterAll(async () => {
  await running?.stop();
  ec2?.destroy();
  await slack?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

beforeEach(() => {
  slack.reset();
  simulator.control.resetCalls(accountId);
  simulator.control.setTerminationNotice(accountId, 0);
});

/** One fleet server per member, as provisioning leaves them; sorted by id, the order a plan batches them in. */
async function serversOf(userIds: readonly number[]): Promise<{ id: string; userId: string }[]> {
  const servers = [];
  for (const userId of userIds) {
    const [id] = await launchInstances(ec2, 1, { app: 'fleetbot', env: 'dev', user: String(userId) });
    servers.push({ id: id ?? '', userId: String(userId) });
  }
  return servers.sort((a, b) => (a.id < b.id ? -1 : 1));
}

async function terminate(instanceId: string) {
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
}

async function stop(...instanceIds: string[]) {
  await ec2.send(new StopInstancesCommand({ InstanceIds: instanceIds }));
}

async function start(...instanceIds: string[]) {
  await ec2.send(new StartInstancesCommand({ InstanceIds: instanceIds }));
}

const events = () => `http://127.0.0.1:${running.ports.slack}/slack/events`;

async function slash(text: string) {
  const res = await sendSlashCommand(
    events(),
    secret,
    typedCommand(text, { user: 'UANN', channel: 'COPS', responseUrl: slack.responseUrl() }),
  );
  expect(res.status).toBe(200);
}

async function answer(predicate: (c: SlackCall) => boolean): Promise<SlackCall> {
  return slack.waitFor(
    (c) => (c.method === 'chat.postMessage' || c.method === 'chat.postEphemeral') && predicate(c),
    20_000,
  );
}

/** Posts the plan and returns its message; nothing runs until `approve`. */
async function plan(command: string): Promise<{ posted: SlackCall; ts: string; text: string }> {
  await slash(command);
  const posted = await answer((c) => c.method === 'chat.postMessage');
  return { posted, ts: String(posted.response.ts), text: String(posted.params.text) };
}

async function approve(planned: { posted: SlackCall }): Promise<string> {
  await pressApprove(events(), secret, slack, planned.posted, {
    userId: 'UANN',
    channelId: 'COPS',
    messageText: '',
  });
  const approved = await answer(
    (c) => c.method === 'chat.postEphemeral' && String(c.params.text).startsWith('Approved'),
  );
  return /job (rollout-[a-f0-9]+)/.exec(String(approved.params.text))?.[1] ?? '';
}

/** The text of the plan message as the last chat.update left it. */
const messageText = (ts: string) => slack.channel('COPS').messages.find((m) => m.ts === ts)?.text ?? '';

/** The rollout's last edit: the summary, which names its job and how long it took. */
async function summaryOf(ts: string, jobId: string, timeoutMs = 60_000): Promise<string> {
  await slack.waitFor(() => messageText(ts).includes(`(job ${jobId}, took`), timeoutMs);
  return messageText(ts);
}

/** The counts line of a summary, as numbers, with the total they must add up to. */
function counts(summary: string): Record<string, number> {
  const line =
    /succeeded (\d+) · failed (\d+) · timed out (\d+) · cancelled (\d+) · not reachable (\d+) · not started (\d+)/.exec(
      summary,
    );
  const [succeeded, failed, timedOut, cancelled, unreachable, notStarted] = (line ?? []).slice(1).map(Number);
  return { succeeded, failed, timedOut, cancelled, unreachable, notStarted } as Record<string, number>;
}
const sum = (c: Record<string, number>) => Object.values(c).reduce((n, v) => n + v, 0);

const sendsOf = (version: string) =>
  simulator.control
    .calls(accountId, 'SendCommand')
    .filter(
      (c) =>
        c.status === 200 &&
        (c.params as { Parameters?: { version?: string[] } }).Parameters?.version?.[0] === version,
    )
    .map((c) => (c.params as { InstanceIds: string[] }).InstanceIds);

const sentTo = (version: string) =>
  simulator.control
    .invocations(accountId)
    .filter((i) => i.parameters.version?.[0] === version)
    .map((i) => i.instanceId)
    .sort();

/** The ids a DescribeInstances call asked about through an `instance-id` filter (EC2 Query form). */
function instanceIdFilter(call: CallRecord): string[] {
  const params = call.params as Record<string, string>;
  const index = Object.entries(params).find(
    ([key, value]) => /^Filter\.\d+\.Name$/.test(key) && value === 'instance-id',
  )?.[0];
  if (!index) return [];
  const base = index.replace(/Name$/, 'Value.');
  return Object.entries(params)
    .filter(([key]) => key.startsWith(base))
    .map(([, value]) => value)
    .sort();
}

describe('instances terminated during a deploy', () => {
  it('when servers are terminated while their deploy runs, whether or not SSM has noticed, then the rollout ends without waiting and lists them as terminated during the deploy', async () => {
    const servers = await serversOf([51001, 51002, 51003, 51004]);
    const [, unnoticed, noticed] = servers;
    if (!unnoticed || !noticed) throw new Error('four servers were launched');
    const version = 'v4.0.0';
    for (const s of servers)
      simulator.control.scriptRunCommand(accountId, s.id, { status: 'Success', afterMs: 500 });
    for (const s of [unnoticed, noticed])
      simulator.control.scriptRunCommand(accountId, s.id, { status: 'InProgress' });

    const planned = await plan(
      `/deploy ${version} user:51001,51002,51003,51004 --concurrency 4 --max-errors 2`,
    );
    const jobId = await approve(planned);
    await expect
      .poll(
        () => simulator.control.invocations(accountId).filter((i) => i.parameters.version?.[0] === version),
        {
          timeout: 30_000,
        },
      )
      .toHaveLength(4);
    // SSM keeps the first one InProgress for the next ten minutes, as it may for a while in AWS:
    // fleetbot learns it from EC2, and the progress counts it failed while SSM still says nothing.
    simulator.control.setTerminationNotice(accountId, 10 * 60_000);
    await terminate(unnoticed.id);
    await slack.waitFor(() => messageText(planned.ts).includes('succeeded 2 · failed 1 ·'), 60_000);
    expect(simulator.control.invocations(accountId, unnoticed.id)).toMatchObject([{ status: 'InProgress' }]);
    // The second one SSM ends Undeliverable at once.
    simulator.control.setTerminationNotice(accountId, 0);
    await terminate(noticed.id);

    const summary = await summaryOf(planned.ts, jobId);
    expect(summary).toContain(`Deploy ${version} to the servers of 4 members: failed (job ${jobId}`);
    expect(counts(summary)).toEqual({
      succeeded: 2,
      failed: 2,
      timedOut: 0,
      cancelled: 0,
      unreachable: 0,
      notStarted: 0,
    });
    expect(sum(counts(summary))).toBe(4);
    expect(summary).toContain(`• ${unnoticed.userId} ${unnoticed.id} failed: terminated during the deploy`);
    expect(summary).toContain(`• ${noticed.userId} ${noticed.id} failed: terminated during the deploy`);
    // Fleetbot saw the first one gone in EC2: SSM still says nothing happened to it.
    expect(simulator.control.invocations(accountId, unnoticed.id)).toMatchObject([{ status: 'InProgress' }]);
    expect(simulator.control.invocations(accountId, noticed.id)).toMatchObject([
      { status: 'Failed', statusDetails: 'Undeliverable' },
    ]);
    // EC2 was asked about both instances still running their command in one call, not one each.
    const lookups = simulator.control.calls(accountId, 'DescribeInstances').map(instanceIdFilter);
    expect(lookups).toContainEqual([unnoticed.id, noticed.id].sort());
    expect(lookups.filter((ids) => ids.length === 1 && ids[0] === unnoticed.id)).toEqual([]);
    expect(sendsOf(version)).toEqual([servers.map((s) => s.id)]);
  }, 120_000);
});

describe('an SSM agent that goes offline during a deploy', () => {
  it('when an agent goes offline while its command runs, then the invocation times out undelivered within the command timeout and the summary lists it as timed out', async () => {
    const servers = await serversOf([52001, 52002, 52003]);
    const [, silent] = servers;
    if (!silent) throw new Error('three servers were launched');
    const version = 'v4.1.0';
    for (const s of servers)
      simulator.control.scriptRunCommand(accountId, s.id, { status: 'Success', afterMs: 500 });
    // Its deploy would take ten minutes; its agent is gone long before.
    simulator.control.scriptRunCommand(accountId, silent.id, { status: 'Success', afterMs: 10 * 60_000 });

    const planned = await plan(`/deploy ${version} user:52001,52002,52003 --concurrency 3 --max-errors 1`);
    const jobId = await approve(planned);
    await expect
      .poll(() => simulator.control.invocations(accountId, silent.id).map((i) => i.status), {
        timeout: 30_000,
      })
      .toEqual(['InProgress']);
    simulator.control.setAgentOnline(accountId, silent.id, false);

    const summary = await summaryOf(planned.ts, jobId, 120_000);
    expect(summary).toContain(`Deploy ${version} to the servers of 3 members: failed (job ${jobId}`);
    expect(counts(summary)).toEqual({
      succeeded: 2,
      failed: 0,
      timedOut: 1,
      cancelled: 0,
      unreachable: 0,
      notStarted: 0,
    });
    expect(summary).toContain(
      `• ${silent.userId} ${silent.id} timed-out: no answer from its SSM agent within the command timeout (${commandTimeoutSeconds}s)`,
    );
    expect(simulator.control.invocations(accountId, silent.id)).toMatchObject([
      { status: 'TimedOut', statusDetails: 'DeliveryTimedOut' },
    ]);
    const [send] = simulator.control.calls(accountId, 'SendCommand');
    expect(send?.params).toMatchObject({ TimeoutSeconds: commandTimeoutSeconds });
    simulator.control.setAgentOnline(accountId, silent.id, true);
  }, 180_000);
});

describe('members destroyed while a rollout is planned', () => {
  it('when a server is terminated after the plan was posted and before approval, then it is skipped with a note and the rest gets the deploy', async () => {
    const servers = await serversOf([53001, 53002, 53003]);
    const [first, destroyed, last] = servers;
    if (!first || !destroyed || !last) throw new Error('three servers were launched');
    const version = 'v4.2.0';
    for (const s of servers)
      simulator.control.scriptRunCommand(accountId, s.id, { status: 'Success', afterMs: 300 });

    const planned = await plan(`/deploy ${version} user:53001,53002,53003 --concurrency 3`);
    expect(planned.text).toContain('3 running instances match, in 1 batch of at most 3.');
    await terminate(destroyed.id);
    const jobId = await approve(planned);

    const summary = await summaryOf(planned.ts, jobId);
    expect(summary).toContain(
      `Deploy ${version} to the servers of 3 members: succeeded on all 2 instances it could reach (job ${jobId}`,
    );
    expect(counts(summary)).toEqual({
      succeeded: 2,
      failed: 0,
      timedOut: 0,
      cancelled: 0,
      unreachable: 1,
      notStarted: 0,
    });
    expect(summary).toContain(
      `not reachable, so never run: 1 instance: 1 no longer running (${destroyed.id})`,
    );
    // SSM would have refused the whole batch over the terminated one: it was never named.
    expect(sendsOf(version)).toEqual([[first.id, last.id]]);
    expect(sentTo(version)).toEqual([first.id, last.id]);
  }, 120_000);

  it('when a server is terminated between waves, then its batch is never sent, the summary notes it, and the later waves run', async () => {
    const servers = await serversOf([54001, 54002, 54003]);
    const [first, destroyed, last] = servers;
    if (!first || !destroyed || !last) throw new Error('three servers were launched');
    const version = 'v4.3.0';
    for (const s of servers)
      simulator.control.scriptRunCommand(accountId, s.id, { status: 'Success', afterMs: 300 });
    // The first wave stays busy long enough for the member to destroy the next one's server.
    simulator.control.scriptRunCommand(accountId, first.id, { status: 'Success', afterMs: 10_000 });

    const planned = await plan(`/deploy ${version} user:54001,54002,54003 --concurrency 1`);
    expect(planned.text).toContain('3 running instances match, in 3 batches of at most 1.');
    const jobId = await approve(planned);
    await expect.poll(() => sentTo(version), { timeout: 30_000 }).toEqual([first.id]);
    await terminate(destroyed.id);

    const summary = await summaryOf(planned.ts, jobId);
    expect(summary).toContain(
      `Deploy ${version} to the servers of 3 members: succeeded on all 2 instances it could reach (job ${jobId}`,
    );
    expect(counts(summary)).toEqual({
      succeeded: 2,
      failed: 0,
      timedOut: 0,
      cancelled: 0,
      unreachable: 1,
      notStarted: 0,
    });
    expect(summary).toContain(
      `not reachable, so never run: 1 instance: 1 no longer running (${destroyed.id})`,
    );
    // One send per remaining wave, in plan order, and none named the destroyed server.
    expect(sendsOf(version)).toEqual([[first.id], [last.id]]);
    expect(sentTo(version)).toEqual([first.id, last.id].sort());
    // Each wave was checked with one DescribeInstances naming its ids, the destroyed one's included.
    const lookups = simulator.control.calls(accountId, 'DescribeInstances').map(instanceIdFilter);
    expect(lookups).toContainEqual([destroyed.id]);
    expect(lookups).toContainEqual([last.id]);
  }, 120_000);
});

describe('instances SSM cannot reach', () => {
  /** Every SendCommand of this version with its HTTP status: 400 is SSM refusing the whole batch. */
  const sendAttempts = (version: string) =>
    simulator.control
      .calls(accountId, 'SendCommand')
      .filter(
        (c) => (c.params as { Parameters?: { version?: string[] } }).Parameters?.version?.[0] === version,
      )
      .map((c) => ({ status: c.status, ids: (c.params as { InstanceIds: string[] }).InstanceIds }));

  /**
   * Three members' servers get `version`, with the one send held on its way to SSM (after fleetbot
   * checked every agent online) until the test has changed the middle server.
   */
  async function deployWithSendHeld(userIds: [number, number, number], version: string) {
    const [first, middle, last] = await serversOf(userIds);
    if (!first || !middle || !last) throw new Error('three servers were launched');
    for (const s of [first, middle, last])
      simulator.control.scriptRunCommand(accountId, s.id, { status: 'Success', afterMs: 300 });
    simulator.control.injectFault(accountId, {
      operation: 'SendCommand',
      kind: 'latency',
      latencyMs: 3_000,
      count: 1,
    });
    const planned = await plan(`/deploy ${version} user:${userIds.join(',')} --concurrency 3`);
    const jobId = await approve(planned);
    await expect.poll(() => simulator.held(), { timeout: 30_000 }).toBe(1);
    return { first, middle, last, planned, jobId };
  }
  const twoReachedOneNot = {
    succeeded: 2,
    failed: 0,
    timedOut: 0,
    cancelled: 0,
    unreachable: 1,
    notStarted: 0,
  };

  it('when 5 of 200 servers have an agent that never registered and 2 are stopped mid-deploy, then the other 193 get it once each and the 7 are reported not reachable', async () => {
    const ids = (
      await launchInstances(ec2, 200, { app: 'fleetbot', env: 'dev', user: '56000', ring: 'reach' })
    ).sort();
    const pick = (...at: number[]) => at.map((i) => ids[i] ?? '');
    // Kept after a failed provision, or still booting: SSM does not know them.
    const unregistered = pick(3, 60, 110, 160, 199);
    for (const id of unregistered) simulator.control.setAgentRegistered(accountId, id, false);
    const stopped = pick(120, 180);
    const version = 'v4.4.0';
    for (const id of ids)
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 300 });
    // The first wave stays busy until two servers of later waves have been stopped.
    for (const id of ids.slice(0, 50))
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 5_000 });

    const planned = await plan(`/deploy ${version} tag:ring=reach --concurrency 50`);
    expect(planned.text).toContain('200 running instances match, in 4 batches of at most 50.');
    expect(planned.text).toContain(
      '5 of them have no SSM agent online right now: checked again before each batch, and reported as not reachable if still so.',
    );
    const jobId = await approve(planned);
    await expect.poll(() => sendAttempts(version).length, { timeout: 30_000 }).toBe(1);
    await stop(...stopped);

    const summary = await summaryOf(planned.ts, jobId, 120_000);
    expect(summary).toContain(
      `Deploy ${version} to instances tagged ring=reach: succeeded on all 193 instances it could reach (job ${jobId}`,
    );
    expect(counts(summary)).toEqual({
      succeeded: 193,
      failed: 0,
      timedOut: 0,
      cancelled: 0,
      unreachable: 7,
      notStarted: 0,
    });
    expect(summary).toContain(
      `not reachable, so never run: 7 instances: 2 no longer running (${stopped.join(', ')}); 5 SSM agent not registered (${unregistered.join(', ')})`,
    );
    // Each wave was checked before it went out: SSM never had a batch to refuse.
    const attempts = sendAttempts(version);
    expect(attempts.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    const reached = attempts.flatMap((a) => a.ids).sort();
    const unreachable = new Set([...unregistered, ...stopped]);
    expect(reached).toEqual(ids.filter((id) => !unreachable.has(id)));
    expect(sentTo(version)).toEqual(reached);
  }, 180_000);

  it('when an agent drops off between the check and the send, then SSM refuses the batch, the rest goes without it, and the summary names it', async () => {
    const version = 'v4.5.0';
    const {
      first,
      middle: dropped,
      last,
      planned,
      jobId,
    } = await deployWithSendHeld([58001, 58002, 58003], version);
    simulator.control.setAgentOnline(accountId, dropped.id, false);
    try {
      const summary = await summaryOf(planned.ts, jobId);
      expect(counts(summary)).toEqual(twoReachedOneNot);
      expect(summary).toContain(
        `not reachable, so never run: 1 instance: 1 SSM agent offline (${dropped.id})`,
      );
      expect(sendAttempts(version)).toEqual([
        { status: 400, ids: [first.id, dropped.id, last.id] },
        { status: 200, ids: [first.id, last.id] },
      ]);
    } finally {
      simulator.control.setAgentOnline(accountId, dropped.id, true);
    }
  }, 120_000);

  it('when a server is stopped while its batch is on the way, then SSM keeps it Delayed and fleetbot cancels it there at once, without waiting out the command timeout', async () => {
    const version = 'v4.6.0';
    const {
      first,
      middle: halted,
      last,
      planned,
      jobId,
    } = await deployWithSendHeld([59001, 59002, 59003], version);
    await stop(halted.id);

    // SSM accepts a stopped instance and keeps trying to deliver until the command expires
    // (30 s here): a summary that waited for that would count it timed out.
    const summary = await summaryOf(planned.ts, jobId);
    expect(counts(summary)).toEqual(twoReachedOneNot);
    expect(summary).toContain(`not reachable, so never run: 1 instance: 1 no longer running (${halted.id})`);
    expect(sendAttempts(version)).toEqual([{ status: 200, ids: [first.id, halted.id, last.id] }]);
    // Cancelled on that one instance only, so it does not run the deploy whenever it starts again.
    const cancels = simulator.control.calls(accountId, 'CancelCommand').map((c) => c.params);
    expect(cancels).toEqual([expect.objectContaining({ InstanceIds: [halted.id] })]);
    expect(simulator.control.invocations(accountId, halted.id).map((i) => i.status)).toEqual(['Cancelled']);
  }, 120_000);

  it('when a running server’s command stays Delayed, then after ROLLOUT_DELIVERY_WAIT_SECONDS it is cancelled there and reported not reachable', async () => {
    // The send is held while the server stops, so SSM accepts it Delayed; fleetbot's first look at
    // the invocations is held while the server starts again with its agent still offline: EC2 says
    // running, SSM keeps the command Delayed.
    const version = 'v4.7.0';
    const { middle: stuck, planned, jobId } = await deployWithSendHeld([61001, 61002, 61003], version);
    await stop(stuck.id);
    simulator.control.injectFault(accountId, {
      operation: 'ListCommandInvocations',
      kind: 'latency',
      latencyMs: 3_000,
      count: 1,
    });
    await expect.poll(() => sendAttempts(version).length, { timeout: 30_000 }).toBe(1);
    await expect.poll(() => simulator.held(), { timeout: 30_000 }).toBe(1);
    simulator.control.setAgentOnline(accountId, stuck.id, false);
    await start(stuck.id);
    try {
      expect(simulator.control.invocations(accountId, stuck.id).map((i) => i.status)).toEqual(['Delayed']);
      const summary = await summaryOf(planned.ts, jobId);
      expect(counts(summary)).toEqual(twoReachedOneNot);
      expect(summary).toContain(
        `not reachable, so never run: 1 instance: 1 SSM could not deliver the command within ${deliveryWaitSeconds}s (${stuck.id})`,
      );
      const cancels = simulator.control.calls(accountId, 'CancelCommand').map((c) => c.params);
      expect(cancels).toEqual([expect.objectContaining({ InstanceIds: [stuck.id] })]);
      expect(simulator.control.invocations(accountId, stuck.id).map((i) => i.status)).toEqual(['Cancelled']);
    } finally {
      simulator.control.setAgentOnline(accountId, stuck.id, true);
    }
  }, 120_000);
});
