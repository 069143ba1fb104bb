import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { helpText } from '../../src/bot/commands/help.js';
import { allCommands } from '../../src/bot/commands/index.js';
import { createRegistry } from '../../src/bot/registry.js';
import { createSlackAdapter, slackClient, slackOutbox } from '../../src/bot/slack.js';
import {
  commandNamesOf,
  dispatchText,
  namespaceProblem,
  slackCommandNames,
  slackMentions,
} from '../../src/bot/slack-commands.js';
import type { Caller } from '../../src/core/caller.js';
import { type FakeSlack, startFakeSlack } from '../peers/slack-api.js';
import { capturedLogger } from '../support/quiet-log.js';

const names = commandNamesOf(allCommands);
const rewrite = slackMentions(names);
const inSlack = (text: string) => rewrite(text, 'fleetbot');

describe('Slack slash command → dispatcher text', () => {
  it.each([
    ['/fleetbot', 'jobs', '/jobs'],
    ['/fleetbot', 'invite 3', '/invite 3'],
    ['/fleetbot', 'help', '/help'],
    ['/fleetbot', '', '/help'],
    ['/fleetbot', '   ', '/help'],
    ['/fleetbot', 'deploy 1.2.3', '/deploy 1.2.3'],
    ['/fleetbot', '  cancel   rollout-12  ', '/cancel   rollout-12'],
    ['/fleetbot', '/jobs', '/jobs'],
    ['/FleetBot', 'jobs', '/jobs'],
    ['/deploy', 'v1.2.3 all --canary 1', '/deploy v1.2.3 all --canary 1'],
    ['/patch', 'scan', '/patch scan'],
    ['/deploy', '', '/deploy'],
    ['/frobnicate', 'now', '/frobnicate now'],
    ['/jobs', '', '/jobs'],
  ])('when Slack sends %s with text %j, then the dispatcher gets %j', (command, text, expected) => {
    expect(dispatchText('fleetbot', command, text)).toBe(expected);
  });

  it('when the namespace is configured, then only that command is unwrapped', () => {
    expect(dispatchText('ops', '/ops', 'jobs')).toBe('/jobs');
    expect(dispatchText('ops', '/ops', '')).toBe('/help');
    expect(dispatchText('ops', '/fleetbot', 'jobs')).toBe('/fleetbot jobs');
  });

  it('when the app registers its commands, then they are /deploy, /patch and the namespace', () => {
    expect(slackCommandNames('fleetbot')).toEqual(['/deploy', '/patch', '/fleetbot']);
    expect(slackCommandNames('ops')).toEqual(['/deploy', '/patch', '/ops']);
  });
});

describe('command mentions in Slack messages', () => {
  it.each([
    ['Send /help to see what you can do.', 'Send /fleetbot help to see what you can do.'],
    ['/jobs', '/fleetbot jobs'],
    ['Stop it with /cancel rollout-12.', 'Stop it with /fleetbot cancel rollout-12.'],
    [
      'Usage: /invite [count 1-20] [expiry, e.g. 7d]',
      'Usage: /fleetbot invite [count 1-20] [expiry, e.g. 7d]',
    ],
    ['details: (/job rollout-12)', 'details: (/fleetbot job rollout-12)'],
    ['run "/jobs" or \'/job 7\'', 'run "/fleetbot jobs" or \'/fleetbot job 7\''],
    ['run `/ping`', 'run `/fleetbot ping`'],
    ['“/audit job:7”', '“/fleetbot audit job:7”'],
    ['/jobs\n/job <job id>\n\t/ping', '/fleetbot jobs\n/fleetbot job <job id>\n\t/fleetbot ping'],
    ['/destroy-for-confirmed 42', '/fleetbot destroy-for-confirmed 42'],
    ['/provision-for 42 and /destroy-for 42', '/fleetbot provision-for 42 and /fleetbot destroy-for 42'],
    ['/fleet, /members: both', '/fleetbot fleet, /fleetbot members: both'],
  ])('when fleetbot writes %j, then Slack shows %j', (text, expected) => {
    expect(inSlack(text)).toBe(expected);
  });

  it.each([
    ['/deploy v1.2.3 all', 'the app has /deploy itself'],
    ['/patch scan all', 'the app has /patch itself'],
    ["I don't know /frobnicate.", 'not a fleetbot command'],
    ['stored at /fleetbot/users/1/openai-api-key', 'a parameter path'],
    ['/secrets/users/1', 'a path starting with a command name'],
    ['/fleet/users/1/openai-api-key', 'a path starting with a command name'],
    ['see https://fleetbot.example.com/jobs and http://host/help', 'URLs'],
    ['a/jobs x:/ping', 'not at the start of a word'],
    ['/jobsx /helpme /destroy-forever', 'longer words'],
    ['/Jobs', 'commands are written in lowercase'],
    ['/fleetbot jobs', 'already namespaced'],
  ])('when fleetbot writes %j, then it stays as is (%s)', (text) => {
    expect(inSlack(text)).toBe(text);
  });

  it('when the namespace is configured, then mentions use it', () => {
    expect(rewrite('Send /help or /deploy v1.2.3.', 'ops')).toBe('Send /ops help or /deploy v1.2.3.');
  });

  it('when a message is rendered twice (an edited message is posted again), then mentions are rewritten once', () => {
    const text = 'Send /help. Usage: /invite [count]; /cancel rollout-1 (or /job rollout-1)';
    expect(inSlack(inSlack(text))).toBe(inSlack(text));
  });

  it('when an admin asks for help, then every command line reads as typed in Slack', () => {
    const admin: Caller = { platform: 'slack', userId: 'UADMIN', displayName: 'admin', role: 'admin' };
    const lines = helpText(admin, createRegistry(allCommands)).split('\n');
    const expected = lines.map((line) =>
      /^\/(deploy|patch) /.test(line) ? line : line.replace(/^\//, '/fleetbot '),
    );
    expect(lines.filter((l) => l.startsWith('/')).length).toBeGreaterThan(10);
    expect(inSlack(lines.join('\n')).split('\n')).toEqual(expected);
  });

  it('when no command names are known, then text is unchanged', () => {
    expect(slackMentions([])('/jobs', 'fleetbot')).toBe('/jobs');
  });
});

describe('namespace', () => {
  it.each(['invite', 'remind', 'msg', 'dm', 'status', 'away', 'who', 'leave', 'topic', 'shrug'])(
    'when the namespace is /%s, then it is refused as built into Slack',
    (namespace) => {
      expect(namespaceProblem(namespace, names)).toBe(
        `Slack command "/${namespace}" is built into Slack; an app cannot register it`,
      );
    },
  );

  it.each(['deploy', 'patch', 'jobs', 'help', 'cancel'])(
    'when the namespace is /%s, then it is refused as a fleetbot command name',
    (namespace) => {
      expect(namespaceProblem(namespace, names)).toBe(
        `Slack command "/${namespace}" is already a fleetbot command name; pick another namespace`,
      );
    },
  );

  it.each(['Fleetbot', 'fleet bot', '', '-x', 'a'.repeat(32), '/fleetbot'])(
    'when the namespace is %j, then it is refused by Slack’s naming rules',
    (namespace) => {
      expect(namespaceProblem(namespace, names)).toBe(
        `Slack command "${namespace}" must be 1-31 lowercase letters, digits, - or _ (without the slash)`,
      );
    },
  );

  it.each(['fleetbot', 'ops', 'fb-admin', 'fleet_ops', 'a'.repeat(31)])(
    'when the namespace is %j, then it is accepted',
    (namespace) => {
      expect(namespaceProblem(namespace, names)).toBeUndefined();
    },
  );

  it('when the adapter is given a built-in name, then it refuses to start', () => {
    const { log } = capturedLogger();
    expect(() =>
      createSlackAdapter({
        botToken: 'xoxb-test',
        signingSecret: 'secret',
        command: 'invite',
        port: 0,
        roleOf: async () => 'admin',
        dispatch: async () => 'ran',
        log,
      }),
    ).toThrow('Slack command "/invite" is built into Slack; an app cannot register it');
  });
});

describe('Slack outbox over the Web API', () => {
  let fake: FakeSlack;
  beforeAll(async () => {
    fake = await startFakeSlack();
  });
  afterAll(async () => {
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  it('when a message with buttons is posted, then its text is rewritten and the buttons’ commands are not', async () => {
    const { log } = capturedLogger();
    const outbox = slackOutbox(slackClient({ token: 'xoxb-test', apiUrl: fake.apiUrl, log }));
    await outbox.send(
      { platform: 'slack', chatId: 'COPS' },
      {
        text: 'Plan abc: approve, or /reject abc. Progress: /jobs',
        buttons: [
          { label: 'Approve', command: '/approve abc', style: 'primary' },
          { label: 'Cancel', command: '/reject abc', style: 'danger' },
        ],
      },
    );
    const [post] = fake.calls('chat.postMessage');
    const text = 'Plan abc: approve, or /fleetbot reject abc. Progress: /fleetbot jobs';
    expect(post?.params).toMatchObject({
      channel: 'COPS',
      text,
      blocks: [
        { type: 'section', text: { type: 'mrkdwn', text } },
        {
          type: 'actions',
          elements: [
            { action_id: 'cmd:0', value: '/approve abc', text: { text: 'Approve' } },
            { action_id: 'cmd:1', value: '/reject abc', text: { text: 'Cancel' } },
          ],
        },
      ],
    });
  });

  it('when a private answer is posted, then its mentions are rewritten too', async () => {
    const { log } = capturedLogger();
    const outbox = slackOutbox(slackClient({ token: 'xoxb-test', apiUrl: fake.apiUrl, log }));
    await outbox.send(
      { platform: 'slack', chatId: 'COPS', userId: 'UADMIN' },
      { text: 'Usage: /invite [count 1-20]' },
      { private: true },
    );
    const [post] = fake.calls('chat.postEphemeral');
    expect(post?.params).toMatchObject({ user: 'UADMIN', text: 'Usage: /fleetbot invite [count 1-20]' });
  });
});
