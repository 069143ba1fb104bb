#!/bin/bash
# fleetbot first-boot bootstrap. It names the parameters to read and never holds their values.
set -euo pipefail
# Nothing secret passes through this shell any more, but tracing stays off: the log ends up in chat.
set +x
umask 077

readonly LOG_FILE=__LOG_FILE__
readonly SENTINEL=__SENTINEL__
readonly SERVICE_UNIT=__SERVICE_UNIT__
readonly SERVICE_USER=__SERVICE_USER__
readonly TELEGRAM_USER_ID=__TELEGRAM_USER_ID__
readonly VERSION=__VERSION__
readonly INSTALL_COMMAND=__INSTALL_COMMAND__
readonly ENV_FILE=__ENV_FILE__
readonly STATUS_FILE=__STATUS_FILE__

# Directories on the way are public (/etc, /usr/local); the log stays private.
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

# The readiness check reports a line starting "bootstrap: failed" as final, so every exit path says why.
on_exit() {
  local status=$?
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

# install_file PATH MODE [packed] < text: written beside the target and renamed, so systemd never
# reads half a file; "packed" is gzip in base64. Runs as root, so the files are root's.
install_file() {
  local tmp
  make_dir "$(dirname "$1")"
  tmp="$(mktemp "$1.XXXXXX")"
  if [[ $# -ge 3 && "$3" == packed ]]; then base64 -d | gzip -dc >"$tmp"; else cat >"$tmp"; fi
  chmod "$2" "$tmp"
  mv -f -- "$tmp" "$1"
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
for tool in aws base64 gzip; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed on this image"
done

step "creating the service user $SERVICE_USER"
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi

step "installing fleetbot-secrets and its drop-in for $SERVICE_UNIT"
__INSTALL_FILES__

step 'running the install command'
(
  umask 022
  FLEETBOT_VERSION="$VERSION" FLEETBOT_SERVICE_NAME="$SERVICE_UNIT" FLEETBOT_SERVICE_USER="$SERVICE_USER" \
    FLEETBOT_TELEGRAM_USER_ID="$TELEGRAM_USER_ID" FLEETBOT_ENV_FILE="$ENV_FILE" \
    bash -euo pipefail -c "$INSTALL_COMMAND"
)

# The unit's ExecStartPre reads the secrets now, and again at every later start.
step "enabling and starting $SERVICE_UNIT"
systemctl daemon-reload
systemctl enable "$SERVICE_UNIT"
if ! systemctl restart "$SERVICE_UNIT"; then
  STATUS="$(head -n 1 -- "$STATUS_FILE" 2>/dev/null || true)"
  case "$STATUS" in
    'fleetbot-secrets: failed: '*) ;;
    '') STATUS="no status from fleetbot-secrets; see journalctl -u $SERVICE_UNIT" ;;
    *) STATUS="$STATUS, then the assistant failed; see journalctl -u $SERVICE_UNIT" ;;
  esac
  fail "$SERVICE_UNIT did not start: $STATUS"
fi

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
