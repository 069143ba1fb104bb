import { userParameterName } from '../core/parameter-names.js';
import { type SecretKindName, secretKinds } from '../core/secret-kinds.js';

export interface UserDataOptions {
  parameterPrefix: string;
  /** Numeric Telegram user id. */
  userId: string;
  /** Which of the user's parameters the instance reads; each becomes one line of the env file. */
  kinds: readonly SecretKindName[];
  /** The systemd unit that runs the assistant. */
  serviceName: string;
  /** Owner of the env file; defaults to `assistant`. */
  serviceUser?: string;
  /** Operator config, run as root after the env file is written. */
  installCommand?: string;
  version?: string;
  /** Only tests move these; production uses the defaults below, which the readiness check reads. */
  paths?: { envFile: string; sentinel: string; log: string };
  /** Only tests shrink these; the defaults outlast the seconds before the bot tags the parameters. */
  retry?: { firstDelaySeconds: number; maxDelaySeconds?: number; maxTotalSeconds: number };
}

export const bootstrapSentinelPath = '/var/lib/fleetbot/bootstrap-done';
export const bootstrapLogPath = '/var/log/fleetbot-bootstrap.log';
export const bootstrapEnvFilePath = '/etc/fleetbot/assistant.env';

/** EC2 counts the 16 KB against the raw bytes, before base64 (the encoded form may reach 21,848 chars). */
export const maxUserDataBytes = 16 * 1024;

const defaultRetry = { firstDelaySeconds: 5, maxDelaySeconds: 60, maxTotalSeconds: 300 };

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
  parameterPrefix: /^[A-Za-z0-9_.-]{1,40}$/,
  userId: /^\d{1,16}$/,
  serviceName: /^[a-z][a-z0-9@._-]{0,63}$/,
  serviceUser: /^[a-z_][a-z0-9_-]{0,31}$/,
  version: /^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]{1,20})?$/,
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

/**
 * The first-boot script of a user's instance. It holds parameter names only: the instance reads the
 * values itself, so no secret ever passes through the bot, EC2's launch request or the UserData.
 */
export function renderUserData(options: UserDataOptions): string {
  const o = validate(options);
  const reads = o.kinds
    .map((kind) =>
      [
        'write_env_line',
        shellQuote(envVarName(kind)),
        shellQuote(userParameterName(o.parameterPrefix, o.userId, kind)),
      ].join(' '),
    )
    .join('\n');
  const settings = [
    ['LOG_FILE', o.paths.log],
    ['ENV_FILE', o.paths.envFile],
    ['SENTINEL', o.paths.sentinel],
    ['SERVICE_NAME', o.serviceName],
    ['SERVICE_USER', o.serviceUser],
    ['VERSION', o.version],
    ['INSTALL_COMMAND', o.installCommand],
    ['RETRY_FIRST_MS', String(o.retry.firstMs)],
    ['RETRY_MAX_MS', String(o.retry.maxMs)],
    ['RETRY_BUDGET_MS', String(o.retry.budgetMs)],
  ]
    .map(([name, value]) => `readonly ${name}=${shellQuote(value ?? '')}`)
    .join('\n');
  return `${header}\n${settings}\n${body.replace('__READS__', () => reads)}`;
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
  paths: { envFile: string; sentinel: string; log: string };
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

  const paths = options.paths ?? {
    envFile: bootstrapEnvFilePath,
    sentinel: bootstrapSentinelPath,
    log: bootstrapLogPath,
  };
  for (const [name, value] of Object.entries(paths)) {
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

const header = `#!/bin/bash
# fleetbot first-boot bootstrap. It names the parameters to read and never holds their values.
set -euo pipefail
# Values pass through this shell: tracing would print them into the log.
set +x
umask 077
`;

// Plain text rather than a template so bash's own syntax needs no escaping; __READS__ is the only hole.
const body = String.raw`
# Directories on the way are public (/etc, /var/lib); only the files in them are private.
make_dir() {
  (
    umask 022
    mkdir -p -- "$1"
  )
}

make_dir "$(dirname "$LOG_FILE")"
touch "$LOG_FILE"
chmod 0600 "$LOG_FILE"
exec > >(tee -a "$LOG_FILE") 2>&1

FAILURE='unexpected error'
ENV_TMP=''
AWS_ERR=''
PARAM_VALUE=''

# The readiness check reports a line starting "bootstrap: failed" as final, so every exit path says why.
on_exit() {
  local status=$?
  PARAM_VALUE=''
  if [[ -n "$ENV_TMP" ]]; then rm -f -- "$ENV_TMP"; fi
  if [[ -n "$AWS_ERR" ]]; then rm -f -- "$AWS_ERR"; fi
  if [[ "$status" -ne 0 ]]; then
    printf 'bootstrap: failed: %s (exit %s)\n' "$FAILURE" "$status"
  fi
}
trap on_exit EXIT

fail() {
  FAILURE="$1"
  exit 1
}

step() {
  FAILURE="$1 failed"
  printf 'bootstrap: %s\n' "$1"
}

seconds_of() {
  printf '%d.%03d' "$(($1 / 1000))" "$(($1 % 1000))"
}

printf 'bootstrap: started at %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# A sentinel left by an earlier run must not vouch for this one.
rm -f -- "$SENTINEL"

step 'reading the instance identity through IMDSv2'
IMDS_TOKEN="$(curl -fsS --retry 10 --retry-connrefused --retry-delay 1 --max-time 5 \
  -X PUT 'http://169.254.169.254/latest/api/token' \
  -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')"
imds_get() {
  curl -fsS --retry 10 --retry-connrefused --retry-delay 1 --max-time 5 \
    -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" "http://169.254.169.254/latest/meta-data/$1"
}
REGION="$(imds_get placement/region)"
INSTANCE_ID="$(imds_get instance-id)"
if [[ -z "$REGION" || -z "$INSTANCE_ID" ]]; then fail 'IMDS returned an empty region or instance id'; fi
printf 'bootstrap: instance %s in %s\n' "$INSTANCE_ID" "$REGION"

command -v aws >/dev/null 2>&1 || fail 'the aws CLI is not installed on this image'
export AWS_PAGER=''
AWS_ERR="$(mktemp)"

# Leaves the value in PARAM_VALUE rather than on stdout, where a stray redirection would log it.
# AccessDenied is normal at first: the bot tags the parameter with this instance's ARN after launch.
read_parameter() {
  local name="$1" delay_ms="$RETRY_FIRST_MS" waited_ms=0 attempt=0 reason
  while true; do
    attempt=$((attempt + 1))
    if PARAM_VALUE="$(aws ssm get-parameter --name "$name" --with-decryption \
      --query Parameter.Value --output text --region "$REGION" 2>"$AWS_ERR")"; then
      return 0
    fi
    PARAM_VALUE=''
    reason="$(tr -s '\r\n' '  ' <"$AWS_ERR" | cut -c 1-300)"
    if [[ $((waited_ms + delay_ms)) -gt "$RETRY_BUDGET_MS" ]]; then
      printf 'bootstrap: reading %s: attempt %d failed, giving up after %s s of waiting: %s\n' \
        "$name" "$attempt" "$(seconds_of "$waited_ms")" "$reason"
      return 1
    fi
    printf 'bootstrap: reading %s: attempt %d failed, retrying in %s s: %s\n' \
      "$name" "$attempt" "$(seconds_of "$delay_ms")" "$reason"
    sleep "$(seconds_of "$delay_ms")"
    waited_ms=$((waited_ms + delay_ms))
    delay_ms=$((delay_ms * 2))
    if [[ "$delay_ms" -gt "$RETRY_MAX_MS" ]]; then delay_ms="$RETRY_MAX_MS"; fi
  done
}

# printf is a builtin: the value is never an argument of a process that ps could show.
write_env_line() {
  local key="$1" name="$2"
  step "reading $name"
  read_parameter "$name" || fail "could not read $name"
  # One value per line is what keeps one secret from smuggling in another variable.
  if [[ -z "$PARAM_VALUE" || "$PARAM_VALUE" == *$'\n'* || "$PARAM_VALUE" == *$'\r'* ]]; then
    PARAM_VALUE=''
    fail "$name is empty or spans several lines"
  fi
  printf '%s=%s\n' "$key" "$PARAM_VALUE" >>"$ENV_TMP"
  PARAM_VALUE=''
}

step "creating the service user $SERVICE_USER"
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi

step 'writing the env file'
make_dir "$(dirname "$ENV_FILE")"
# Written beside the target and renamed, so the service never starts on half a file.
ENV_TMP="$(mktemp "$(dirname "$ENV_FILE")/.env.XXXXXX")"
__READS__
chown "$SERVICE_USER:" "$ENV_TMP"
chmod 0600 "$ENV_TMP"
mv -f -- "$ENV_TMP" "$ENV_FILE"
ENV_TMP=''

if [[ -n "$INSTALL_COMMAND" ]]; then
  step 'running the install command'
  # Installed files must stay readable by the service user; only the env file needs umask 077.
  (
    umask 022
    FLEETBOT_VERSION="$VERSION" FLEETBOT_ENV_FILE="$ENV_FILE" FLEETBOT_SERVICE_USER="$SERVICE_USER" \
      bash -euo pipefail -c "$INSTALL_COMMAND"
  )
fi

step "enabling and starting $SERVICE_NAME"
systemctl daemon-reload
systemctl enable "$SERVICE_NAME"
systemctl restart "$SERVICE_NAME"

step 'writing the sentinel'
make_dir "$(dirname "$SENTINEL")"
{
  printf 'finished=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf 'instance=%s\n' "$INSTANCE_ID"
  if [[ -n "$VERSION" ]]; then printf 'version=%s\n' "$VERSION"; fi
} >"$SENTINEL.tmp"
chmod 0644 "$SENTINEL.tmp"
mv -f -- "$SENTINEL.tmp" "$SENTINEL"
printf 'bootstrap: done\n'
`;
