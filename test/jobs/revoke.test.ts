import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import {
  AddTagsToResourceCommand,
  ListTagsForResourceCommand,
  PutParameterCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { main, type Running } from '../../src/main.js';
import { createMembers } from '../../src/store/members.js';
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
import { launchInstances } from '../support/fleet.js';
import { capturedLogger } from '../support/quiet-log.js';

/**
 * /revoke end to end: a signed Slack command to the real Bolt receiver, the job on a real worker,
 * EC2 and SSM in the simulator (moto behind it), and the termination question answered with its buttons.
 */

const accountId = testAccountId();
const prefix = uniquePrefix('revoke');
const redis = testRedis();
const logs = capturedLogger();
const parameterPrefix = 'fbrevoke';
const signingSecret = 'revoke-signing-secret';
const channel = 'COPS';
const kinds = ['telegram-bot-token', 'openai-api-key'];
const ended = '9351';
const kept = '9352';
let simulator: AwsSimulator;
let slack: FakeSlack;
let running: Running;
let ec2: EC2Client;
let ssm: SSMClient;
const servers = new Map<string, string>();

const paramName = (userId: string, kind: string) => `/${parameterPrefix}/users/${userId}/${kind}`;
const eventsUrl = () => `http://127.0.0.1:${running.ports.slack}/slack/events`;

async function tagsOf(userId: string, kind: string): Promise<Record<string, string | undefined>> {
  const res = await ssm.send(
    new ListTagsForResourceCommand({ ResourceType: 'Parameter', ResourceId: paramName(userId, kind) }),
  );
  return Object.fromEntries((res.TagList ?? []).map((t) => [t.Key ?? '', t.Value]));
}

async function stateOf(instanceId: string): Promise<string | undefined> {
  const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  return res.Reservations?.[0]?.Instances?.[0]?.State?.Name;
}

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  slack = await startFakeSlack();
  const clientOptions = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    maxAttempts: 1,
  };
  ec2 = new EC2Client(clientOptions);
  ssm = new SSMClient(clientOptions);
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  const members = createMembers(redis, prefix);
  for (const userId of [ended, kept]) {
    const [invite] = await members.createInvites(1, 60_000, 'UADMIN', new Date());
    expect(await members.redeem(invite?.code ?? '', userId, new Date())).toBe('joined');
    // A member's running server with their parameters bound to it, as a finished provision leaves it.
    const [id = ''] = await launchInstances(ec2, 1, { app: 'fleetbot', env: 'dev', user: userId });
    servers.set(userId, id);
    const owner = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]
      ?.OwnerId;
    for (const kind of kinds) {
      await ssm.send(
        new PutParameterCommand({
          Name: paramName(userId, kind),
          Value: kind === 'openai-api-key' ? `sk-${'R'.repeat(30)}` : `77${userId}:${'T'.repeat(35)}`,
          Type: 'SecureString',
        }),
      );
      await ssm.send(
        new AddTagsToResourceCommand({
          ResourceType: 'Parameter',
          ResourceId: paramName(userId, kind),
          Tags: [{ Key: 'InstanceArn', Value: `arn:aws:ec2:us-east-1:${owner}:instance/${id}` }],
        }),
      );
    }
  }
  running = await main(
    {
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: simulator.url,
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      PARAMETER_PREFIX: parameterPrefix,
      SLACK_BOT_TOKEN: 'xoxb-revoke-test',
      SLACK_SIGNING_SECRET: signingSecret,
      SLACK_API_URL: slack.apiUrl,
      SLACK_LISTEN: '127.0.0.1:0',
      SLACK_ADMIN_USER_IDS: 'UADMIN',
      INSTANCE_AMI_ID: 'ami-12c6146b',
      LOG_LEVEL: 'debug',
    },
    ['--role', 'bot,worker'],
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

/** Sends `/revoke <userId>` and waits for the worker to ask about termination in the job's message. */
async function revoke(userId: string): Promise<{ ts: string; text: string; buttons: unknown[] }> {
  slack.reset();
  const res = await sendSlashCommand(
    eventsUrl(),
    signingSecret,
    typedCommand(`/revoke ${userId}`, { user: 'UADMIN', channel, responseUrl: slack.responseUrl() }),
  );
  expect(res.status).toBe(200);
  const whisper = await slack.waitFor((c) => c.method === 'chat.postEphemeral', 10_000);
  expect(whisper.params.text).toBe(`Telegram user ${userId} is no longer a member.`);
  const posted = await slack.waitFor((c) => c.method === 'chat.postMessage', 10_000);
  expect(posted.params.text).toBe(
    `Stopping the server of Telegram user ${userId} and unlinking their secrets from it…`,
  );
  const ts = String(posted.response.ts);
  const asked = (c: SlackCall) =>
    c.method === 'chat.update' && c.params.ts === ts && /Terminate/.test(String(c.params.text));
  const update = await slack.waitFor(asked, 30_000);
  const blocks = update.params.blocks as { type: string; elements?: unknown[] }[];
  return {
    ts,
    text: String(update.params.text),
    buttons: blocks.find((b) => b.type === 'actions')?.elements ?? [],
  };
}

function press(ts: string, actionId: string, value: string, buttonText: string) {
  return sendInteraction(
    eventsUrl(),
    signingSecret,
    blockActionsPayload({
      actionId,
      value,
      userId: 'UADMIN',
      channelId: channel,
      messageTs: ts,
      responseUrl: slack.responseUrl(),
      buttonText,
    }),
  );
}

describe('/revoke', () => {
  it('when an admin revokes a member, then their server is stopped, their parameters unbound, and confirming terminates it', async () => {
    const id = servers.get(ended) ?? '';
    const question = await revoke(ended);
    expect(question.text).toMatch(
      new RegExp(
        `^The server of Telegram user ${ended}, ${id}, is (stopping|stopped) and their secrets are unlinked from it\\. Terminate it too\\?`,
      ),
    );
    expect(question.buttons).toEqual([
      expect.objectContaining({
        value: `/destroy-for-confirmed ${ended}`,
        text: expect.objectContaining({ text: 'Terminate it' }),
      }),
      expect.objectContaining({
        value: '/cancelled',
        text: expect.objectContaining({ text: 'Keep it stopped' }),
      }),
    ]);
    await expect.poll(() => stateOf(id), { timeout: 10_000 }).toBe('stopped');
    for (const kind of kinds) expect(await tagsOf(ended, kind)).not.toHaveProperty('InstanceArn');
    // The other member is untouched.
    expect(await stateOf(servers.get(kept) ?? '')).toBe('running');
    expect(simulator.control.calls(accountId, 'TerminateInstances')).toHaveLength(0);

    slack.reset();
    await press(question.ts, 'cmd:0', `/destroy-for-confirmed ${ended}`, 'Terminate it');
    const done = await slack.waitFor((c) => c.method === 'chat.postMessage', 10_000);
    expect(done.params.text).toBe(`${id} (Telegram user ${ended}) is being terminated.`);
    await expect.poll(() => stateOf(id), { timeout: 10_000 }).toBe('terminated');
  });

  it('when the admin declines, then the server stays stopped and unbound', async () => {
    const id = servers.get(kept) ?? '';
    const question = await revoke(kept);
    await expect.poll(() => stateOf(id), { timeout: 10_000 }).toBe('stopped');
    for (const kind of kinds) expect(await tagsOf(kept, kind)).not.toHaveProperty('InstanceArn');
    const terminations = simulator.control.calls(accountId, 'TerminateInstances').length;

    slack.reset();
    await press(question.ts, 'cmd:1', '/cancelled', 'Keep it stopped');
    const answer = await slack.waitFor((c) => c.method === 'chat.postEphemeral', 10_000);
    expect(answer.params.text).toBe('Cancelled. Nothing was changed.');
    // The buttons are gone from the question, which keeps who chose what.
    const edited = await slack.waitFor(
      (c) => c.method === 'chat.update' && c.params.ts === question.ts,
      10_000,
    );
    expect(String(edited.params.text)).toContain('→ Keep it stopped');
    expect(edited.params.blocks).toEqual([]);
    expect(simulator.control.calls(accountId, 'TerminateInstances')).toHaveLength(terminations);
    expect(await stateOf(id)).toBe('stopped');
  });

  it('when the user is no member and has no server, then the job says so and changes nothing', async () => {
    slack.reset();
    await sendSlashCommand(
      eventsUrl(),
      signingSecret,
      typedCommand('/revoke 9359', { user: 'UADMIN', channel, responseUrl: slack.responseUrl() }),
    );
    const posted = await slack.waitFor((c) => c.method === 'chat.postMessage', 10_000);
    const ts = String(posted.response.ts);
    const update = await slack.waitFor((c) => c.method === 'chat.update' && c.params.ts === ts, 30_000);
    expect(update.params.text).toBe(
      'Telegram user 9359 has no server. Their stored secrets are unlinked from any server.',
    );
  });
});
