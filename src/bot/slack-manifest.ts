import type { Command } from './command.js';
import { commandNamesOf, defaultNamespace, namespaceProblem, ownSlackCommands } from './slack-commands.js';

/**
 * The Slack app described by fleetbot's command registry, so the app is created from one pasted
 * manifest instead of ~20 hand-made commands (docs.slack.dev/reference/app-manifest).
 */

export type ManifestCommand = Pick<
  Command<unknown>,
  'name' | 'aliases' | 'summary' | 'usage' | 'requires' | 'hidden'
>;

export type ManifestOptions = {
  /** The namespace command, without the slash (SLACK_COMMAND). */
  namespace?: string;
  /** The app's name in Slack and its bot user's display name. */
  appName?: string;
} & (
  | { socketMode: true }
  /** Where Slack reaches the HTTP receiver: requests go to `<url>/slack/events`. */
  | { socketMode?: false; url: string }
);

export interface SlashCommandManifest {
  command: string;
  url?: string;
  description: string;
  usage_hint?: string;
  should_escape: boolean;
}

export interface SlackManifest {
  _metadata: { major_version: number; minor_version: number };
  display_information: { name: string; description: string; background_color: string };
  features: {
    bot_user: { display_name: string; always_online: boolean };
    slash_commands: SlashCommandManifest[];
  };
  oauth_config: { scopes: { bot: string[] } };
  settings: {
    interactivity: { is_enabled: boolean; request_url?: string };
    org_deploy_enabled: boolean;
    socket_mode_enabled: boolean;
    token_rotation_enabled: boolean;
  };
}

/**
 * Slack's limits, from its manifest JSON schema (github.com/slackapi/manifest-schema,
 * schemas/manifest.schema.1.0.0.json): Slack refuses a manifest past any of them when the app is created.
 */
export const manifestLimits = {
  appName: 35, // display_information.name, 1-35
  appDescription: 140, // display_information.description, 1-140
  botDisplayName: 80, // features.bot_user.display_name, 1-80
  slashCommands: 50, // features.slash_commands, at most 50 items
  commandName: 32, // slash_commands[].command, 2-32 with the leading slash, pattern ^/
  commandDescription: 2000, // slash_commands[].description, 1-2000
  usageHint: 1000, // slash_commands[].usage_hint, 1-1000
  commandUrl: 3000, // slash_commands[].url, pattern ^https?://
  requestUrl: 3500, // settings.interactivity.request_url, pattern ^https?://
  scope: 50, // oauth_config.scopes.bot[], each at most 50 characters
} as const;

/**
 * What fleetbot's bot token is used for, and nothing more. Web API methods called in src/:
 * chat.postMessage, chat.postEphemeral, chat.update → chat:write
 * (docs.slack.dev/reference/scopes/chat.write); slash commands → commands. Bolt's own auth.test at
 * start needs no scope. Socket Mode's apps.connections.open uses the app-level token, not these.
 */
export const botScopes = ['chat:write', 'commands'] as const;

export const eventsPath = '/slack/events';

const appDescription = 'Chat-ops for the fleet: deploys, patches, rollouts, invites and audit, from Slack.';

const sentence = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

/** Every limit a manifest breaks, in words; empty when Slack would take it. */
export function manifestProblems(manifest: SlackManifest): string[] {
  const problems: string[] = [];
  const within = (what: string, value: string | undefined, max: number, min = 1) => {
    if (value === undefined) return;
    if (value.length < min || value.length > max)
      problems.push(`${what} must be ${min}-${max} characters, is ${value.length}`);
  };
  const httpUrl = (what: string, value: string | undefined, max: number) => {
    if (value === undefined) return;
    if (!/^https?:\/\//.test(value)) problems.push(`${what} must start with http:// or https://`);
    within(what, value, max);
  };
  within('display_information.name', manifest.display_information.name, manifestLimits.appName);
  within(
    'display_information.description',
    manifest.display_information.description,
    manifestLimits.appDescription,
  );
  within(
    'features.bot_user.display_name',
    manifest.features.bot_user.display_name,
    manifestLimits.botDisplayName,
  );
  const commands = manifest.features.slash_commands;
  if (commands.length > manifestLimits.slashCommands)
    problems.push(`at most ${manifestLimits.slashCommands} slash commands, has ${commands.length}`);
  for (const c of commands) {
    if (!/^\/[a-z0-9_-]+$/.test(c.command))
      problems.push(`${c.command}: a command is a slash and lowercase letters, digits, - or _`);
    within(`${c.command}`, c.command, manifestLimits.commandName, 2);
    within(`${c.command} description`, c.description, manifestLimits.commandDescription);
    within(`${c.command} usage_hint`, c.usage_hint, manifestLimits.usageHint);
    httpUrl(`${c.command} url`, c.url, manifestLimits.commandUrl);
  }
  httpUrl(
    'settings.interactivity.request_url',
    manifest.settings.interactivity.request_url,
    manifestLimits.requestUrl,
  );
  for (const scope of manifest.oauth_config.scopes.bot) within(`scope ${scope}`, scope, manifestLimits.scope);
  return problems;
}

function requestUrl(base: string): string {
  let parsed: URL;
  try {
    parsed = new URL(base);
  } catch {
    throw new Error(`--url must be an absolute URL like https://fleetbot.example.com, got "${base}"`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:')
    throw new Error(`--url must be http(s), got "${base}"`);
  if (parsed.search || parsed.hash) throw new Error(`--url must have no query or fragment, got "${base}"`);
  return `${base.replace(/\/+$/, '')}${eventsPath}`;
}

/** A Slack caller is an admin or a guest; member commands belong to the Telegram bot. */
const runsInSlack = (c: ManifestCommand) => !c.hidden && c.requires !== 'user';

export function buildSlackManifest(
  commands: readonly ManifestCommand[],
  options: ManifestOptions,
): SlackManifest {
  const namespace = options.namespace ?? defaultNamespace;
  const appName = options.appName ?? 'fleetbot';
  const problem = namespaceProblem(namespace, commandNamesOf(commands));
  if (problem) throw new Error(problem);
  const url = options.socketMode ? undefined : requestUrl(options.url);
  const withUrl = url ? { url } : {};

  const own = ownSlackCommands.map((name): SlashCommandManifest => {
    const command = commands.find((c) => c.name === name);
    if (!command) throw new Error(`the registry has no /${name} command`);
    return {
      command: `/${name}`,
      ...withUrl,
      description: sentence(command.summary),
      ...(command.usage ? { usage_hint: command.usage } : {}),
      should_escape: false,
    };
  });
  const subcommands = commands
    .filter((c) => runsInSlack(c) && !(ownSlackCommands as readonly string[]).includes(c.name))
    .map((c) => c.name);
  const namespaceCommand = `/${namespace}`;
  const manifest: SlackManifest = {
    _metadata: { major_version: 1, minor_version: 1 },
    display_information: { name: appName, description: appDescription, background_color: '#1f3a5f' },
    features: {
      bot_user: { display_name: appName, always_online: true },
      slash_commands: [
        ...own,
        {
          command: namespaceCommand,
          ...withUrl,
          description: `Every other fleetbot command, typed after ${namespaceCommand}; "${namespaceCommand} help" lists the ones you may run`,
          usage_hint: `<command> [args]: ${subcommands.join(' | ')}`,
          should_escape: false,
        },
      ],
    },
    oauth_config: { scopes: { bot: [...botScopes] } },
    settings: {
      // Buttons (approve, cancel, confirm) arrive as interactivity payloads on the same endpoint.
      interactivity: { is_enabled: true, ...(url ? { request_url: url } : {}) },
      org_deploy_enabled: false,
      socket_mode_enabled: Boolean(options.socketMode),
      token_rotation_enabled: false,
    },
  };
  const problems = manifestProblems(manifest);
  if (problems.length > 0)
    throw new Error(`the Slack manifest breaks Slack's limits: ${problems.join('; ')}`);
  return manifest;
}
