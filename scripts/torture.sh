#!/usr/bin/env bash
# The long fault campaign (docs/reliability.md): against a throwaway
# sshd on 127.0.0.1, ROUNDS random commands among deploy, push, activate,
# rollback and prune, each kill -9'd at a random moment on the client or on
# the host's `serve`, or stopped at a fault point (SLIPWAY_FAULT); after
# every round the host's invariants are checked, `verify -t` must pass and
# re-running the command must succeed sending only what is missing. Every
# 20 rounds (and at the end) OPERATORS processes activate and roll back at
# once. Prints the figures; exits non-zero on any invariant violation.
#
#   scripts/torture.sh                     # 200 rounds, 8 racing operators
#   ROUNDS=1000 OPERATORS=16 scripts/torture.sh
#   SEED=1234 scripts/torture.sh           # replay a run (the seed is printed)
#   ROUNDS=20 PROFILE=dev scripts/torture.sh   # CI's short run (scripts/test.sh),
#                                          # on the debug build the suite already made
#
# It is the ignored test `torture` in tests/cli/faults.rs (its rig is in
# tests/cli/support/faults.rs), built with --release (PROFILE=dev: the
# debug build); it needs what
# scripts/test.sh installs (openssh-server, openssh-client, git, zstd).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-200}"
OPERATORS="${OPERATORS:-8}"
PROFILE="${PROFILE:-release}"
case "$PROFILE" in
  release) build=(--release) ;;
  dev) build=() ;;
  *) echo "PROFILE must be release or dev" >&2; exit 2 ;;
esac
case "$ROUNDS$OPERATORS" in
  *[!0-9]*) echo "ROUNDS and OPERATORS must be numbers" >&2; exit 2 ;;
esac
if [ "$OPERATORS" -lt 8 ]; then
  echo "OPERATORS must be at least 8" >&2
  exit 2
fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
for tool in sshd ssh ssh-keygen git; do
  if ! have "$tool"; then
    echo "missing: $tool; run scripts/test.sh once (it installs what the tests need)" >&2
    exit 1
  fi
done
if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then
  mkdir -p /run/sshd && chmod 0755 /run/sshd
fi

summary="$(mktemp)"
trap 'rm -f "$summary"' EXIT
export SLIPWAY_TORTURE_ROUNDS="$ROUNDS"
export SLIPWAY_TORTURE_OPERATORS="$OPERATORS"
export SLIPWAY_TORTURE_SUMMARY="$summary"
if [ -n "${SEED:-}" ]; then
  export SLIPWAY_TORTURE_SEED="$SEED"
fi

started=$(date +%s)
status=0
cargo test "${build[@]}" --locked --test cli torture -- --ignored --exact faults::torture --nocapture --test-threads 1 || status=$?

echo
echo "== torture: $ROUNDS rounds, $OPERATORS racing operators, $(( $(date +%s) - started )) s with the build =="
if [ -s "$summary" ]; then
  cat "$summary"
else
  echo "no summary: the run did not finish (see above)"
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
