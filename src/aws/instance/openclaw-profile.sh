#!/bin/bash
# fleetbot's default assistant profile: the openclaw gateway from npm, run by systemd as the service
# user. The bootstrap (src/aws/userdata.ts) runs it once as root when INSTANCE_INSTALL_COMMAND is not
# set, with FLEETBOT_SERVICE_NAME, FLEETBOT_SERVICE_USER, FLEETBOT_VERSION and
# FLEETBOT_TELEGRAM_USER_ID; it then starts the unit. The unit's TELEGRAM_BOT_TOKEN and OPENAI_API_KEY
# come from the env file that the bootstrap's drop-in has fleetbot-secrets write before every start:
# this profile never sees a secret.
# It also writes /opt/fleetbot/deploy.sh VERSION, which the deploy document runs.
# Tests only: FLEETBOT_PROFILE_ROOT moves /etc, /opt and /var/lib under a scratch directory.
set -euo pipefail
set +x

readonly pinned_version='2026.9.6'
readonly port=18789
readonly root="${FLEETBOT_PROFILE_ROOT:-}"
readonly service="${FLEETBOT_SERVICE_NAME:-assistant}"
readonly service_user="${FLEETBOT_SERVICE_USER:-assistant}"
readonly owner_id="${FLEETBOT_TELEGRAM_USER_ID:-}"
readonly version_re='^v?(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})(-[0-9A-Za-z.-]{1,20})?$'
version="${FLEETBOT_VERSION:-$pinned_version}"

fail() {
  printf 'openclaw-profile: %s\n' "$1" >&2
  exit 1
}

[[ "$service" =~ ^[a-z][a-z0-9@._-]{0,63}$ ]] || fail 'FLEETBOT_SERVICE_NAME is not a unit name'
[[ "$service_user" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || fail 'FLEETBOT_SERVICE_USER is not a user name'
[[ "$version" =~ $version_re ]] || fail 'FLEETBOT_VERSION is not a version such as 2026.9.6'
[[ "$owner_id" =~ ^[0-9]{0,16}$ ]] || fail 'FLEETBOT_TELEGRAM_USER_ID is not numeric'
readonly unit="${service%.service}.service"

node_major() {
  node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

# Amazon Linux 2023 namespaces each Node.js major (node-22, npm-22); `node` is an alternatives link.
if [[ "$(node_major)" -lt 22 ]]; then
  command -v dnf >/dev/null 2>&1 ||
    fail 'Node.js >= 22 is missing and there is no dnf: put Node.js in the AMI or set INSTANCE_INSTALL_COMMAND'
  printf 'openclaw-profile: installing Node.js 22\n'
  dnf install -y nodejs22 nodejs22-npm
  if [[ "$(node_major)" -lt 22 ]] && command -v node-22 >/dev/null 2>&1; then
    alternatives --set node "$(command -v node-22)"
  fi
  [[ "$(node_major)" -ge 22 ]] || fail 'node is still older than 22 after installing nodejs22'
fi
node_bin="$(command -v node)"
npm_bin="$(command -v npm)" || fail 'npm is missing'

printf 'openclaw-profile: installing openclaw@%s\n' "${version#v}"
"$npm_bin" install -g --no-fund --no-audit "openclaw@${version#v}"
openclaw_bin="$("$npm_bin" prefix -g)/bin/openclaw"
[[ -x "$openclaw_bin" ]] || fail "no $openclaw_bin after npm install"
for path in "$node_bin" "$openclaw_bin"; do
  [[ "$path" =~ ^/[A-Za-z0-9_./+@-]+$ ]] || fail "$path cannot go on a unit's command line"
done

home="$(getent passwd "$service_user" | cut -d: -f6)"
[[ "$home" =~ ^/[A-Za-z0-9_./-]+$ && -d "$home" ]] || fail "the service user $service_user has no home"

# openclaw's own config: gateway on loopback only, Telegram as the channel. Written once, so an owner's
# later edits survive deploys. With the owner's Telegram id only they may talk to the bot.
if [[ ! -e "$home/.openclaw/openclaw.json" ]]; then
  dm='"dmPolicy": "pairing"'
  if [[ -n "$owner_id" ]]; then dm="\"dmPolicy\": \"allowlist\", \"allowFrom\": [\"$owner_id\"]"; fi
  mkdir -p "$home/.openclaw"
  printf '{\n  "gateway": { "mode": "local", "bind": "loopback", "port": %s },\n  "channels": { "telegram": { "enabled": true, %s } }\n}\n' \
    "$port" "$dm" >"$home/.openclaw/openclaw.json"
  chmod 0700 "$home/.openclaw"
  chmod 0600 "$home/.openclaw/openclaw.json"
  chown -R "$service_user:" "$home/.openclaw"
fi

# Written beside the target and renamed: systemd or the deploy document never read half a file.
install_file() {
  local target="$1" mode="$2" tmp
  mkdir -p "$(dirname "$target")"
  tmp="$(mktemp "$target.XXXXXX")"
  cat >"$tmp"
  chmod "$mode" "$tmp"
  mv -f -- "$tmp" "$target"
}

install_file "$root/etc/systemd/system/$unit" 0644 <<EOF
[Unit]
Description=fleetbot assistant: openclaw gateway
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=exec
User=$service_user
WorkingDirectory=$home
Environment=HOME=$home
ExecStart=$node_bin $openclaw_bin gateway run --bind loopback --port $port
Restart=on-failure
RestartSec=10
NoNewPrivileges=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
EOF

# The deploy document validates VERSION too; this script checks it again, installs it, restarts the
# unit (whose ExecStartPre reads the secrets again), checks it came back and records the version.
{
  printf '#!/bin/bash\n# deploy.sh VERSION, from the fleetbot openclaw profile; the deploy document runs it as root.\n'
  printf 'set -euo pipefail\n'
  printf 'readonly npm_bin=%q unit=%q version_file=%q status_file=%q\n' "$npm_bin" "$unit" \
    "$root/var/lib/fleetbot/version" "${FLEETBOT_RUN_DIR:-/run/fleetbot}/${service%.service}.status"
  printf "readonly version_re='%s'\n" "$version_re"
  cat <<'EOF'
version="${1:-}"
if [[ $# -ne 1 || ! "$version" =~ $version_re ]]; then echo 'deploy: invalid version'; exit 2; fi
echo "deploy: installing openclaw@${version#v}"
"$npm_bin" install -g --no-fund --no-audit "openclaw@${version#v}"
echo "deploy: restarting $unit"
systemctl reset-failed -- "$unit" 2>/dev/null || true
if ! systemctl restart -- "$unit" || ! systemctl is-active --quiet -- "$unit"; then
  echo "deploy: failed: $unit is $(systemctl is-active -- "$unit" || true) after installing openclaw@${version#v}"
  if [[ -f "$status_file" ]]; then cat -- "$status_file"; fi
  exit 1
fi
mkdir -p "$(dirname "$version_file")"
printf 'version=%s\ndeployed=%s\n' "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$version_file.tmp"
mv -f -- "$version_file.tmp" "$version_file"
echo "deploy: done, openclaw ${version#v} is active"
EOF
} | install_file "$root/opt/fleetbot/deploy.sh" 0755

mkdir -p "$root/var/lib/fleetbot"
printf 'version=%s\ndeployed=%s\n' "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$root/var/lib/fleetbot/version"
printf 'openclaw-profile: openclaw %s installed as %s\n' "${version#v}" "$unit"
