import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { transformSync } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { allCommands } from '../../src/bot/commands/index.js';
import { slackCommandNames } from '../../src/bot/slack-commands.js';
import {
  buildSlackManifest,
  type ManifestCommand,
  manifestProblems,
  type SlackManifest,
} from '../../src/bot/slack-manifest.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const examplePath = join(root, 'infra/slack-app-manifest.example.yaml');
const exampleArgs = ['--url', 'https://fleetbot.example.com'];
const regenerate = `run: npm run -s slack:manifest -- ${exampleArgs.join(' ')} > infra/slack-app-manifest.example.yaml`;

const httpManifest = buildSlackManifest(allCommands, { url: 'https://fleetbot.example.com' });
const socketManifest = buildSlackManifest(allCommands, { socketMode: true });

/**
 * Slack's limits for every string a manifest may hold, written out here independently of the code:
 * github.com/slackapi/manifest-schema, schemas/manifest.schema.1.0.0.json.
 */
const limits: Record<string, { min: number; max: number; pattern?: RegExp }> = {
  'display_information.name': { min: 1, max: 35 },
  'display_information.description': { min: 1, max: 140 },
  'display_information.background_color': { min: 4, max: 7, pattern: /^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$/ },
  'features.bot_user.display_name': { min: 1, max: 80 },
  // The schema asks only for the slash; lowercase is fleetbot's rule for SLACK_COMMAND (config.ts).
  'features.slash_commands[].command': { min: 2, max: 32, pattern: /^\/[a-z0-9_-]+$/ },
  'features.slash_commands[].description': { min: 1, max: 2000 },
  'features.slash_commands[].usage_hint': { min: 1, max: 1000 },
  'features.slash_commands[].url': { min: 1, max: 3000, pattern: /^https?:\/\// },
  'oauth_config.scopes.bot[]': { min: 1, max: 50 },
  'settings.interactivity.request_url': { min: 1, max: 3500, pattern: /^https?:\/\// },
};

/** Every string in a manifest with its path, array indices written as []. */
function strings(value: unknown, path = ''): [string, string][] {
  if (typeof value === 'string') return [[path, value]];
  if (Array.isArray(value)) return value.flatMap((item) => strings(item, `${path}[]`));
  if (value && typeof value === 'object')
    return Object.entries(value).flatMap(([key, item]) => strings(item, path ? `${path}.${key}` : key));
  return [];
}

/** Web API method → bot scope (docs.slack.dev/reference/methods/<method>); null: the method needs none. */
const scopeOfMethod: Record<string, string | null> = {
  'chat.postMessage': 'chat:write',
  'chat.postEphemeral': 'chat:write',
  'chat.update': 'chat:write',
  'auth.test': null,
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourceFiles(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  );
}

/**
 * Slack Web API methods called anywhere in src/, however the call is spread over lines. src/aws is
 * left out: it speaks only to AWS (test/unit/import-graph.test.ts), and its SDK clients are `client`s too.
 */
function slackMethodsCalled(): Set<string> {
  const methods = new Set<string>();
  for (const file of sourceFiles(join(root, 'src')).filter((f) => !f.startsWith(join(root, 'src', 'aws')))) {
    // Compiled (esbuild drops comments): prose like "in the chat.\n if …" is no call.
    const code = transformSync(readFileSync(file, 'utf8'), { loader: 'ts' }).code;
    for (const m of code.matchAll(/\bchat\s*\.\s*(\w+)\s*\(/g)) methods.add(`chat.${m[1]}`);
    for (const m of code.matchAll(/\bclient\s*\.\s*(\w+)\s*\.\s*(\w+)\s*\(/g)) methods.add(`${m[1]}.${m[2]}`);
    for (const m of code.matchAll(/\.apiCall\(\s*['"`]([\w.]+)['"`]/g)) methods.add(String(m[1]));
  }
  return methods;
}

describe('Slack app manifest', () => {
  it('when generated with the example options, then it equals the committed example', () => {
    const committed = parse(readFileSync(examplePath, 'utf8'));
    expect(httpManifest, `infra/slack-app-manifest.example.yaml is out of date; ${regenerate}`).toEqual(
      committed,
    );
  });

  it('when the script runs, then it prints the committed example byte for byte, as YAML', async () => {
    const { stdout } = await promisify(execFile)(
      'npx',
      ['tsx', 'scripts/slack-manifest.ts', ...exampleArgs],
      {
        cwd: root,
      },
    );
    expect(stdout, `infra/slack-app-manifest.example.yaml is out of date; ${regenerate}`).toBe(
      readFileSync(examplePath, 'utf8'),
    );
    expect(parse(stdout)).toEqual(httpManifest);
  });

  it('when built, then it registers /deploy, /patch and the namespace, all at the HTTP receiver', () => {
    expect(httpManifest.features.slash_commands.map((c) => c.command)).toEqual(slackCommandNames('fleetbot'));
    expect(httpManifest.features.slash_commands.map((c) => c.url)).toEqual([
      'https://fleetbot.example.com/slack/events',
      'https://fleetbot.example.com/slack/events',
      'https://fleetbot.example.com/slack/events',
    ]);
    expect(httpManifest.settings).toEqual({
      interactivity: { is_enabled: true, request_url: 'https://fleetbot.example.com/slack/events' },
      org_deploy_enabled: false,
      socket_mode_enabled: false,
      token_rotation_enabled: false,
    });
  });

  it('when built, then /deploy and /patch describe themselves from the registry', () => {
    const [deploy, patch] = httpManifest.features.slash_commands;
    const fromRegistry = (name: string) => allCommands.find((c) => c.name === name);
    expect(deploy?.usage_hint).toBe(fromRegistry('deploy')?.usage);
    expect(deploy?.description).toBe('Plan a deploy of a version across the fleet (runs after approval)');
    expect(patch?.usage_hint).toBe(fromRegistry('patch')?.usage);
    expect(patch?.description).toBe('Plan a patch scan or install across the fleet (runs after approval)');
  });

  it('when built, then the namespace hint lists exactly the visible commands a Slack caller may run', () => {
    const expected = allCommands
      .filter((c) => !c.hidden && c.requires !== 'user' && c.name !== 'deploy' && c.name !== 'patch')
      .map((c) => c.name);
    expect(expected).toContain('jobs');
    expect(expected).toContain('invite');
    expect(httpManifest.features.slash_commands[2]?.usage_hint).toBe(
      `<command> [args]: ${expected.join(' | ')}`,
    );
  });

  it.each([
    ['HTTP', httpManifest],
    ['Socket Mode', socketManifest],
  ])('when built for %s, then every string is within Slack’s limits', (_mode, manifest) => {
    const found = strings(manifest);
    // A field without a limit in the table above fails here, so a new field cannot skip the check.
    expect(found.map(([path]) => path).filter((path) => !(path in limits))).toEqual([]);
    const broken = found.filter(([path, value]) => {
      const limit = limits[path];
      return (
        !limit ||
        value.length < limit.min ||
        value.length > limit.max ||
        (limit.pattern !== undefined && !limit.pattern.test(value))
      );
    });
    expect(broken).toEqual([]);
    expect(manifest.features.slash_commands.length).toBeLessThanOrEqual(50);
    expect(manifestProblems(manifest)).toEqual([]);
  });

  it('when built for Socket Mode, then it has no URLs and says so', () => {
    expect(JSON.stringify(socketManifest)).not.toMatch(/https?:/);
    expect(socketManifest.features.slash_commands.map((c) => Object.keys(c).sort())).toEqual([
      ['command', 'description', 'should_escape', 'usage_hint'],
      ['command', 'description', 'should_escape', 'usage_hint'],
      ['command', 'description', 'should_escape', 'usage_hint'],
    ]);
    expect(socketManifest.settings).toEqual({
      interactivity: { is_enabled: true },
      org_deploy_enabled: false,
      socket_mode_enabled: true,
      token_rotation_enabled: false,
    });
  });

  it('when fleetbot calls Slack, then the bot scopes are exactly those its Web API calls need', () => {
    const called = slackMethodsCalled();
    expect(called).toContain('chat.postMessage');
    const unknown = [...called].filter((method) => !(method in scopeOfMethod));
    expect(unknown, 'a Slack method without a scope in this test: add it to scopeOfMethod').toEqual([]);
    const needed = new Set(
      [...called].map((method) => scopeOfMethod[method]).filter((s): s is string => typeof s === 'string'),
    );
    // Slash commands need `commands`: the manifest declares some.
    needed.add('commands');
    expect([...httpManifest.oauth_config.scopes.bot].sort()).toEqual([...needed].sort());
    expect(socketManifest.oauth_config.scopes).toEqual(httpManifest.oauth_config.scopes);
  });

  it('when the URL has a trailing slash or a path, then requests still go to <url>/slack/events', () => {
    const at = (url: string) => buildSlackManifest(allCommands, { url }).settings.interactivity.request_url;
    expect(at('https://ops.example.com/')).toBe('https://ops.example.com/slack/events');
    expect(at('https://ops.example.com/fleetbot')).toBe('https://ops.example.com/fleetbot/slack/events');
  });

  it.each([
    ['ftp://host', '--url must be http(s), got "ftp://host"'],
    [
      'fleetbot.example.com',
      '--url must be an absolute URL like https://fleetbot.example.com, got "fleetbot.example.com"',
    ],
    ['https://host/?a=1', '--url must have no query or fragment, got "https://host/?a=1"'],
  ])('when the URL is %j, then it is refused', (url, message) => {
    expect(() => buildSlackManifest(allCommands, { url })).toThrow(message);
  });

  it('when the namespace is configured, then the third command is it', () => {
    const manifest = buildSlackManifest(allCommands, { socketMode: true, namespace: 'ops' });
    expect(manifest.features.slash_commands.map((c) => c.command)).toEqual(['/deploy', '/patch', '/ops']);
    expect(manifest.features.slash_commands[2]?.description).toBe(
      'Every other fleetbot command, typed after /ops; "/ops help" lists the ones you may run',
    );
  });

  it.each(['invite', 'remind', 'msg', 'dm', 'status', 'away', 'who'])(
    'when the namespace is the built-in /%s, then no manifest is made',
    (namespace) => {
      expect(() => buildSlackManifest(allCommands, { socketMode: true, namespace })).toThrow(
        `Slack command "/${namespace}" is built into Slack; an app cannot register it`,
      );
    },
  );

  it('when the namespace is one of fleetbot’s commands, then no manifest is made', () => {
    expect(() => buildSlackManifest(allCommands, { socketMode: true, namespace: 'jobs' })).toThrow(
      'Slack command "/jobs" is already a fleetbot command name; pick another namespace',
    );
  });

  it('when the app name is longer than 35 characters, then no manifest is made', () => {
    const appName = 'f'.repeat(36);
    expect(() => buildSlackManifest(allCommands, { socketMode: true, appName })).toThrow(
      new Error(
        "the Slack manifest breaks Slack's limits: display_information.name must be 1-35 characters, is 36",
      ),
    );
    expect(
      buildSlackManifest(allCommands, { socketMode: true, appName: 'f'.repeat(35) }).display_information.name,
    ).toBe('f'.repeat(35));
  });

  it('when a registry usage or the subcommand list outgrows a usage hint, then no manifest is made', () => {
    const command = (name: string, usage?: string): ManifestCommand => ({
      name,
      summary: `${name} things`,
      requires: 'admin',
      ...(usage ? { usage } : {}),
    });
    const base = [command('deploy', 'v'.repeat(1000)), command('patch', 'scan'), command('help')];
    expect(
      buildSlackManifest(base, { socketMode: true }).features.slash_commands[0]?.usage_hint,
    ).toHaveLength(1000);
    expect(() =>
      buildSlackManifest([command('deploy', 'v'.repeat(1001)), ...base.slice(1)], { socketMode: true }),
    ).toThrow(
      "the Slack manifest breaks Slack's limits: /deploy usage_hint must be 1-1000 characters, is 1001",
    );
    const many = Array.from({ length: 60 }, (_, i) => command(`command-number-${i}`));
    expect(() => buildSlackManifest([...base, ...many], { socketMode: true })).toThrow(
      /^the Slack manifest breaks Slack's limits: \/fleetbot usage_hint must be 1-1000 characters, is \d{4}$/,
    );
  });

  it('when the registry lacks /deploy or /patch, then no manifest is made', () => {
    const help: ManifestCommand = { name: 'help', summary: 'help', requires: 'anyone' };
    expect(() => buildSlackManifest([help], { socketMode: true })).toThrow(
      'the registry has no /deploy command',
    );
  });

  it('when a manifest breaks a limit, then each problem is named', () => {
    const broken: SlackManifest = structuredClone(httpManifest);
    broken.features.slash_commands.push({
      command: '/Has Space',
      url: 'ftp://x',
      description: '',
      should_escape: false,
    });
    broken.display_information.description = 'd'.repeat(141);
    expect(manifestProblems(broken)).toEqual([
      'display_information.description must be 1-140 characters, is 141',
      '/Has Space: a command is a slash and lowercase letters, digits, - or _',
      '/Has Space description must be 1-2000 characters, is 0',
      '/Has Space url must start with http:// or https://',
    ]);
  });
});
