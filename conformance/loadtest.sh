#!/usr/bin/env bash
# Runs the conformance vectors on every engine RUNS times in a row (default
# 10) beside two CPU-burning processes, and stops at the first failure.
# Not part of `go test ./...`: it proves the real-clock (timed) vectors hold
# on a busy machine (issue 10 item 8). Bounded: each run gets RUN_TIMEOUT
# (default 300s); the burners are killed on exit, whatever happens.
#
#   bash conformance/loadtest.sh            # from the repository root
#   RUNS=3 bash conformance/loadtest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
PATTERN=${PATTERN:-'TestVectors'}

burners=()
stop() {
  for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM
for _ in 1 2; do
  (while :; do :; done) &
  burners+=("$!")
done
echo "loadtest: burners ${burners[*]} running; $RUNS runs of go test -run '$PATTERN' ./conformance/"

go test -c -o /tmp/conformance.loadtest.$$ ./conformance/
trap 'stop; rm -f /tmp/conformance.loadtest.$$' EXIT INT TERM
for i in $(seq 1 "$RUNS"); do
  start=$(date +%s)
  if ! (cd conformance && timeout "$RUN_TIMEOUT" /tmp/conformance.loadtest.$$ -test.count=1 -test.v -test.run "$PATTERN" \
      > /tmp/conformance.loadtest.$$.out 2>&1); then
    grep -E -- '--- FAIL|step [0-9]+|attempts|timed out' /tmp/conformance.loadtest.$$.out | head -40 || true
    echo "loadtest: run $i of $RUNS FAILED after $(( $(date +%s) - start ))s (full output: /tmp/conformance.loadtest.$$.out)"
    exit 1
  fi
  retried=$(grep -c 'attempts; discarded' /tmp/conformance.loadtest.$$.out || true)
  echo "loadtest: run $i of $RUNS passed in $(( $(date +%s) - start ))s ($retried vector runs needed a second attempt)"
done
rm -f /tmp/conformance.loadtest.$$.out
echo "loadtest: $RUNS of $RUNS runs passed beside two CPU burners"
