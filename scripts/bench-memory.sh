#!/usr/bin/env bash
# Peak resident memory of slipway on a 1 GiB bundle: the goal in
# docs/benchmarks.md is that a bundle of 1 GiB builds "with well under
# 200 MiB resident".
#
# Generates a deterministic tree (scripts/gen-tree.py: 6 large files of
# 128 MiB, half incompressible, plus ~10k small files, 1 GiB in all) in a
# temporary directory, then measures peak RSS (GNU time) and wall time of
#
#   slipway build --dir TREE --name big
#   slipway verify big
#   slipway export big -o FILE
#   slipway import FILE            (into a second, empty store)
#
# once with the default number of zstd workers and once for each count in
# --workers (default: 4, the most slipway uses without SLIPWAY_ZSTD_WORKERS,
# i.e. what a machine with 4 or more CPUs gets).
#
#   scripts/bench-memory.sh
#   scripts/bench-memory.sh --workers "1 4 8" --no-build
#   BENCH_TMP=/mnt/fast scripts/bench-memory.sh
#
# Exits 1 when any peak exceeds --limit MiB (default 200).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

workers_list="4"
limit=200
build=1
seed=1
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers_list=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "bench-memory: unknown argument \`$1\`; see --help" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
need_tools python3

if [ "$build" = 1 ] && [ -z "${SLIPWAY_BIN:-}" ]; then
  note "building slipway (cargo build --release)"
  cargo build --release --locked --quiet >&2
fi
slipway=$(slipway_bin)

work=$(make_work_dir)
trap 'rm -rf "$work"' EXIT

note "generating the tree: 1 GiB, seed $seed"
python3 "$here/scripts/gen-tree.py" "$work/tree" --seed "$seed" --files 10000 --mib 1024 --large 6 --large-mib 768
tree_files=$(find "$work/tree" -type f | wc -l)
tree_bytes=$(find "$work/tree" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
note "warming the page cache"
tar -cf - -C "$work" tree >/dev/null

rows=()
over=0
# measure LABEL WORKERS CMD...: one table row; WORKERS empty = default.
measure() {
  local label=$1 workers=$2 secs kib mib
  shift 2
  if [ -n "$workers" ]; then
    SLIPWAY_ZSTD_WORKERS=$workers timed "$work/m" "$@" >/dev/null
  else
    timed "$work/m" "$@" >/dev/null
  fi
  read -r secs kib _ <"$work/m"
  mib=$(mib_of_kib "$kib")
  if awk -v m="$mib" -v l="$limit" 'BEGIN {exit !(m > l)}'; then over=1; fi
  rows+=("| \`$label\` | ${workers:-default ($(default_workers))} | **$mib MiB** | $secs s |")
}

# The count slipway picks without SLIPWAY_ZSTD_WORKERS: CPUs, at most 4.
default_workers() {
  local n
  n=$(nproc)
  [ "$n" -gt 4 ] && n=4
  printf '%s' "$n"
}

for workers in "" $workers_list; do
  note "workers: ${workers:-default}"
  store="$work/store" other="$work/other" file="$work/big.tar.zst"
  rm -rf "$store" "$other" "$file" "$file.meta.json"
  measure "build --dir TREE --name big" "$workers" "$slipway" -q --store "$store" build --dir "$work/tree" --name big
  measure "verify big" "$workers" "$slipway" -q --store "$store" verify big
  measure "export big -o FILE" "$workers" "$slipway" -q --store "$store" export big -o "$file"
  measure "import FILE" "$workers" "$slipway" -q --store "$other" import "$file"
  bundle_bytes=$(stat -c %s "$file")
done

cat <<EOF
### Memory: $tree_files files, $(mib_of "$tree_bytes") MiB (6 × 128 MiB large files), seed $seed

Machine: $(machine_line). Bundle: $(mib_of "$bundle_bytes") MiB compressed.

| command | zstd workers | peak RSS | wall |
| --- | --- | ---: | ---: |
EOF
printf '%s\n' "${rows[@]}"
echo
if [ "$over" = 1 ]; then
  echo "At least one peak exceeds the limit of $limit MiB."
  exit 1
fi
echo "Every peak is under the limit of $limit MiB."
