import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { telegramUserIdPattern } from '../core/caller.js';
import { parameterPrefixPattern, userParameterName } from '../core/parameter-names.js';
import type { MemberBootstrap } from '../core/ports/fleet.js';
import { type SecretKindName, secretKinds } from '../core/secret-kinds.js';
import { versionPattern } from '../core/version.js';

/** The member's bootstrap (src/core/ports/fleet.ts), and what only tests change. */
export interface UserDataOptions extends MemberBootstrap {
  /** Owner of the env file and the user the default profile runs the assistant as; `assistant`. */
  serviceUser?: string;
  /** Only tests move these; production uses `instancePaths`, which the SSM documents read too. */
  paths?: InstancePaths;
  /** Only tests shrink these; the defaults outlast the seconds before the bot tags the parameters. */
  retry?: { firstDelaySeconds: number; maxDelaySeconds?: number; maxTotalSeconds: number };
}

export interface InstancePaths {
  sentinel: string;
  log: string;
  /** fleetbot-secrets, which the drop-in runs before every start of the unit. */
  helper: string;
  /** Holds `<service>.secrets.conf`: the parameter names, never a value. */
  configDir: string;
  /** systemd's unit directory: the drop-in goes to `<unit>.d/fleetbot-secrets.conf` below it. */
  unitDir: string;
  /** A tmpfs: `<service>.env` (the secrets) and `<service>.status` (the helper's last line). */
  runDir: string;
  /** Where the default profile is installed and run from. */
  profile: string;
}

export const instancePaths: InstancePaths = {
  sentinel: '/var/lib/fleetbot/bootstrap-done',
  log: '/var/log/fleetbot-bootstrap.log',
  helper: '/usr/local/libexec/fleetbot/read-secrets',
  configDir: '/etc/fleetbot',
  unitDir: '/etc/systemd/system',
  runDir: '/run/fleetbot',
  profile: '/usr/local/libexec/fleetbot/openclaw-profile',
};
export const bootstrapSentinelPath = instancePaths.sentinel;
export const bootstrapLogPath = instancePaths.log;

/** The openclaw release the default profile installs when no version is configured. */
export const defaultOpenclawVersion = '2026.9.6';

/** EC2 counts the 16 KB against the raw bytes, before base64 (the encoded form may reach 21,848 chars). */
export const maxUserDataBytes = 16 * 1024;

const defaultRetry = { firstDelaySeconds: 5, maxDelaySeconds: 60, maxTotalSeconds: 300 };

const besideModule = (name: string): string => readFileSync(new URL(name, import.meta.url), 'utf8');
/** The helper and the profile as they are in the repository (and as their tests run them). */
export const readSecretsScript = besideModule('./instance/read-secrets.sh');
export const openclawProfileScript = besideModule('./instance/openclaw-profile.sh');
/**
 * The first-boot script itself, with `__NAME__` holes that renderUserData fills (fillHoles): a bash
 * file rather than a string here, so bash's own syntax needs no escaping and shellcheck reads it as
 * it is. `__INSTALL_FILES__` takes here-documents whose quoted delimiter keeps bash off their text;
 * every other hole a single-quoted value. Each comment in it lands in the UserData's 16 KB too.
 */
const bootstrapTemplate = besideModule('./userdata.sh');

/** Bounds of one helper run that its script hard-codes: `timeout --kill-after=5 20 aws ...`, 2 IMDS reads of 4 tries. */
const helperCallSeconds = 20 + 5;
const helperImdsSeconds = 2 * 4 * (5 + 1);

/** Names the offending option and never repeats its value: a misplaced secret must not reach a log. */
export class UserDataError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`userdata ${field}: ${problem}`);
    this.name = 'UserDataError';
  }
}

const patterns = {
  parameterPrefix: parameterPrefixPattern,
  userId: telegramUserIdPattern,
  serviceName: /^[a-z][a-z0-9@._-]{0,63}$/,
  serviceUser: /^[a-z_][a-z0-9_-]{0,31}$/,
  version: versionPattern,
  path: /^(\/[A-Za-z0-9_.-]+)+$/,
};

/** Single-quoted for bash: nothing inside is expanded, and a quote becomes `'\''`. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** `openai-api-key` -> `OPENAI_API_KEY`: the name the assistant reads from its environment. */
export function envVarName(kind: SecretKindName): string {
  return kind.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/** `assistant` and `assistant.service` both name `assistant.service`; files are named by the base. */
export function unitNames(serviceName: string): { unit: string; base: string } {
  const base = serviceName.replace(/\.service$/, '');
  return { unit: `${base}.service`, base };
}

/**
 * The helper and the profile ride in the UserData gzipped and base64-encoded: as text they would fill
 * most of its 16 KB. The instance unpacks them byte for byte, comments included.
 */
export function packScript(text: string): string {
  return (
    gzipSync(Buffer.from(text, 'utf8'), { level: 9 })
      .toString('base64')
      .match(/.{1,76}/g)
      ?.join('\n') ?? ''
  );
}

/**
 * Worst-case seconds of one helper run: every sleep its retry budget allows, every call at its
 * timeout. The drop-in's TimeoutStartSec, so systemd never kills a helper that is still within budget.
 */
export function secretsStartTimeoutSeconds(
  retry: { firstMs: number; maxMs: number; budgetMs: number },
  secrets: number,
): number {
  let delay = retry.firstMs;
  let waited = 0;
  let sleeps = 0;
  while (waited + delay <= retry.budgetMs) {
    waited += delay;
    sleeps++;
    delay = Math.min(delay * 2, retry.maxMs);
  }
  // Each sleep follows a failed call, one more fails for good, and each secret takes one good call.
  const calls = sleeps + 1 + secrets;
  return Math.ceil(waited / 1000 + calls * helperCallSeconds + helperImdsSeconds + 30);
}

const heredocEnd = 'FLEETBOT_EOF';

/**
 * The first-boot script of a user's instance. It holds parameter names only: the instance reads the
 * values itself, at every start of the assistant's unit, so no secret ever passes through the bot,
 * EC2's launch request or the UserData, and none is written to the instance's disk.
 */
export function renderUserData(options: UserDataOptions): string {
  const o = validate(options);
  const { unit, base } = unitNames(o.serviceName);
  const config = [
    '# fleetbot-secrets: parameter names only, never values. Written by the fleetbot bootstrap.',
    `owner ${o.serviceUser}`,
    `retry ${o.retry.firstMs} ${o.retry.maxMs} ${o.retry.budgetMs}`,
    ...o.kinds.map(
      (kind) => `secret ${envVarName(kind)} ${userParameterName(o.parameterPrefix, o.userId, kind)}`,
    ),
  ];
  // systemd.exec(5), EnvironmentFile=: the files are read just before the process is executed, "more
  // specifically, after all processes from a previous unit state terminated. This means you can
  // generate these files in one unit state, and read it with this option in the next": ExecStartPre
  // runs in the start-pre state, ExecStart in the next. The "-" matters: the file is loaded for
  // ExecStartPre as well, and a missing one without it fails the start before the helper can write
  // it ("Failed to load environment files ... Failed to run 'start-pre' task", systemd/systemd#24403).
  // The helper needs IMDS and SSM, also at boot, whatever the operator's own unit says.
  const dropIn = [
    '# fleetbot: the secrets are read from Parameter Store before every start of this unit.',
    '[Unit]',
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    `ExecStartPre=+${o.paths.helper} ${base}`,
    `EnvironmentFile=-${o.paths.runDir}/${base}.env`,
    `TimeoutStartSec=${secretsStartTimeoutSeconds(o.retry, o.kinds.length)}`,
  ];
  const files: { path: string; mode: string; text: string; packed?: boolean }[] = [
    { path: o.paths.helper, mode: '0755', text: readSecretsScript, packed: true },
    { path: `${o.paths.configDir}/${base}.secrets.conf`, mode: '0644', text: `${config.join('\n')}\n` },
    {
      path: `${o.paths.unitDir}/${unit}.d/fleetbot-secrets.conf`,
      mode: '0644',
      text: `${dropIn.join('\n')}\n`,
    },
  ];
  if (!o.installCommand)
    files.push({ path: o.paths.profile, mode: '0755', text: openclawProfileScript, packed: true });
  const installs = files
    .map(({ path, mode, text, packed }) => {
      const content = packed ? `${packScript(text)}\n` : text;
      if (content.split('\n').includes(heredocEnd))
        throw new UserDataError('files', `${path} holds ${heredocEnd}`);
      return `install_file ${shellQuote(path)} ${mode}${packed ? ' packed' : ''} <<'${heredocEnd}'\n${content}${heredocEnd}`;
    })
    .join('\n');

  // Each setting lands single-quoted, so bash expands nothing in an operator's value.
  const settings = {
    LOG_FILE: o.paths.log,
    SENTINEL: o.paths.sentinel,
    SERVICE_UNIT: unit,
    SERVICE_USER: o.serviceUser,
    TELEGRAM_USER_ID: o.userId,
    VERSION: o.version,
    INSTALL_COMMAND: o.installCommand || o.paths.profile,
    ENV_FILE: `${o.paths.runDir}/${base}.env`,
    STATUS_FILE: `${o.paths.runDir}/${base}.status`,
  };
  const quoted = Object.entries(settings).map(([name, value]) => [name, shellQuote(value)] as const);
  return fillHoles(bootstrapTemplate, { ...Object.fromEntries(quoted), INSTALL_FILES: installs });
}

/** A hole in the bootstrap template: `__INSTALL_FILES__`, `__LOG_FILE__`. */
const hole = /__([A-Z][A-Z_]*[A-Z])__/g;

/**
 * Fills every hole of the template in one pass, so text that fills one hole (an operator's command,
 * a here-document) is never searched for holes itself. A hole without a value, or a value without
 * its hole, is a template out of step with this module: thrown rather than rendered half-filled.
 */
function fillHoles(template: string, values: Readonly<Record<string, string>>): string {
  const holes = new Set(Array.from(template.matchAll(hole), (m) => m[1] ?? ''));
  const missing = [...holes].filter((name) => !Object.hasOwn(values, name));
  const unused = Object.keys(values).filter((name) => !holes.has(name));
  if (missing.length > 0 || unused.length > 0)
    throw new Error(
      `bootstrap template out of step: holes without values [${missing.join(', ')}], values without holes [${unused.join(', ')}]`,
    );
  return template.replace(hole, (_, name: string) => values[name] ?? '');
}

export function encodeUserData(script: string): string {
  const raw = Buffer.from(script, 'utf8');
  if (raw.byteLength > maxUserDataBytes)
    throw new UserDataError('script', `is ${raw.byteLength} bytes; EC2 accepts at most ${maxUserDataBytes}`);
  return raw.toString('base64');
}

interface Validated {
  parameterPrefix: string;
  userId: string;
  kinds: readonly SecretKindName[];
  serviceName: string;
  serviceUser: string;
  installCommand: string;
  version: string;
  paths: InstancePaths;
  retry: { firstMs: number; maxMs: number; budgetMs: number };
}

function validate(options: UserDataOptions): Validated {
  const check = (field: string, value: unknown, pattern: RegExp, expected: string): string => {
    if (typeof value !== 'string' || !pattern.test(value))
      throw new UserDataError(field, `must be ${expected}`);
    return value;
  };
  const parameterPrefix = check(
    'parameterPrefix',
    options.parameterPrefix,
    patterns.parameterPrefix,
    '1-40 letters, digits, _ . -',
  );
  const userId = check('userId', options.userId, patterns.userId, 'a numeric Telegram user id');
  const serviceName = check(
    'serviceName',
    options.serviceName,
    patterns.serviceName,
    'a systemd unit name (lower case, digits, @ . _ -)',
  );
  const serviceUser = check(
    'serviceUser',
    options.serviceUser ?? 'assistant',
    patterns.serviceUser,
    'a Linux user name',
  );
  const version =
    options.version === undefined
      ? ''
      : check('version', options.version, patterns.version, 'a version such as v1.2.3');

  const known = new Set<string>(secretKinds.map((k) => k.name));
  if (!Array.isArray(options.kinds) || options.kinds.length === 0)
    throw new UserDataError('kinds', 'must list at least one secret kind');
  for (const kind of options.kinds) {
    if (typeof kind !== 'string' || !known.has(kind))
      throw new UserDataError('kinds', `must list only known secret kinds (${[...known].join(', ')})`);
  }
  if (new Set(options.kinds).size !== options.kinds.length)
    throw new UserDataError('kinds', 'must not list a kind twice');

  let installCommand = '';
  if (options.installCommand !== undefined) {
    installCommand = options.installCommand;
    // Bash strings cannot hold NUL, and a blank command is a config mistake better caught at launch.
    if (typeof installCommand !== 'string' || installCommand.trim() === '' || installCommand.includes('\0'))
      throw new UserDataError('installCommand', 'must be a non-empty shell command without NUL bytes');
  }

  const paths = options.paths ?? instancePaths;
  for (const name of Object.keys(instancePaths) as (keyof InstancePaths)[]) {
    const value = paths[name];
    check(`paths.${name}`, value, patterns.path, 'an absolute path of letters, digits, _ . -');
    if (value.split('/').includes('..')) throw new UserDataError(`paths.${name}`, 'must not contain ..');
  }

  const retry = {
    firstDelaySeconds: options.retry?.firstDelaySeconds ?? defaultRetry.firstDelaySeconds,
    maxDelaySeconds: options.retry?.maxDelaySeconds ?? defaultRetry.maxDelaySeconds,
    maxTotalSeconds: options.retry?.maxTotalSeconds ?? defaultRetry.maxTotalSeconds,
  };
  const seconds = (field: string, value: number, min: number): number => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > 3600)
      throw new UserDataError(`retry.${field}`, `must be between ${min} and 3600 seconds`);
    return Math.round(value * 1000);
  };
  // A zero first delay would never grow, and the budget counts only time slept: the loop would spin.
  const firstMs = seconds('firstDelaySeconds', retry.firstDelaySeconds, 0.001);
  const maxMs = seconds('maxDelaySeconds', retry.maxDelaySeconds, 0.001);
  const budgetMs = seconds('maxTotalSeconds', retry.maxTotalSeconds, 0);
  if (maxMs < firstMs)
    throw new UserDataError('retry.maxDelaySeconds', 'must not be below firstDelaySeconds');

  return {
    parameterPrefix,
    userId,
    kinds: options.kinds,
    serviceName,
    serviceUser,
    installCommand,
    version,
    paths,
    retry: { firstMs, maxMs, budgetMs },
  };
}
