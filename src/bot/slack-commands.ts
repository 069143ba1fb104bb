/**
 * How fleetbot's commands are typed in Slack. Commands are written once with bare names (`/jobs`), but a
 * Slack app cannot take built-in names (/invite) and should not squat on common ones (/jobs, /cancel):
 * the app registers `/deploy`, `/patch` and one namespace (`/fleetbot jobs`).
 */

/** Registered as Slack commands of their own: the two commands admins type most, with their own usage hints. */
export const ownSlackCommands = ['deploy', 'patch'] as const;

export const defaultNamespace = 'fleetbot';

/**
 * Slack's built-in commands, which an app cannot register (Slack help center, "Use built-in slash
 * commands", slack.com/help/articles/201259356, with the aliases listed there). Slack publishes no
 * machine-readable list, so this one is kept by hand.
 */
export const slackBuiltinCommands: ReadonlySet<string> = new Set([
  'active',
  'apps',
  'archive',
  'away',
  'call',
  'close',
  'collapse',
  'dm',
  'dnd',
  'expand',
  'feed',
  'feedback',
  'giphy',
  'huddle',
  'invite',
  'invite_people',
  'join',
  'kick',
  'leave',
  'me',
  'msg',
  'mute',
  'open',
  'part',
  'prefs',
  'remind',
  'remove',
  'rename',
  'search',
  'shortcuts',
  'shrug',
  'star',
  'status',
  'topic',
  'who',
]);

// At most 32 characters with the slash (slash_commands[].command: minLength 2, maxLength 32, pattern ^/
// in github.com/slackapi/manifest-schema, schemas/manifest.schema.1.0.0.json). The schema asks for no
// case; lowercase is the rule config.ts already holds SLACK_COMMAND to, so both checks agree.
const namespacePattern = /^[a-z0-9][a-z0-9_-]{0,30}$/;

/**
 * Why a namespace cannot be used, or undefined when it can. Besides Slack's rules: a namespace equal to
 * one of fleetbot's own command names would make `/<namespace>` alone mean `/help` and turn every
 * mention of that command into `/<name> <name>`.
 */
export function namespaceProblem(namespace: string, commandNames: Iterable<string>): string | undefined {
  if (!namespacePattern.test(namespace))
    return `Slack command "${namespace}" must be 1-31 lowercase letters, digits, - or _ (without the slash)`;
  if (slackBuiltinCommands.has(namespace))
    return `Slack command "/${namespace}" is built into Slack; an app cannot register it`;
  if ((ownSlackCommands as readonly string[]).includes(namespace) || [...commandNames].includes(namespace))
    return `Slack command "/${namespace}" is already a fleetbot command name; pick another namespace`;
  return undefined;
}

export function assertNamespace(namespace: string, commandNames: Iterable<string>): void {
  const problem = namespaceProblem(namespace, commandNames);
  if (problem) throw new Error(problem);
}

/** Every name the dispatcher answers to, aliases included. */
export function commandNamesOf(commands: readonly { name: string; aliases?: string[] }[]): string[] {
  return commands.flatMap((c) => [c.name, ...(c.aliases ?? [])]);
}

/** The Slack commands the app registers, with their slashes, in manifest order. */
export function slackCommandNames(namespace: string): string[] {
  return [...ownSlackCommands, namespace].map((name) => `/${name}`);
}

/**
 * The line the dispatcher sees for a Slack slash command. Anything other than the namespace goes through
 * unchanged, so the dispatcher answers it (commands created by hand before the manifest keep working).
 */
export function dispatchText(namespace: string, command: string, text: string): string {
  if (command.toLowerCase() !== `/${namespace}`) return `${command} ${text}`.trim();
  // A leading slash is what people type after reading `/jobs` elsewhere (Telegram, the README).
  const rest = text.trim().replace(/^\/+/, '');
  return rest ? `/${rest}` : '/help';
}

/** Characters after which a `/name` is a command mention rather than part of a path or URL. */
const mentionStart = String.raw`(^|[\s("'\`“‘«])`;
// A name followed by one of these is a path (/secrets/…), a longer name (/destroy-for) or an identifier.
const mentionEnd = String.raw`(?![\w/-])`;

/**
 * Rewrites command mentions in outgoing text to how they are typed in Slack (`/jobs` → `/fleetbot jobs`).
 * Only names in `commandNames` change, and never `/deploy` or `/patch`, which Slack has as commands.
 */
export function slackMentions(commandNames: Iterable<string>): (text: string, namespace: string) => string {
  const names = [...new Set(commandNames)]
    .filter((name) => !(ownSlackCommands as readonly string[]).includes(name))
    // Longest first, so `/destroy-for` is never taken for `/destroy` followed by text.
    .sort((a, b) => b.length - a.length || a.localeCompare(b));
  if (names.length === 0) return (text) => text;
  const escaped = names.map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const mention = new RegExp(`${mentionStart}/(${escaped.join('|')})${mentionEnd}`, 'gm');
  return (text, namespace) =>
    text.replace(mention, (_match, before: string, name: string) => `${before}/${namespace} ${name}`);
}
