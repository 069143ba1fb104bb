import { EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { queueNames } from '../../src/jobs/queues.js';
import { main, type Running } from '../../src/main.js';
import { createPlans } from '../../src/store/plans.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { type FakeSlack, type SlackCall, startFakeSlack } from '../peers/slack-api.js';
import {
  blockActionsPayload,
  sendInteraction,
  sendSlashCommand,
  typedCommand,
} from '../peers/slack-signer.js';
import { expectPaced, pacerSlots } from '../support/pacer-slots.js';
import { sampleValue } from '../support/prometheus.js';
import { capturedLogger } from '../support/quiet-log.js';
import { rolloutEventsEnv, rolloutEventsOn } from '../support/rollout-events.js';
import { planIdOf, pressApprove } from '../support/slack-admin.js';

/** /deploy and /patch from Slack, over signed HTTP to the real Bolt receiver, run against the AWS simulator. */

const accountId = testAccountId();
const prefix = uniquePrefix('rollout');
const redis = testRedis();
const logs = capturedLogger();
const secret = 'rollout-signing-secret';
const ssmRate = 20;
const rolloutOps = [
  'SendCommand',
  'ListCommandInvocations',
  'CancelCommand',
  'GetCommandInvocation',
  'ListCommands',
  'DescribeInstanceInformation',
  'DescribeInstancePatchStates',
];
/**
 * Deadlines for what does happen, only later when the machine is busy (moto, shared by every test
 * file, is the slowest peer under load): generous, since these tests are about what happens, not speed.
 */
const answersWithinMs = 30_000;
const jobEndsWithinMs = 120_000;
let simulator: AwsSimulator;
/** How far the simulator's clock runs ahead of the real one: a test moves time on (never back) instead of waiting. */
let simulatorAheadMs = 0;
let slack: FakeSlack;
let running: Running;
let instanceIds: string[] = [];
const userOf = new Map<string, string>();

beforeAll(async () => {
  simulator = await startAwsSimulator({
    motoUrl: inject('motoUrl'),
    defaultAccountId: accountId,
    clock: () => Date.now() + simulatorAheadMs,
  });
  slack = await startFakeSlack();
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  const ec2 = new EC2Client({
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  for (let group = 0; group < 4; group++) {
    const userId = String(30000 + group);
    const res = await ec2.send(
      new RunInstancesCommand({
        ImageId: 'ami-12c6146b',
        InstanceType: 't3.small',
        MinCount: 50,
        MaxCount: 50,
        TagSpecifications: [
          {
            ResourceType: 'instance',
            Tags: [
              { Key: 'app', Value: 'fleetbot' },
              { Key: 'env', Value: 'dev' },
              { Key: 'user', Value: userId },
              { Key: 'ring', Value: group === 0 ? 'early' : 'main' },
            ],
          },
        ],
      }),
    );
    for (const i of res.Instances ?? []) {
      instanceIds.push(i.InstanceId ?? '');
      userOf.set(i.InstanceId ?? '', userId);
    }
  }
  instanceIds = instanceIds.sort();
  running = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      SLACK_BOT_TOKEN: 'xoxb-rollout',
      SLACK_SIGNING_SECRET: secret,
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ADMIN_USER_IDS: 'UANN,UBOB,UCAT',
      SLACK_ALLOWED_CHANNEL_IDS: 'COPS',
      SLACK_ALERT_CHANNEL_ID: 'CREPORTS',
      ROLLOUT_POLL_MS: '150',
      // Scheduled runs may still be going at the end; their jobs are left to the next worker.
      SHUTDOWN_GRACE_MS: '2000',
      ROLLOUT_TWO_PERSON_RULE: 'true',
      SSM_REQUESTS_PER_SECOND: String(ssmRate),
      DASHBOARD_PASSWORD: 'unused-dashboard-password',
      DASHBOARD_LISTEN: '127.0.0.1:0',
      // Debug, for the SSM pacer's slots.
      LOG_LEVEL: 'debug',
      ...(await rolloutEventsEnv(simulator, accountId)),
    },
    ['--role', 'all'],
    { logDestination: logs.destination },
  );
});

afterAll(async () => {
  await running?.stop();
  await slack?.close();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

beforeEach(async () => {
  // Plans left by one test must not satisfy or block the next.
  const stale = await redis.keys(`${prefix}:plan:*`);
  const keys = await redis.keys(`${prefix}:rollout-key:*`);
  if (stale.length + keys.length > 0) await redis.del(...stale, ...keys);
  slack.reset();
  simulator.control.resetCalls(accountId);
});

const events = () => `http://127.0.0.1:${running.ports.slack}/slack/events`;

async function slash(text: string, user = 'UANN', channel = 'COPS') {
  const res = await sendSlashCommand(
    events(),
    secret,
    typedCommand(text, { user, channel, responseUrl: slack.responseUrl() }),
  );
  expect(res.status).toBe(200);
}

async function answer(predicate: (c: SlackCall) => boolean = () => true): Promise<SlackCall> {
  return slack.waitFor(
    (c) => (c.method === 'chat.postMessage' || c.method === 'chat.postEphemeral') && predicate(c),
    answersWithinMs,
  );
}

async function press(user: string, value: string, messageTs: string, buttonText = 'Approve') {
  await sendInteraction(
    events(),
    secret,
    blockActionsPayload({
      actionId: 'cmd:0',
      value,
      userId: user,
      channelId: 'COPS',
      messageTs,
      // Slack sends the message as the presser saw it.
      messageText: messageText(messageTs),
      responseUrl: slack.responseUrl(),
      buttonText,
    }),
  );
}

/** Presses Approve on a plan message as `user`, with the message as it is now. */
const approve = (user: string, plan: SlackCall) =>
  pressApprove(events(), secret, slack, plan, { userId: user, channelId: 'COPS' });

/** The text of a channel message as it is now (after every chat.update). */
const messageText = (ts: string) => slack.channel('COPS').messages.find((m) => m.ts === ts)?.text ?? '';

/** `planned` runs once the plan is posted and before it is approved, i.e. before the job exists. */
async function planAndApprove(command: string, planned?: () => void): Promise<{ ts: string; jobId: string }> {
  await slash(command, 'UANN');
  const plan = await answer((c) => c.method === 'chat.postMessage');
  planned?.();
  const ts = String(plan.response.ts);
  await approve('UBOB', plan);
  const approved = await answer(
    (c) => c.method === 'chat.postEphemeral' && String(c.params.text).startsWith('Approved'),
  );
  return { ts, jobId: /job (rollout-[a-f0-9]+)/.exec(String(approved.params.text))?.[1] ?? '' };
}

// Nothing here reads a command's results: the events run covers only what does.
describe.skipIf(rolloutEventsOn)('bad input and authorization, over signed requests', () => {
  it.each([
    ['/deploy 1.2.3;rm -rf /', '"1.2.3;rm" is not a version'],
    ['/deploy $(reboot)', '"$(reboot)" is not a version'],
    ['/deploy <@U123|everyone>', 'is not a version'],
    ['/deploy v1.2.3 all --concurrency 0', '--concurrency takes a count from 1 to 10000'],
    ['/deploy v1.2.3 all --max-errors 250%', '--max-errors takes a count from 0 to 10000 or a percentage'],
    ['/deploy v1.2.3 --frobnicate 1', '"--frobnicate" is not an option of /deploy'],
    ['/deploy v1.2.3 tag:ring=`id`', 'is not a target'],
    ['/deploy v1.2.3 all --canary 5 --canary 6', '"--canary" is given twice'],
    [`/deploy v${'9'.repeat(80)}.0.0`, '…" is not a version'],
    ['/patch upgrade', '"upgrade" is not scan or install'],
    ['/patch scan --reboot if-needed', '--reboot only applies to patch install'],
  ])(
    'when an admin sends %s, then a usage message explains it and nothing is planned',
    async (command, expected) => {
      await slash(command);
      const reply = await answer();
      expect(reply.method).toBe('chat.postEphemeral');
      expect(String(reply.params.text)).toContain(
        expected.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'),
      );
      expect(String(reply.params.text)).toContain('Usage: /');
      expect(simulator.control.calls(accountId, 'SendCommand')).toEqual([]);
      expect(await redis.keys(`${prefix}:plan:*`)).toEqual([]);
    },
  );

  it('when a non-admin or an admin in another channel asks, then it is refused and nothing is planned', async () => {
    await slash('/deploy v1.2.3', 'UMALLORY');
    expect(String((await answer()).params.text)).toBe('/deploy is for fleet admins only.');
    slack.reset();
    await slash('/deploy v1.2.3', 'UANN', 'CRANDOM');
    expect(String((await answer()).params.text)).toBe(
      '/deploy works only in the fleet admin channels (COPS), not in this one.',
    );
    expect(await redis.keys(`${prefix}:plan:*`)).toEqual([]);
  });
});

// Nothing here reads a command's results: the events run covers only what does.
describe.skipIf(rolloutEventsOn)('plans and approval', () => {
  it('when an admin plans a deploy, then the plan says how many, in which batches, and when it stops; a repeat finds it', async () => {
    await slash('/deploy v2.0.0 all --concurrency 100 --max-errors 2');
    const plan = await answer();
    const text = String(plan.params.text);
    expect(text).toContain('Plan: Deploy v2.0.0 to all running fleet instances.');
    expect(text).toContain('200 running instances match, in 4 batches of at most 50.');
    expect(text).toContain(
      'At most 100 at once (--concurrency 100); it stops after the 3rd failure (up to 2 failures are tolerated).',
    );
    expect(text).toContain('Another admin must approve.');
    slack.reset();
    await slash('/deploy v2.0.0 all --concurrency 100 --max-errors 2');
    expect(String((await answer()).params.text)).toMatch(
      /^An identical plan is already waiting for approval \(plan [a-f0-9]{12}\)\.$/,
    );
  });

  it('when the requester approves their own plan under the two-person rule, then it is refused and stays pending', async () => {
    await slash('/deploy v2.1.0 user:30000');
    const plan = await answer();
    const planId = planIdOf(plan);
    slack.reset();
    await approve('UANN', plan);
    expect(String((await answer((c) => c.method === 'chat.postEphemeral')).params.text)).toBe(
      'The two-person rule is on: another admin must approve this plan.',
    );
    expect(await redis.exists(`${prefix}:plan:${planId}`)).toBe(1);
  });

  it('when a guest or the requester presses Approve, then the plan message is untouched and a second admin can still approve it once', async () => {
    // A member without a server: the approved job ends at once and touches no instance.
    await slash('/deploy v2.2.0 user:39999');
    const plan = await answer((c) => c.method === 'chat.postMessage');
    const ts = String(plan.response.ts);
    const planId = planIdOf(plan);
    await approve('UMALLORY', plan);
    // Slack names commands as they are typed there (SLACK_COMMAND).
    expect(String((await answer((c) => c.params.user === 'UMALLORY')).params.text)).toBe(
      '/fleetbot approve is for fleet admins only.',
    );
    await approve('UANN', plan);
    expect(String((await answer((c) => c.params.user === 'UANN')).params.text)).toBe(
      'The two-person rule is on: another admin must approve this plan.',
    );
    // Neither press reached the message: not one chat.update, and its buttons are still there.
    expect(slack.calls('chat.update').filter((c) => c.params.ts === ts)).toEqual([]);
    expect(JSON.stringify(slack.channel('COPS').messages.find((m) => m.ts === ts)?.blocks)).toContain(
      `/approve ${planId}`,
    );

    // Two admins press at the same moment: one approval, one job, one edit of the message.
    await Promise.all([approve('UBOB', plan), approve('UCAT', plan)]);
    const approved = await answer(
      (c) => c.method === 'chat.postEphemeral' && String(c.params.text).startsWith('Approved'),
    );
    const other = approved.params.user === 'UBOB' ? 'UCAT' : 'UBOB';
    expect(String((await answer((c) => c.params.user === other)).params.text)).toBe(
      'Somebody already pressed a button on that message; nothing more was done.',
    );
    const jobId = /job (rollout-[a-f0-9]+)/.exec(String(approved.params.text))?.[1] ?? '';
    expect(jobId).toBe(`rollout-${planId}`);
    const clears = slack.calls('chat.update').filter((c) => String(c.params.text).includes('→ Approve'));
    expect(clears.map((c) => String(c.params.text).split('\n').at(-1))).toEqual([
      `→ Approve (by ${String(approved.params.user).toLowerCase()})`,
    ]);
    expect(String(clears[0]?.params.text)).toContain('Plan: Deploy v2.2.0 to the servers of 1 member.');
    expect(clears[0]?.params.blocks).toEqual([]);
    await slack.waitFor(() => messageText(ts).includes('no running fleet instance matched'), jobEndsWithinMs);
    expect(
      slack.calls('chat.postEphemeral').filter((c) => String(c.params.text).startsWith('Approved')),
    ).toHaveLength(1);
  });

  it('when the same signed request arrives twice, then it has one effect and the replay is counted', async () => {
    const fields = {
      ...typedCommand('/deploy v2.3.0 user:30002', {
        user: 'UANN',
        channel: 'COPS',
        responseUrl: slack.responseUrl(),
      }),
      // One request, byte for byte: the same body under the same timestamp carries the same signature.
      trigger_id: '1234567890.replayed',
    };
    const timestampSec = Math.floor(Date.now() / 1000);
    expect((await sendSlashCommand(events(), secret, fields, { timestampSec })).status).toBe(200);
    expect((await sendSlashCommand(events(), secret, fields, { timestampSec })).status).toBe(200);
    await answer((c) => c.method === 'chat.postMessage');
    // A later request is answered after any effect of the replay would have been.
    await slash('/whoami');
    await answer((c) => String(c.params.text).startsWith('You are Slack user UANN'));
    expect(
      slack.calls('chat.postMessage').filter((c) => String(c.params.text).startsWith('Plan:')),
    ).toHaveLength(1);
    expect(slack.calls('chat.postEphemeral').map((c) => String(c.params.text))).not.toContainEqual(
      expect.stringContaining('An identical plan'),
    );
    const metrics = await fetch(`http://127.0.0.1:${running.ports.dashboard}/metrics`, {
      headers: { authorization: `Basic ${Buffer.from('ops:unused-dashboard-password').toString('base64')}` },
    }).then((r) => r.text());
    expect(sampleValue(metrics, 'fleetbot_chat_duplicate_updates_total{platform="slack"}')).toBe(1);
  });

  it('when nobody handles a plan before it expires, then its message says so, loses its buttons, and a late press runs nothing', async () => {
    await slash('/deploy v2.4.0 user:30003');
    const plan = await answer((c) => c.method === 'chat.postMessage');
    const ts = String(plan.response.ts);
    const planId = planIdOf(plan);
    // Time passes: the plan's deadline moves into the past and its expiry job comes due now. The
    // plan is posted before it is saved, and saved before its expiry job is queued.
    const ops = new Queue(queueNames.ops, { connection: redis, prefix });
    try {
      await expect
        .poll(() => ops.getJob(`plan-expiry-${planId}`), { timeout: answersWithinMs })
        .toBeDefined();
      const key = `${prefix}:plan:${planId}`;
      const stored = JSON.parse((await redis.get(key)) ?? '{}');
      await redis.set(key, JSON.stringify({ ...stored, expiresAtMs: Date.now() - 1000 }), 'KEEPTTL');
      await (await ops.getJob(`plan-expiry-${planId}`))?.promote();
    } finally {
      await ops.close();
    }
    await slack.waitFor(() => messageText(ts).startsWith('Plan expired at'), answersWithinMs);
    expect(messageText(ts)).toMatch(
      /^Plan expired at .+ without approval: Deploy v2\.4\.0 to the servers of 1 member\. Nothing ran; send the command again if it is still wanted\.$/,
    );
    expect(slack.channel('COPS').messages.find((m) => m.ts === ts)?.blocks ?? []).toEqual([]);
    const edits = slack.calls('chat.update').length;
    await approve('UBOB', plan);
    expect(String((await answer((c) => c.params.user === 'UBOB')).params.text)).toBe(
      `Plan ${planId} expired or was already handled. Nothing ran; send the command again.`,
    );
    expect(slack.calls('chat.update')).toHaveLength(edits);
    expect(simulator.control.calls(accountId, 'SendCommand')).toEqual([]);
  });

  it('when an admin schedules a patch install, then nothing is scheduled until another admin approves the plan', async () => {
    await slash('/schedule patch install "0 4 * * 6" all');
    const plan = await answer((c) => c.method === 'chat.postMessage');
    expect(String(plan.params.text)).toContain('Plan: Patch install');
    expect(String(plan.params.text)).toContain('Another admin must approve.');
    const planId = planIdOf(plan);
    await approve('UANN', plan);
    expect(String((await answer((c) => c.method === 'chat.postEphemeral')).params.text)).toBe(
      'The two-person rule is on: another admin must approve this plan.',
    );
    await slash('/schedules');
    expect(String((await answer((c) => String(c.params.text).startsWith('Nothing'))).params.text)).toBe(
      'Nothing is scheduled.',
    );
    await press('UBOB', `/reject ${planId}`, String(plan.response.ts), 'Cancel');
    await slack.waitFor(
      () => messageText(String(plan.response.ts)).startsWith('Cancelled by ubob'),
      answersWithinMs,
    );
  });

  it('when a plan has expired, then approving it runs nothing', async () => {
    const plans = createPlans(redis, prefix);
    await plans.save(
      {
        id: 'aaaaaaaaaaaa',
        key: 'expired-test',
        request: {
          operation: 'deploy',
          version: 'v9.9.9',
          reboot: 'never',
          targets: 'all',
          concurrency: '1',
          maxErrors: '0',
          canary: 0,
        },
        requestedBy: 'UANN',
        matched: 200,
        message: { platform: 'slack', chatId: 'COPS', messageId: '1700000000.000100' },
        expiresAt: new Date(Date.now() - 1000).toISOString(),
      },
      50,
      'Deploy v9.9.9',
    );
    await press('UBOB', '/approve aaaaaaaaaaaa', '1700000000.000100');
    expect(String((await answer((c) => c.method === 'chat.postEphemeral')).params.text)).toBe(
      'Plan aaaaaaaaaaaa expired or was already handled. Nothing ran; send the command again.',
    );
    expect(simulator.control.calls(accountId, 'SendCommand')).toEqual([]);
  });
});

describe('running a deploy', () => {
  it('when failures pass the limit, then no new batch starts, in-flight commands are cancelled, and the summary lists exactly the failures', async () => {
    const failing = instanceIds.slice(55, 60);
    for (const id of instanceIds)
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 300 });
    // The failing batch's other instances end well after the failures, so its slots free up only
    // once the limit is crossed: slots freed earlier would rightly be refilled before it.
    for (const id of instanceIds.slice(50, 100))
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 4000 });
    for (const id of failing)
      simulator.control.scriptRunCommand(accountId, id, {
        status: 'Failed',
        output: `disk full on ${id}`,
        afterMs: 1200,
      });
    // The batch after the failing one stays busy, so it is still in flight when the limit is crossed.
    for (const id of instanceIds.slice(100, 150))
      simulator.control.scriptRunCommand(accountId, id, { status: 'InProgress' });

    const { ts, jobId } = await planAndApprove('/deploy v3.0.0 all --concurrency 100 --max-errors 2');
    await slack.waitFor(() => messageText(ts).includes('failed (stopped after'), jobEndsWithinMs);
    const summary = messageText(ts);
    expect(summary).toContain(
      `Deploy v3.0.0 to all running fleet instances: failed (stopped after 5 failures; the limit was 2) (job ${jobId}`,
    );
    const listed = [...summary.matchAll(/• (\d+) (i-[0-9a-f]+) failed: disk full on (i-[0-9a-f]+)/g)];
    expect(listed.map((m) => m[2]).sort()).toEqual([...failing].sort());
    expect(listed.every((m) => m[1] === userOf.get(m[2] ?? '') && m[2] === m[3])).toBe(true);

    // Batches 0 and 1 went, batch 2 as batch 0's slots freed up (in parts, and perhaps not all of it
    // before the limit was crossed); batch 3 never started. No instance got two sends.
    const sends = simulator.control.calls(accountId, 'SendCommand');
    const sentIds = sends.flatMap((s) => (s.params as { InstanceIds: string[] }).InstanceIds);
    expect(new Set(sentIds).size).toBe(sentIds.length);
    expect(sentIds.filter((id) => !instanceIds.slice(0, 150).includes(id))).toEqual([]);
    expect(instanceIds.slice(0, 100).filter((id) => !sentIds.includes(id))).toEqual([]);
    expect(
      sends.every(
        (s) => (s.params as { Parameters?: { version?: string[] } }).Parameters?.version?.[0] === 'v3.0.0',
      ),
    ).toBe(true);
    expect(simulator.control.calls(accountId, 'CancelCommand').length).toBeGreaterThanOrEqual(1);
    const sent = simulator.control.invocations(accountId);
    expect(sent.filter((i) => instanceIds.slice(150).includes(i.instanceId))).toEqual([]);
    expect(
      sent
        .filter((i) => instanceIds.slice(100, 150).includes(i.instanceId))
        .every((i) => i.status === 'Cancelled'),
    ).toBe(true);
    for (const id of instanceIds) simulator.control.scriptRunCommand(accountId, id, { status: 'Success' });
  }, 300_000);

  it('when more instances fail than the summary shows, then the summary says so and its thread lists every one', async () => {
    const early = instanceIds.filter((id) => userOf.get(id) === '30000');
    const failing = early.slice(0, 20);
    for (const id of early) simulator.control.scriptRunCommand(accountId, id, { status: 'Success' });
    for (const id of failing)
      simulator.control.scriptRunCommand(accountId, id, { status: 'Failed', output: `exit 3 on ${id}` });
    const { ts, jobId } = await planAndApprove(
      '/deploy v3.3.0 tag:ring=early --concurrency 50 --max-errors 100%',
    );
    await slack.waitFor(() => messageText(ts).includes('are listed in the thread'), jobEndsWithinMs);
    const summary = messageText(ts);
    expect(summary).toContain(`failed (job ${jobId}`);
    expect([...summary.matchAll(/^• /gm)]).toHaveLength(15);
    expect(summary).toContain('… and 5 more: all 20 are listed in the thread.');

    const thread = await slack.waitFor(
      (c) => c.method === 'chat.postMessage' && c.params.thread_ts === ts,
      answersWithinMs,
    );
    const text = String(thread.params.text);
    expect(text.startsWith(`Failed instances of job ${jobId} (20):`)).toBe(true);
    const listed = [...text.matchAll(/^• (\d+) (i-[0-9a-f]+) failed/gm)];
    expect(listed.map((m) => m[2]).sort()).toEqual([...failing].sort());
    expect(listed.every((m) => m[1] === '30000')).toBe(true);
    for (const id of early) simulator.control.scriptRunCommand(accountId, id, { status: 'Success' });
  }, 300_000);

  it('when a deploy succeeds, then concurrency never exceeds the limit and SSM is called at most 0.25 times per instance within its budget', async () => {
    for (const id of instanceIds)
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 400 });
    // The job's SSM calls and pacer slots are those after the plan: the plan's own agent count is the
    // bot's read (through the fleet view's cache, so whether it calls SSM depends on earlier tests).
    let logMark = 0;
    let callMark = 0;
    const { ts, jobId } = await planAndApprove('/deploy v3.1.0 all --concurrency 60 --max-errors 0', () => {
      logMark = logs.lines.length;
      callMark = simulator.control.calls(accountId).length;
    });
    await slack.waitFor(() => messageText(ts).includes('succeeded on all 200 instances'), jobEndsWithinMs);
    expect(messageText(ts)).toContain(`(job ${jobId}`);
    const sent = simulator.control
      .invocations(accountId)
      .filter((i) => i.parameters.version?.[0] === 'v3.1.0');
    expect(sent).toHaveLength(200);
    expect(new Set(sent.map((i) => i.instanceId)).size).toBe(200);
    // In flight on the instances at each send: never more than the requested 60.
    for (const s of sent) {
      const overlapping = sent.filter(
        (o) => o.requestedAt <= s.requestedAt && o.requestedAt + 400 > s.requestedAt,
      );
      expect(overlapping.length).toBeLessThanOrEqual(60);
    }
    const calls = simulator.control
      .calls(accountId)
      .slice(callMark)
      .filter((c) => rolloutOps.includes(c.operation));
    expect(calls.length / 200).toBeLessThanOrEqual(0.25);
    // Within SSM_REQUESTS_PER_SECOND as the shared pacer scheduled it, and no call ahead of its slot.
    expectPaced(
      calls.map((c) => c.at),
      pacerSlots(logs.lines.slice(logMark), `${prefix}:pace:ssm`),
      ssmRate,
    );
    // Progress edits of this message: at most one per 3 s.
    const edits = slack
      .calls('chat.update')
      .filter((c) => c.params.ts === ts)
      .map((c) => c.at);
    for (let i = 1; i < edits.length; i++)
      expect((edits[i] ?? 0) - (edits[i - 1] ?? 0)).toBeGreaterThanOrEqual(2990);
  }, 300_000);

  it('when an admin cancels a running deploy, then it stops and says cancelled', async () => {
    for (const id of instanceIds) simulator.control.scriptRunCommand(accountId, id, { status: 'InProgress' });
    const { ts, jobId } = await planAndApprove('/deploy v3.2.0 all --concurrency 50');
    await expect
      .poll(() => simulator.control.calls(accountId, 'SendCommand').length, { timeout: jobEndsWithinMs })
      .toBeGreaterThan(0);
    await slash(`/cancel ${jobId}`, 'UBOB');
    expect(
      String((await answer((c) => String(c.params.text).startsWith('Cancelling'))).params.text),
    ).toContain(`Cancelling job ${jobId}`);
    await slack.waitFor(() => messageText(ts).includes(': cancelled (job'), jobEndsWithinMs);
    expect(simulator.control.calls(accountId, 'SendCommand')).toHaveLength(1);
    for (const id of instanceIds) simulator.control.scriptRunCommand(accountId, id, { status: 'Success' });
  }, 300_000);

  it('when a deploy is cancelled and SSM is still cancelling, then an instance that finishes meanwhile counts as succeeded', async () => {
    const [quick, slow, slower] = instanceIds.filter((id) => userOf.get(id) === '30003');
    if (!quick || !slow || !slower) throw new Error('member 30003 has instances');
    // In simulator time, which the test moves on: the quick one finishes only once the cancel is
    // under way, and the cancel reaches the agents later still.
    const finishMs = 5 * 60_000;
    simulator.control.scriptRunCommand(accountId, quick, { status: 'Success', afterMs: finishMs });
    for (const id of [slow, slower])
      simulator.control.scriptRunCommand(accountId, id, { status: 'InProgress' });
    // CancelCommand only asks: each invocation stays Cancelling until its agent acts on it.
    simulator.control.setCancelDelay(accountId, 2 * finishMs);
    try {
      const { ts, jobId } = await planAndApprove(`/deploy v3.3.0 ${quick},${slow},${slower} --concurrency 3`);
      await expect
        .poll(() => simulator.control.calls(accountId, 'SendCommand').length, { timeout: jobEndsWithinMs })
        .toBe(1);
      await slash(`/cancel ${jobId}`, 'UBOB');
      await expect
        .poll(() => simulator.control.calls(accountId, 'CancelCommand').length, { timeout: jobEndsWithinMs })
        .toBe(1);
      expect(simulator.control.invocations(accountId, quick).at(-1)?.status).toBe('Cancelling');
      // Still cancelling: the rollout counts nothing as cancelled yet.
      expect(messageText(ts)).not.toContain(': cancelled (job');
      simulatorAheadMs += finishMs;
      await expect
        .poll(() => simulator.control.invocations(accountId, quick).at(-1)?.status, {
          timeout: jobEndsWithinMs,
        })
        .toBe('Success');
      simulatorAheadMs += finishMs;
      await slack.waitFor(() => messageText(ts).includes(': cancelled (job'), jobEndsWithinMs);
      expect(messageText(ts)).toContain('succeeded 1 · failed 0 · timed out 0 · cancelled 2 ·');
      expect(simulator.control.invocations(accountId, quick).at(-1)?.status).toBe('Success');
    } finally {
      simulator.control.setCancelDelay(accountId, 0);
      for (const id of [quick, slow, slower])
        simulator.control.scriptRunCommand(accountId, id, { status: 'Success' });
    }
  }, 300_000);

  it('when instances of a batch finish early, then their slots are refilled before the batch is done, never past the concurrency', async () => {
    const early = instanceIds.filter((id) => userOf.get(id) === '30000');
    const first = early.slice(0, 20);
    for (const id of early)
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 200 });
    // Half of the first batch is slow: a whole-batch wave would hold the next 20 back until these end.
    for (const id of first.slice(10))
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 6000 });
    try {
      const { ts } = await planAndApprove('/deploy v3.6.0 tag:ring=early --concurrency 20');
      await slack.waitFor(() => messageText(ts).includes('succeeded on all 50 instances'), jobEndsWithinMs);
      const sent = simulator.control
        .invocations(accountId)
        .filter((i) => i.parameters.version?.[0] === 'v3.6.0');
      expect(sent.map((i) => i.instanceId).sort()).toEqual(early);
      const slowEnd = Math.max(
        ...sent.filter((i) => first.slice(10).includes(i.instanceId)).map((i) => i.endedAt ?? 0),
      );
      const refilled = sent.filter((i) => !first.includes(i.instanceId) && i.requestedAt < slowEnd);
      expect(refilled.length).toBeGreaterThan(0);
      const overlap = Math.max(
        ...sent.map(
          (i) =>
            sent.filter((j) => j.requestedAt <= i.requestedAt && (j.endedAt ?? Infinity) > i.requestedAt)
              .length,
        ),
      );
      expect(overlap).toBeLessThanOrEqual(20);
    } finally {
      for (const id of early) simulator.control.scriptRunCommand(accountId, id, { status: 'Success' });
    }
  }, 300_000);

  it('when a deploy has a canary, then the canary instances run alone first and the rest only once they are done', async () => {
    const early = instanceIds.filter((id) => userOf.get(id) === '30000');
    const canary = early.slice(0, 5);
    for (const id of early)
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 100 });
    for (const id of canary)
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 1500 });
    try {
      const { ts } = await planAndApprove('/deploy v3.7.0 tag:ring=early --concurrency 25 --canary 5');
      await slack.waitFor(() => messageText(ts).includes('succeeded on all 50 instances'), jobEndsWithinMs);
      const sent = simulator.control
        .invocations(accountId)
        .filter((i) => i.parameters.version?.[0] === 'v3.7.0');
      const firstCommand = sent[0]?.commandId;
      expect(sent.filter((i) => i.commandId === firstCommand).map((i) => i.instanceId)).toEqual(canary);
      const canaryEnd = Math.max(
        ...sent
          .filter((i) => canary.includes(i.instanceId))
          .map((i) => i.endedAt ?? Number.POSITIVE_INFINITY),
      );
      expect(
        sent.filter((i) => !canary.includes(i.instanceId)).every((i) => i.requestedAt >= canaryEnd),
      ).toBe(true);
      expect(sent).toHaveLength(50);
    } finally {
      for (const id of early) simulator.control.scriptRunCommand(accountId, id, { status: 'Success' });
    }
  }, 300_000);

  it('when a canary instance fails, then nothing past the canary is sent', async () => {
    const early = instanceIds.filter((id) => userOf.get(id) === '30000');
    const canary = early.slice(0, 5);
    for (const id of early)
      simulator.control.scriptRunCommand(accountId, id, { status: 'Success', afterMs: 100 });
    simulator.control.scriptRunCommand(accountId, canary[2] ?? '', { status: 'Failed', afterMs: 300 });
    try {
      const { ts } = await planAndApprove(
        '/deploy v3.8.0 tag:ring=early --concurrency 25 --canary 5 --max-errors 0',
      );
      await slack.waitFor(() => messageText(ts).includes('failed (stopped after'), jobEndsWithinMs);
      const sent = simulator.control
        .invocations(accountId)
        .filter((i) => i.parameters.version?.[0] === 'v3.8.0');
      expect(sent.map((i) => i.instanceId)).toEqual(canary);
    } finally {
      for (const id of early) simulator.control.scriptRunCommand(accountId, id, { status: 'Success' });
    }
  }, 300_000);
});

// A patch's summary reads compliance from SSM's patch states, whatever told it the command ended.
describe.skipIf(rolloutEventsOn)('patching', () => {
  it('when a patch scan runs, then compliance comes from SSM patch states, not from the truncated output', async () => {
    const early = instanceIds.filter((id) => userOf.get(id) === '30000');
    for (const [n, id] of early.entries())
      simulator.control.scriptRunCommand(accountId, id, {
        status: 'Success',
        // Linux RunPatchBaseline output is long and its counts may sit past the 2,500 characters
        // ListCommandInvocations shows, or be missing: here it says nothing about them at all.
        output: `${'Installing... '.repeat(300)}\nDone.`,
        patchState: {
          installed: 40,
          installedPendingReboot: n === 0 ? 1 : 0,
          missing: n < 3 ? 2 : 0,
          failed: n === 4 ? 1 : 0,
        },
      });
    const { ts } = await planAndApprove('/patch scan tag:ring=early');
    await slack.waitFor(() => messageText(ts).includes('Compliance:'), jobEndsWithinMs);
    const text = messageText(ts);
    expect(text).toContain('Patch scan to instances tagged ring=early: succeeded on all 50 instances');
    expect(text).toContain(
      `Compliance: 3 instances missing patches (${early[0]}: 2, ${early[1]}: 2, ${early[2]}: 2).`,
    );
    expect(text).toContain(`Patches that failed to install: ${early[4]}: 1.`);
    expect(text).toContain(`Pending a reboot: ${early[0]}.`);
    expect(text).not.toContain('No patch state from this run');
    const sends = simulator.control.calls(accountId, 'SendCommand');
    expect(sends[0]?.params).toMatchObject({
      DocumentName: 'AWS-RunPatchBaseline',
      Parameters: { Operation: ['Scan'], RebootOption: ['NoReboot'] },
    });
    // One DescribeInstancePatchStates per 50 instances, each naming at most 50.
    const states = simulator.control.calls(accountId, 'DescribeInstancePatchStates');
    expect(states).toHaveLength(1);
    expect(states.map((c) => (c.params as { InstanceIds: string[] }).InstanceIds.sort())).toEqual([early]);
  }, 300_000);

  it('when a patch install fails on an instance, then its error output is read from the PatchLinux step and shown', async () => {
    const [failing] = instanceIds.filter((id) => userOf.get(id) === '30002');
    if (!failing) throw new Error('member 30002 has instances');
    simulator.control.scriptRunCommand(accountId, failing, {
      status: 'Failed',
      errorOutput: 'yum: cannot reach the package repository',
    });
    const { ts } = await planAndApprove(`/patch install ${failing}`);
    await slack.waitFor(() => messageText(ts).includes('Failed instances:'), jobEndsWithinMs);
    expect(messageText(ts)).toContain(`• 30002 ${failing} failed: yum: cannot reach the package repository`);
    // RunPatchBaseline has a step per platform: without PluginName SSM refuses GetCommandInvocation.
    const reads = simulator.control.calls(accountId, 'GetCommandInvocation');
    expect(reads.map((c) => (c.params as { PluginName?: string }).PluginName)).toEqual(['PatchLinux']);
    expect(reads.map((c) => c.status)).toEqual([200]);
    // Its state is older than this run (or absent): compliance is said to be unknown, not clean.
    expect(messageText(ts)).toContain('Compliance: no instance reported a patch state from this run.');
  }, 300_000);

  it('when a patch install with reboot runs, then RunPatchBaseline gets Install and RebootIfNeeded', async () => {
    const { ts } = await planAndApprove('/patch install user:30001 --reboot if-needed --concurrency 25');
    await slack.waitFor(() => messageText(ts).includes('succeeded on all 50 instances'), jobEndsWithinMs);
    // At least two sends (25 at a time); more when slots free up one by one and are refilled.
    const sends = simulator.control.calls(accountId, 'SendCommand');
    expect(sends.length).toBeGreaterThanOrEqual(2);
    for (const send of sends)
      expect(send.params).toMatchObject({
        Parameters: { Operation: ['Install'], RebootOption: ['RebootIfNeeded'] },
      });
    const patched = sends.flatMap((s) => (s.params as { InstanceIds: string[] }).InstanceIds).sort();
    expect(patched).toEqual(instanceIds.filter((id) => userOf.get(id) === '30001'));
  }, 300_000);
});

// Nothing here reads a command's results: the events run covers only what does.
describe.skipIf(rolloutEventsOn)('metrics of a rollout', () => {
  const scrape = async () => {
    const res = await fetch(`http://127.0.0.1:${running.ports.dashboard}/metrics`, {
      headers: { authorization: `Basic ${btoa('ops:unused-dashboard-password')}` },
    });
    expect(res.status).toBe(200);
    return res.text();
  };

  it('when Slack answers 429 during a deploy, then Retry-After is honoured, the summary still lands, and /metrics counts it all', async () => {
    for (const id of instanceIds) simulator.control.scriptRunCommand(accountId, id, { status: 'Success' });
    const before = await scrape();
    slack.failNext('chat.update', { retryAfter: 1, times: 1 });
    const { ts } = await planAndApprove('/deploy v3.4.0 tag:ring=early --concurrency 50 --max-errors 0');
    await slack.waitFor(() => messageText(ts).includes('succeeded on all 50 instances'), jobEndsWithinMs);
    // Slack's Retry-After was honoured: nothing was updated until it had passed.
    const updates = slack.calls('chat.update');
    const limited = updates.findIndex((c) => c.status === 429);
    expect(limited).toBeGreaterThanOrEqual(0);
    expect((updates[limited + 1]?.at ?? 0) - (updates[limited]?.at ?? 0)).toBeGreaterThanOrEqual(1000);
    // The summary is the job's last step; BullMQ marks it completed (and the worker counts it) a moment
    // later. Wait for that count rather than scraping once and racing it.
    const completed =
      'fleetbot_job_duration_seconds_count{queue="rollout",name="deploy",outcome="completed"}';
    await expect
      .poll(async () => sampleValue(await scrape(), completed) - sampleValue(before, completed))
      .toBeGreaterThanOrEqual(1);
    const after = await scrape();
    const grew = (sample: string) => sampleValue(after, sample) - sampleValue(before, sample);

    // The plan and the approval notes were sent; the plan message was edited as the job moved on.
    expect(grew('fleetbot_chat_messages_total{platform="slack",action="sent"}')).toBeGreaterThanOrEqual(2);
    expect(grew('fleetbot_chat_messages_total{platform="slack",action="edited"}')).toBeGreaterThanOrEqual(1);
    expect(grew('fleetbot_chat_rate_limited_total{platform="slack"}')).toBe(1);
    expect(grew(completed)).toBe(1);
    // 50 instances, all at once: one batch, one SendCommand.
    expect(grew('fleetbot_aws_calls_total{service="ssm",operation="SendCommand",outcome="ok"}')).toBe(1);
    expect(after).toMatch(/^fleetbot_jobs\{queue="rollout",state="completed"\} [1-9]/m);
  }, 300_000);
});

// Nothing here reads a command's results: the events run covers only what does.
describe.skipIf(rolloutEventsOn)('scheduled maintenance', () => {
  it('when an admin schedules a patch scan, then it fires on its cron, posts its summary to the report channel, never overlaps itself, and can be removed', async () => {
    // Each scan outlasts the 2 s cron, so runs come due while one is still going.
    for (const id of instanceIds)
      simulator.control.scriptRunCommand(accountId, id, {
        status: 'Success',
        output: 'MissingCount : 0',
        afterMs: 3000,
      });
    await slash('/schedule patch scan "*/2 * * * * *" tag:ring=early');
    const plan = await answer((c) => c.method === 'chat.postMessage');
    expect(String(plan.params.text)).toMatch(
      /^Plan: Patch scan to instances tagged ring=early on the schedule "\*\/2 \* \* \* \* \*" \(UTC\)\.\nEach run reports to CREPORTS;/,
    );
    const planTs = String(plan.response.ts);
    await approve('UBOB', plan);
    await slack.waitFor(() => messageText(planTs).startsWith('Scheduled:'), answersWithinMs);
    const created = messageText(planTs);
    expect(created).toMatch(
      /^Scheduled: Patch scan to instances tagged ring=early on the schedule "\*\/2 \* \* \* \* \*" \(UTC\) as sched-[a-f0-9]{6}, approved by ubob\./,
    );
    const id = /(sched-[a-f0-9]{6})/.exec(created)?.[1] ?? '';
    slack.reset();
    await slash('/schedules');
    expect(String((await answer((c) => c.params.channel === 'COPS')).params.text)).toContain(
      `${id}  "*/2 * * * * *"  Patch scan to instances tagged ring=early  by UANN, approved by UBOB`,
    );

    const report = await slack.waitFor(
      (c) => c.method === 'chat.postMessage' && c.params.channel === 'CREPORTS',
      jobEndsWithinMs,
    );
    const ts = String(report.response.ts);
    await slack.waitFor(
      () => (slack.channel('CREPORTS').messages.find((m) => m.ts === ts)?.text ?? '').includes('Compliance'),
      jobEndsWithinMs,
    );
    const summary = slack.channel('CREPORTS').messages.find((m) => m.ts === ts)?.text ?? '';
    expect(summary).toContain('Patch scan to instances tagged ring=early: succeeded on all 50 instances');
    expect(summary).toContain('Compliance: none of the 50 instances reporting a patch state misses patches.');
    // Runs due meanwhile were skipped: the next report was posted only after this one finished.
    await expect
      .poll(() => logs.lines.some((l) => l.includes('scheduled run skipped')), { timeout: jobEndsWithinMs })
      .toBe(true);
    const finishedAt =
      slack
        .calls('chat.update')
        .find((c) => c.params.ts === ts && String(c.params.text).includes('Compliance'))?.at ?? 0;
    const reports = slack
      .calls('chat.postMessage')
      .filter((c) => c.params.channel === 'CREPORTS')
      .map((c) => c.at);
    expect(reports.slice(1).every((at) => at >= finishedAt)).toBe(true);

    slack.reset();
    await slash(`/unschedule ${id}`);
    // Runs keep posting to the report channel meanwhile; the answer comes in the channel asked from.
    expect(String((await answer((c) => c.params.channel === 'COPS')).params.text)).toBe(
      `Removed schedule ${id}. Runs already started finish on their own.`,
    );
    slack.reset();
    await slash('/schedules');
    expect(String((await answer((c) => c.params.channel === 'COPS')).params.text)).toBe(
      'Nothing is scheduled.',
    );
  }, 300_000);

  it('when the cron expression is malformed, then nothing is scheduled', async () => {
    await slash('/schedule patch scan "every day" all');
    expect(String((await answer()).params.text)).toContain(
      'is not a schedule. Example: /fleetbot schedule patch scan',
    );
    slack.reset();
    await slash('/schedules');
    expect(String((await answer()).params.text)).toBe('Nothing is scheduled.');
  });
});
