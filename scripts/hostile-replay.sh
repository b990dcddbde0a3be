#!/usr/bin/env bash
# Replay the crafted inputs of the hostile-input tests against one or more
# slipway binaries and print, per input and binary: exit code, wall time,
# peak RSS and the first line of stderr. Each import gets a fresh store and
# runs under a 3 GiB address-space limit and a 120 s timeout, so a bomb
# that is not stopped is reported instead of hurting the machine.
#
#   SLIPWAY_HOSTILE_KEEP=/tmp/inputs cargo test --test cli hostile
#   scripts/hostile-replay.sh /tmp/inputs target/release/slipway [OTHER_BIN...]
#
# docs/reliability.md records a run of this script.
set -euo pipefail
dir=$1
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-28s %-10s %4s %8s %9s  %s\n' input binary exit seconds rss_mib stderr
for f in "$dir"/*.tar.zst; do
  case=$(basename "$f" .tar.zst)
  n=0
  for bin in "$@"; do
    n=$((n + 1))
    rm -rf "$work/store"
    set +e
    (
      ulimit -v 3145728
      SLIPWAY_STORE="$work/store" timeout 120 /usr/bin/time -f '%e %M' -o "$work/time" \
        "$bin" import "$f" --name x >/dev/null 2>"$work/err"
    )
    code=$?
    set -e
    secs=-
    kib=0
    if [ -s "$work/time" ]; then
      read -r secs kib < <(tail -1 "$work/time")
    fi
    line=$(head -1 "$work/err" | cut -c1-110)
    printf '%-28s %-10s %4s %8s %9s  %s\n' "$case" "bin$n" "$code" "$secs" "$((kib / 1024))" "$line"
  done
done
