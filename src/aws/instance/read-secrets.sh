#!/bin/bash
# fleetbot-secrets: reads a unit's secrets from SSM Parameter Store at every start of the unit. The
# bootstrap (src/aws/userdata.ts) installs it with a drop-in that runs it as ExecStartPre=+ and names
# its output as the unit's EnvironmentFile, so a rotated or deleted secret takes effect on the next
# start and no secret is ever kept on disk.
#
#   read-secrets SERVICE
#
# Reads $FLEETBOT_CONFIG_DIR/SERVICE.secrets.conf (parameter names only; default /etc/fleetbot) and
# writes SERVICE.env and SERVICE.status in $FLEETBOT_RUN_DIR (default /run/fleetbot, a tmpfs). Tests
# move those directories and set AWS_REGION, which skips the instance metadata service.
# Config lines: "owner USER", "retry FIRST_MS MAX_MS BUDGET_MS", "secret ENV_NAME PARAMETER_NAME".
set -euo pipefail
# Values pass through this shell: tracing would print them into the journal.
set +x
umask 077

# Lower case on purpose: a secret's ENV_NAME is upper case, so it can never overwrite one of these.
readonly service="${1:-}"
readonly config_dir="${FLEETBOT_CONFIG_DIR:-/etc/fleetbot}"
readonly run_dir="${FLEETBOT_RUN_DIR:-/run/fleetbot}"
readonly call_timeout_s=20

failure=''
env_file=''
status_file=''
env_tmp=''
aws_err=''
value=''
owner=''
retry_first_ms=5000
retry_max_ms=60000
retry_budget_ms=300000
keys=()
names=()

# Status lines never hold a value; written beside the target and renamed so readers see whole lines.
write_status() {
  local tmp
  if [[ -z "$status_file" ]] || ! tmp="$(mktemp "$status_file.XXXXXX")"; then return 0; fi
  printf '%s\n' "$1" >"$tmp"
  chmod 0644 "$tmp"
  mv -f -- "$tmp" "$status_file"
}

# Every exit path says why in one line, and a failed read leaves no env file behind: the unit must not
# start on the values of an earlier start.
finish() {
  local status=$? line
  value=''
  if [[ -n "$env_tmp" ]]; then rm -f -- "$env_tmp"; fi
  if [[ -n "$aws_err" ]]; then rm -f -- "$aws_err"; fi
  if [[ "$status" -ne 0 ]]; then
    if [[ -n "$env_file" ]]; then rm -f -- "$env_file"; fi
    line="fleetbot-secrets: failed: ${failure:-unexpected error (exit $status)}"
    write_status "$line" || true
    printf '%s\n' "$line" >&2
  fi
}
trap finish EXIT
trap 'failure="stopped by a signal before the secrets were read"; exit 1' TERM INT HUP

fail() {
  failure="$1"
  exit 1
}

seconds_of() {
  printf '%d.%03d' "$(($1 / 1000))" "$(($1 % 1000))"
}

if [[ ! "$service" =~ ^[a-z][a-z0-9@._-]{0,63}$ ]]; then fail 'usage: read-secrets SERVICE'; fi
mkdir -p -- "$run_dir"
chmod 0755 "$run_dir"
env_file="$run_dir/$service.env"
status_file="$run_dir/$service.status"
if [[ "${FLEETBOT_RUN_DIR_ON_DISK_OK:-}" != 1 ]]; then
  case "$(stat -f -c %T -- "$run_dir")" in
    tmpfs | ramfs) ;;
    *) fail "$run_dir is not a tmpfs; refusing to write secrets to disk" ;;
  esac
fi

# Parsed, never sourced. ENV_NAME may not be a variable that steers this script, the aws CLI or the
# loader: systemd loads the env file for ExecStartPre too, so the last values reach this environment.
readonly config="$config_dir/$service.secrets.conf"
if [[ ! -f "$config" ]]; then fail "no config $config"; fi
while read -r word a b c || [[ -n "$word" ]]; do
  case "$word" in
    '' | '#'*) continue ;;
    owner)
      [[ "$a" =~ ^[a-z_][a-z0-9_-]{0,31}$ && -z "$b" ]] || fail "config $config: bad owner line"
      owner="$a"
      ;;
    retry)
      [[ "$a" =~ ^[1-9][0-9]{0,6}$ && "$b" =~ ^[1-9][0-9]{0,6}$ && "$c" =~ ^[0-9]{1,7}$ && "$b" -ge "$a" ]] ||
        fail "config $config: bad retry line"
      retry_first_ms="$a" retry_max_ms="$b" retry_budget_ms="$c"
      ;;
    secret)
      [[ "$a" =~ ^[A-Z][A-Z0-9_]{0,63}$ && "$b" =~ ^(/[A-Za-z0-9_.-]+)+$ && -z "$c" ]] ||
        fail "config $config: bad secret line"
      [[ ! "$a" =~ ^(AWS_|FLEETBOT_|BASH|LD_|PYTHON|PATH$|IFS$|ENV$|HOME$|SHELLOPTS$|PS4$) ]] ||
        fail "config $config: $a may not name a secret"
      keys+=("$a")
      names+=("$b")
      unset "$a"
      ;;
    *) fail "config $config: unknown setting $word" ;;
  esac
done <"$config"
if [[ -z "$owner" || "${#keys[@]}" -eq 0 ]]; then fail "config $config: needs an owner and a secret"; fi
if ! id -u "$owner" >/dev/null 2>&1; then fail "the service user $owner does not exist"; fi

# IMDSv2 as the bootstrap reads it: a token first, sent with every read.
if [[ -n "${AWS_REGION:-}" ]]; then
  region="$AWS_REGION"
else
  imds_token="$(curl -fsS --retry 3 --retry-connrefused --retry-delay 1 --max-time 5 \
    -X PUT 'http://169.254.169.254/latest/api/token' \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')" || fail 'could not get an IMDSv2 token'
  region="$(curl -fsS --retry 3 --retry-connrefused --retry-delay 1 --max-time 5 \
    -H "X-aws-ec2-metadata-token: $imds_token" 'http://169.254.169.254/latest/meta-data/placement/region')" ||
    fail 'could not read the region through IMDSv2'
fi
if [[ ! "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]]; then fail 'no usable region'; fi
command -v aws >/dev/null 2>&1 || fail 'the aws CLI is not installed'
export AWS_PAGER=''
aws_err="$(mktemp "$run_dir/.aws-err.XXXXXX")"

# One backoff for the whole run, so its length is bounded whatever the number of secrets (the
# drop-in's TimeoutStartSec is computed from it). AccessDenied is normal right after launch, until
# the bot has tagged the parameters with this instance's ARN; a missing parameter fails at once.
delay_ms="$retry_first_ms"
waited_ms=0
read_parameter() {
  local name="$1" kind="${1##*/}" attempt=0 rc reason code
  while true; do
    attempt=$((attempt + 1))
    rc=0
    # The value arrives on a pipe into this variable: never an argument, never a file.
    value="$(timeout --kill-after=5 "$call_timeout_s" aws ssm get-parameter --name "$name" --with-decryption \
      --query Parameter.Value --output text --region "$region" --cli-connect-timeout 10 2>"$aws_err")" || rc=$?
    if [[ "$rc" -eq 0 ]]; then return 0; fi
    value=''
    reason="$(tr -s '\r\n' '  ' <"$aws_err" | cut -c 1-300)"
    reason="${reason%"${reason##*[! ]}"}"
    code=''
    if [[ "$reason" =~ An\ error\ occurred\ \(([A-Za-z0-9.]+)\) ]]; then code="${BASH_REMATCH[1]}"; fi
    if [[ "$rc" -eq 124 || "$rc" -eq 137 ]]; then code='timed out'; fi
    case "$code" in
      ParameterNotFound) fail "$kind is not stored (ParameterNotFound)" ;;
      ParameterVersionNotFound | ValidationException | InvalidKeyId) fail "$kind could not be read ($code)" ;;
    esac
    if [[ $((waited_ms + delay_ms)) -gt "$retry_budget_ms" ]]; then
      case "$code" in
        AccessDenied*) fail "$kind: access denied ($code), gave up after $(seconds_of "$waited_ms") s" ;;
        *) fail "$kind could not be read (${code:-${reason:0:120}}), gave up after $(seconds_of "$waited_ms") s" ;;
      esac
    fi
    printf 'fleetbot-secrets: reading %s: attempt %d failed, retrying in %s s: %s\n' \
      "$name" "$attempt" "$(seconds_of "$delay_ms")" "$reason" >&2
    sleep "$(seconds_of "$delay_ms")"
    waited_ms=$((waited_ms + delay_ms))
    delay_ms=$((delay_ms * 2))
    if [[ "$delay_ms" -gt "$retry_max_ms" ]]; then delay_ms="$retry_max_ms"; fi
  done
}

# systemd's EnvironmentFile syntax, double-quoted: inside, only \ " $ ` are escaped, so the unit sees
# the value byte for byte. printf is a builtin, so the value is no process's argument.
readonly bs="\\" dq='"' dl='$' bt='`'
env_tmp="$(mktemp "$run_dir/.$service.env.XXXXXX")"
for i in "${!keys[@]}"; do
  kind="${names[$i]##*/}"
  read_parameter "${names[$i]}"
  # One value per line is what keeps one secret from smuggling in another variable.
  if [[ -z "$value" ]]; then fail "$kind is empty"; fi
  if [[ "$value" == *$'\n'* || "$value" == *$'\r'* ]]; then
    value=''
    fail "$kind spans several lines; refused"
  fi
  value="${value//"$bs"/"$bs$bs"}"
  value="${value//"$dq"/"$bs$dq"}"
  value="${value//"$dl"/"$bs$dl"}"
  value="${value//"$bt"/"$bs$bt"}"
  printf '%s="%s"\n' "${keys[$i]}" "$value" >>"$env_tmp"
  value=''
done
chown "$owner:" "$env_tmp"
chmod 0600 "$env_tmp"
mv -f -- "$env_tmp" "$env_file"
env_tmp=''

line="fleetbot-secrets: ok $(date -u +%Y-%m-%dT%H:%M:%SZ)"
write_status "$line"
printf '%s\n' "$line"
