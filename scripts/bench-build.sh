#!/usr/bin/env bash
# Benchmark `slipway build --dir` against the tools it replaces, in one run:
#
#   slipway build --dir TREE --name x         (hashes every file *and* compresses)
#   tar -cf - TREE | zstd -T0 -3 > out        (compresses only)
#   find TREE -type f -print0 | xargs -0 sha256sum > /dev/null   (hashes only)
#
# on a generated, deterministic tree (scripts/gen-tree.py, seeded) of ~20k
# files / ~300 MiB of mixed text and incompressible data, written to a
# temporary directory that is removed at the end (never committed).
#
#   scripts/bench-build.sh                  # 3 runs of each, median reported
#   scripts/bench-build.sh -n 5             # 5 runs of each
#   scripts/bench-build.sh --files 5000 --mib 100 --seed 7
#   BENCH_TMP=/mnt/fast scripts/bench-build.sh   # where the tree and stores go
#   SLIPWAY_BIN=/tmp/old/slipway scripts/bench-build.sh   # measure another binary
#   scripts/bench-build.sh -n 7 --load 2    # under a fixed background load
#
# --load N runs N CPU-bound processes beside every timed command (from the
# first run to the last; `stress-ng --cpu N` when it is installed, else N
# busy shell loops), each bounded by `timeout`, so that "a machine whose
# cores other builds also want" is the same for everyone who runs it.
#
# The page cache is warmed (the tree is read once) before any timing, so
# every command reads from memory; each slipway run gets a fresh store. The
# runs are interleaved (slipway, tar|zstd, sha256sum, tar|zstd, slipway, ...)
# so that load from other processes hits all three alike. The fastest run and
# CPU time are reported beside the median: on a shared machine they show
# what the median's noise hides. Output: a markdown table on
# stdout; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

runs=${BENCH_RUNS:-3}
files=20000
mib=300
seed=1
build=1
load=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--runs) runs=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --load) load=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "bench-build: unknown argument \`$1\`; see --help" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
need_tools zstd tar sha256sum python3

if [ "$build" = 1 ] && [ -z "${SLIPWAY_BIN:-}" ]; then
  note "building slipway (cargo build --release)"
  cargo build --release --locked --quiet >&2
fi
slipway=$(slipway_bin)

work=$(make_work_dir)
load_pids=()
stop_load() {
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  load_pids=()
}
trap 'stop_load; rm -rf "$work"' EXIT
# start_load: N CPU-bound processes, each ended by `timeout` at the latest.
start_load() {
  [ "$load" -gt 0 ] || return 0
  if command -v stress-ng >/dev/null 2>&1; then
    load_what="\`stress-ng --cpu $load\`"
    timeout 3600 stress-ng --quiet --cpu "$load" >/dev/null 2>&1 &
    load_pids+=("$!")
  else
    load_what="$load busy shell loops (\`while :; do :; done\`)"
    for _ in $(seq 1 "$load"); do
      timeout 3600 bash -c 'while :; do :; done' &
      load_pids+=("$!")
    done
  fi
  sleep 1
}
load_what=none

note "generating the tree: $files files, $mib MiB, seed $seed"
python3 "$here/scripts/gen-tree.py" "$work/tree" --seed "$seed" --files "$files" --mib "$mib"
tree_files=$(find "$work/tree" -type f | wc -l)
tree_bytes=$(find "$work/tree" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')

note "warming the page cache"
tar -cf - -C "$work" tree >/dev/null

declare -a t_slip t_tar t_sha rss_slip rss_tar c_slip c_tar c_sha
ids=()
start_load
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run_slipway() {
  local store="$work/store-$1" secs kib cpu
  timed "$work/m" "$slipway" -q --store "$store" build --dir "$work/tree" --name x >"$work/id"
  read -r secs kib cpu <"$work/m"
  t_slip+=("$secs"); rss_slip+=("$kib"); c_slip+=("$cpu")
  ids+=("$(cat "$work/id")")
  bundle_bytes=$(stat -c %s "$store"/bundles/*.tar.zst)
  rm -rf "$store"
}
run_tar() {
  local secs kib cpu
  # shellcheck disable=SC2016 # $1 expands in the inner shell
  timed "$work/m" bash -c 'tar -cf - -C "$1" tree | zstd -q -T0 -3 > "$1/out.tar.zst"' _ "$work"
  read -r secs kib cpu <"$work/m"
  t_tar+=("$secs"); rss_tar+=("$kib"); c_tar+=("$cpu")
  tar_bytes=$(stat -c %s "$work/out.tar.zst")
  rm -f "$work/out.tar.zst"
}
run_sha() {
  local secs cpu
  # shellcheck disable=SC2016 # $1 expands in the inner shell
  timed "$work/m" bash -c 'find "$1" -type f -print0 | xargs -0 sha256sum > /dev/null' _ "$work/tree"
  read -r secs _ cpu <"$work/m"
  t_sha+=("$secs"); c_sha+=("$cpu")
}

for i in $(seq 1 "$runs"); do
  note "run $i/$runs"
  # Alternate which of the two compared commands goes first.
  if [ $((i % 2)) = 1 ]; then
    run_slipway "$i"; run_tar
  else
    run_tar; run_slipway "$i"
  fi
  run_sha
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
stop_load

if [ "$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)" != 1 ]; then
  echo "bench-build: slipway gave different ids for the same tree: ${ids[*]}" >&2
  exit 1
fi

m_slip=$(median "${t_slip[@]}")
m_tar=$(median "${t_tar[@]}")
m_sha=$(median "${t_sha[@]}")
ratio=$(awk -v a="$m_slip" -v b="$m_tar" 'BEGIN {printf "%.2f", a / b}')
f_slip=$(fastest "${t_slip[@]}")
f_tar=$(fastest "${t_tar[@]}")
fast_ratio=$(awk -v a="$f_slip" -v b="$f_tar" 'BEGIN {printf "%.2f", a / b}')
cpu_ratio=$(awk -v a="$(median "${c_slip[@]}")" -v b="$(median "${c_tar[@]}")" 'BEGIN {printf "%.2f", a / b}')
verdict=$(awk -v r="$ratio" 'BEGIN {print (r <= 1.2) ? "meets" : "misses"}')

cat <<EOF
### Build: $tree_files files, $(mib_of "$tree_bytes") MiB, seed $seed, $runs runs each

Machine: $(machine_line). Background load: $load_what. Load average before/after: $load_before / $load_after.
zstd workers: ${SLIPWAY_ZSTD_WORKERS:-default}. Bundle id: \`${ids[0]}\`.

| command | median wall | fastest | runs (s) | CPU user+sys (median) | peak RSS (median) | output |
| --- | ---: | ---: | --- | ---: | ---: | ---: |
| \`slipway build --dir TREE --name x\` | **${m_slip} s** | ${f_slip} s | $(join "${t_slip[@]}") | $(median "${c_slip[@]}") s | $(mib_of_kib "$(median "${rss_slip[@]}")") MiB | $(mib_of "$bundle_bytes") MiB |
| \`tar -cf - TREE \| zstd -T0 -3 > out\` | **${m_tar} s** | ${f_tar} s | $(join "${t_tar[@]}") | $(median "${c_tar[@]}") s | $(mib_of_kib "$(median "${rss_tar[@]}")") MiB | $(mib_of "$tar_bytes") MiB |
| \`find TREE -type f -print0 \| xargs -0 sha256sum\` | **${m_sha} s** | $(fastest "${t_sha[@]}") s | $(join "${t_sha[@]}") | $(median "${c_sha[@]}") s | | |

slipway / tar|zstd = **${ratio}×** in median wall time (goal ≤ 1.2×: $verdict);
${fast_ratio}× between the fastest runs; ${cpu_ratio}× in CPU time.
slipway fsyncs its bundle before storing it; tar|zstd's output is not synced.
EOF
