#!/usr/bin/env bash
# Runs CI (.ci/run) several times in a row while stress-ng keeps every core busy, as a shared CI runner
# does, and prints how long each run took. Stops at the first failing run and names its log.
#   npm run test:loaded           three runs
#   npm run test:loaded -- 5      five runs
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
if ! command -v stress-ng >/dev/null; then
  echo "test:loaded: installing stress-ng"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng) >/dev/null
fi

cores=$(nproc)
stress-ng --cpu "$cores" --timeout 0 --quiet &
load=$!
trap 'kill "$load" 2>/dev/null || true; wait "$load" 2>/dev/null || true' EXIT
echo "test:loaded: stress-ng keeps $cores cores busy (pid $load); $runs runs of .ci/run"

logs=$(mktemp -d "${TMPDIR:-/tmp}/fleetbot-loaded.XXXXXX")
for run in $(seq 1 "$runs"); do
  started=$(date +%s)
  if ! .ci/run >"$logs/run-$run.log" 2>&1; then
    echo "test:loaded: run $run failed after $(($(date +%s) - started)) s; log: $logs/run-$run.log"
    tail -n 40 "$logs/run-$run.log"
    exit 1
  fi
  echo "test:loaded: run $run passed in $(($(date +%s) - started)) s"
done
echo "test:loaded: $runs of $runs runs passed under load; logs in $logs"
