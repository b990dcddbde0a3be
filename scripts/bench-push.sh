#!/usr/bin/env bash
# Benchmark `slipway push` and `slipway deploy` over a real sshd on loopback
# against the tools an operator would otherwise use, in one run:
#
#   first push:   slipway push v1  vs  tar -cf - | zstd -T0 -3 | ssh host 'zstd -d | tar -xf -'
#   next release (10 changed files):
#                 slipway push v2  vs  rsync -a --link-dest=PREV (over the same ssh),
#                 both also net of one `ssh host true` timed in the same round
#   next release beside a busy neighbour: slipway push v2 right after another
#                 process wrote --dirty-mib MiB (400) it has not synced to the
#                 hosts' file system, against the same push without it; and
#                 how much of the neighbour's data is still dirty after the
#                 push (`Dirty:` in /proc/meminfo before and after)
#   fleet:        slipway push to 8 hosts (a deploy's first phase)  vs  8 sequential pushes;
#                 the pusher's own CPU time for 8 hosts vs 1 (first push and next release);
#                 activation of 8 staged hosts
#
# The tree is generated (scripts/gen-tree.py, seeded) in a temporary
# directory and removed at the end. A throwaway sshd (own host key, client
# key and config) listens on 127.0.0.1; the 8 "hosts" are 8 ssh aliases of
# it with distinct roots, so every host's work shares this machine's cores
# with the pusher.
#
# Run as root (with mkfs.ext4 and a loop device), the hosts' roots are on a
# fresh ext4 file system, made anew for every run: on a long-lived file
# system the same `tar -x` takes 1 s or 7 s depending on what was deleted
# before. --no-fresh-fs writes to $BENCH_TMP instead.
#
#   scripts/bench-push.sh                      # ~20k files / ~300 MiB, 3 runs
#   scripts/bench-push.sh -n 1 --files 5000 --mib 60     # quick
#   scripts/bench-push.sh --no-fleet
#   scripts/bench-push.sh --no-fleet --no-fresh-fs    # hosts' roots on this machine's own file system
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

runs=${BENCH_RUNS:-3}
files=20000
mib=300
seed=1
build=1
fleet=1
hosts=8
fresh_fs=auto
dirty_mib=400
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--runs) runs=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --dirty-mib) dirty_mib=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-fleet) fleet=0; shift ;;
    --fresh-fs) fresh_fs=1; shift ;;
    --no-fresh-fs) fresh_fs=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "bench-push: unknown argument \`$1\`; see --help" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
need_tools zstd tar rsync ssh python3
[ -x /usr/sbin/sshd ] || need_tools sshd

if [ "$build" = 1 ] && [ -z "${SLIPWAY_BIN:-}" ]; then
  note "building slipway (cargo build --release)"
  cargo build --release --locked --quiet >&2
fi
slipway=$(slipway_bin)

if [ "$fresh_fs" != 0 ]; then
  if fresh_fs_usable; then
    fresh_fs=1
  elif [ "$fresh_fs" = 1 ]; then
    echo "bench-push: --fresh-fs needs root, mkfs.ext4 and losetup" >&2
    exit 1
  else
    fresh_fs=0
  fi
fi

work=$(make_work_dir)
sshd_pid=
cleanup() {
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  mountpoint -q "$work/remote" 2>/dev/null && umount "$work/remote"
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- a throwaway sshd on loopback -------------------------------------------
note "starting a throwaway sshd"
start_sshd "$work/ssh" "$hosts"
export SLIPWAY_SSH_CONFIG="$work/ssh/config" SLIPWAY_REMOTE_BIN="$slipway"
ssh_cmd=(ssh -F "$work/ssh/config")

# --- the trees ----------------------------------------------------------------
note "generating the tree: $files files, $mib MiB, seed $seed"
python3 "$here/scripts/gen-tree.py" "$work/v1" --seed "$seed" --files "$files" --mib "$mib"
cp -a "$work/v1" "$work/v2"
# 10 changed files: new random contents of the same sizes.
mapfile -t changed < <(cd "$work/v2" && find . -type f -size +8k | sort | awk 'NR % 997 == 1' | head -n 10)
for f in "${changed[@]}"; do
  size=$(stat -c %s "$work/v2/$f")
  head -c "$size" /dev/urandom >"$work/v2/$f"
done
changed_bytes=$(cd "$work/v2" && cat "${changed[@]}" | wc -c)
changed_zstd=$(cd "$work/v2" && cat "${changed[@]}" | zstd -q -3 | wc -c)
tree_bytes=$(find "$work/v1" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
store="$work/store"
"$slipway" -q --store "$store" build --dir "$work/v1" --name v1 >/dev/null
"$slipway" -q --store "$store" build --dir "$work/v2" --name v2 >/dev/null
bundle_bytes=$(stat -c %s "$store"/bundles/*.tar.zst | head -n 1)
note "warming the page cache"
tar -cf - -C "$work" v1 v2 >/dev/null
cat "$store"/bundles/*.tar.zst >/dev/null

declare -a t_first t_pipe t_inc t_rsync sent_inc t_ssh t_dirty dirty_before dirty_after
dirty_kib() { awk '/^Dirty:/ {print $2}' /proc/meminfo; }
remote="$work/remote"
mkdir -p "$remote"
# Empty the hosts' file system: a fresh ext4 (inode tables written now, so
# no lazy initialisation runs in the background), or an emptied directory.
reset_remote() {
  if [ "$fresh_fs" = 1 ]; then
    mount_fresh_ext4 "$work/remote.img" "$remote" 8G
  else
    chmod -R u+w "$remote" 2>/dev/null || true
    rm -rf "${remote:?}"/*
  fi
  sync
}
if [ "$fresh_fs" = 1 ]; then
  reset_remote >/dev/null 2>&1 || true
  if ! mountpoint -q "$remote"; then
    note "cannot mount a fresh file system on a loop device here; the hosts' roots go under $work"
    fresh_fs=0
  fi
fi
if [ "$fresh_fs" = 1 ]; then
  fs_line="the hosts' roots on a fresh ext4 (8 GiB loop device) made for every run"
else
  fs_line="the hosts' roots in $(df --output=fstype "$work" | tail -n 1) under $work, emptied for every run"
fi
for i in $(seq 1 "$runs"); do
  note "run $i/$runs: first push"
  reset_remote
  # Each measurement starts with nothing left to write back: a syncfs
  # (what slipway used before it fsynced exactly what it wrote) would
  # otherwise also flush what the previous command left dirty.
  run_first() {
    sync
    timed "$work/m" "$slipway" -q --store "$store" push v1 -t "ssh://bench-1$remote/slip" --json >"$work/p1.json"
    read -r secs _ _ <"$work/m"; t_first+=("$secs")
  }
  run_pipe() {
    sync
    # shellcheck disable=SC2016
    timed "$work/m" bash -c 'tar -cf - -C "$1" . | zstd -q -T0 -3 | "${@:3}" "mkdir -p $2 && zstd -q -d | tar -xf - -C $2"' \
      _ "$work/v1" "$remote/pipe/v1" "${ssh_cmd[@]}" bench-1
    read -r secs _ _ <"$work/m"; t_pipe+=("$secs")
  }
  if [ $((i % 2)) = 1 ]; then run_first; run_pipe; else run_pipe; run_first; fi
  # A second host root with v1, for the push beside a busy neighbour.
  "$slipway" -q --store "$store" push v1 -t "ssh://bench-1$remote/slip2" >/dev/null

  note "run $i/$runs: next release with ${#changed[@]} changed files"
  run_inc() {
    sync
    timed "$work/m" "$slipway" -q --store "$store" push v2 -t "ssh://bench-1$remote/slip" --json >"$work/p2.json"
    read -r secs _ _ <"$work/m"; t_inc+=("$secs")
    sent_inc+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["bytes_sent"])' "$work/p2.json")")
  }
  run_rsync() {
    sync
    timed "$work/m" rsync -a -e "${ssh_cmd[*]}" --link-dest="$remote/pipe/v1" "$work/v2/" "bench-1:$remote/pipe/v2/"
    read -r secs _ _ <"$work/m"; t_rsync+=("$secs")
    rm -rf "$remote/pipe/v2"
  }
  run_ssh() {
    sync
    timed "$work/m" "${ssh_cmd[@]}" bench-1 true
    read -r secs _ _ <"$work/m"; t_ssh+=("$secs")
  }
  # Another process's unsynced writes on the hosts' file system (a
  # database, a log shipper), made right before the push.
  run_dirty() {
    sync
    head -c "${dirty_mib}M" /dev/zero >"$remote/neighbour"
    dirty_before+=("$(dirty_kib)")
    timed "$work/m" "$slipway" -q --store "$store" push v2 -t "ssh://bench-1$remote/slip2" >/dev/null
    read -r secs _ _ <"$work/m"; t_dirty+=("$secs")
    dirty_after+=("$(dirty_kib)")
    rm -f "$remote/neighbour"
  }
  if [ $((i % 2)) = 1 ]; then run_inc; run_rsync; run_ssh; run_dirty; else run_dirty; run_ssh; run_rsync; run_inc; fi
done

m_first=$(median "${t_first[@]}"); m_pipe=$(median "${t_pipe[@]}")
m_inc=$(median "${t_inc[@]}"); m_rsync=$(median "${t_rsync[@]}")
r_first=$(awk -v a="$m_first" -v b="$m_pipe" 'BEGIN {printf "%.2f", a / b}')
r_inc=$(awk -v a="$m_inc" -v b="$m_rsync" 'BEGIN {printf "%.2f", a / b}')
s_inc=$(median "${sent_inc[@]}")
r_bytes=$(awk -v a="$s_inc" -v b="$changed_zstd" 'BEGIN {printf "%.2f", a / b}')
m_ssh=$(median "${t_ssh[@]}"); m_dirty=$(median "${t_dirty[@]}")
n_inc=$(awk -v a="$m_inc" -v s="$m_ssh" 'BEGIN {printf "%.2f", a - s}')
n_rsync=$(awk -v a="$m_rsync" -v s="$m_ssh" 'BEGIN {printf "%.2f", a - s}')
r_net=$(awk -v a="$m_inc" -v b="$m_rsync" -v s="$m_ssh" 'BEGIN {printf "%.2f", (a - s) / (b - s)}')
r_dirty=$(awk -v a="$m_dirty" -v b="$m_inc" 'BEGIN {printf "%.2f", a / b}')
kept=()
for k in "${!dirty_before[@]}"; do
  kept+=("$(awk -v a="${dirty_after[$k]}" -v b="${dirty_before[$k]}" 'BEGIN {printf "%.0f%%", 100 * a / b}')")
done

cat <<EOF
### Push over loopback sshd: $(find "$work/v1" -type f | wc -l) files, $(mib_of "$tree_bytes") MiB (bundle $(mib_of "$bundle_bytes") MiB), seed $seed, $runs runs

Machine: $(machine_line); $fs_line.

| what | slipway | baseline | ratio | goal |
| --- | ---: | ---: | ---: | --- |
| first push | \`push v1\` **${m_first} s** ($(join "${t_first[@]}")) | \`tar \| zstd -T0 -3 \| ssh 'zstd -d \| tar -x'\` **${m_pipe} s** ($(join "${t_pipe[@]}")) | **${r_first}×** | ≤ 1.1× |
| next release, ${#changed[@]} files changed | \`push v2\` **${m_inc} s** ($(join "${t_inc[@]}")) | \`rsync -a --link-dest=PREV\` **${m_rsync} s** ($(join "${t_rsync[@]}")) | **${r_inc}×** | ≤ 0.5× |
| the same, net of one \`ssh host true\` (**${m_ssh} s**: $(join "${t_ssh[@]}")) | ${n_inc} s | ${n_rsync} s | **${r_net}×** | ≤ 0.5× |
| bytes sent for that push | ${s_inc} B | zstd -3 of the changed files: ${changed_zstd} B (raw ${changed_bytes} B) | **${r_bytes}×** | ≤ 1.1× |
| next release beside a neighbour's ${dirty_mib} MiB of unsynced writes | \`push v2\` **${m_dirty} s** ($(join "${t_dirty[@]}")) | the same push without them: **${m_inc} s** | **${r_dirty}×** | ≤ 1.1× |
| the neighbour's data still dirty after that push | \`Dirty:\` $(for k in "${!dirty_before[@]}"; do printf '%s → %s kB; ' "${dirty_before[$k]}" "${dirty_after[$k]}"; done) | | **$(join "${kept[@]}")** kept | ≥ 50 % |

slipway also verifies every byte on the host and makes what it wrote
durable (each new file and directory fsynced) before the release appears;
the pipelines do neither.
EOF

[ "$fleet" = 1 ] || exit 0

# --- fleet ----------------------------------------------------------------------
note "fleet: $hosts hosts"
{
  printf '[targets.one]\nhosts = ["ssh://bench-1%s/one"]\n' "$remote"
  printf '[targets.fleet]\nparallel = %s\nhosts = [' "$hosts"
  for i in $(seq 1 "$hosts"); do
    [ "$i" -gt 1 ] && printf ', '
    printf '"ssh://bench-%s%s/fleet-%s"' "$i" "$remote" "$i"
  done
  printf ']\n'
} >"$work/slipway.toml"
declare -a t_fleet t_seq c_fleet c_one k_fleet k_one i_fleet i_one t_act u_fleet u_seq
for i in $(seq 1 "$runs"); do
  note "fleet run $i/$runs"
  reset_remote
  timed_own "$work/m" "$slipway" -q --store "$store" --config "$work/slipway.toml" push v1 -t one >/dev/null
  read -r _ own kids <"$work/m"; c_one+=("$own"); k_one+=("$kids")
  sync
  b0=$(busy_seconds)
  timed_own "$work/m" "$slipway" -q --store "$store" --config "$work/slipway.toml" push v1 -t fleet >/dev/null
  b1=$(busy_seconds)
  read -r secs own kids <"$work/m"; t_fleet+=("$secs"); c_fleet+=("$own"); k_fleet+=("$kids")
  u_fleet+=("$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.2f", b - a}')")
  timed "$work/m" "$slipway" -q --store "$store" --config "$work/slipway.toml" activate v1 -t fleet >/dev/null
  read -r secs _ _ <"$work/m"; t_act+=("$secs")
  # The next release: hosts lacking the same objects share one batch stream.
  timed_own "$work/m" "$slipway" -q --store "$store" --config "$work/slipway.toml" push v2 -t one >/dev/null
  read -r _ own _ <"$work/m"; i_one+=("$own")
  timed_own "$work/m" "$slipway" -q --store "$store" --config "$work/slipway.toml" push v2 -t fleet >/dev/null
  read -r _ own _ <"$work/m"; i_fleet+=("$own")
  sync
  b0=$(busy_seconds)
  start=$(date +%s%N)
  for h in $(seq 1 "$hosts"); do
    "$slipway" -q --store "$store" push v1 -t "ssh://bench-$h$remote/seq-$h" >/dev/null
  done
  end=$(date +%s%N)
  b1=$(busy_seconds)
  u_seq+=("$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.2f", b - a}')")
  t_seq+=("$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.2f", (e - s) / 1e9}')")
done
m_fleet=$(median "${t_fleet[@]}"); m_seq=$(median "${t_seq[@]}")
m_cf=$(median "${c_fleet[@]}"); m_c1=$(median "${c_one[@]}")
m_kf=$(median "${k_fleet[@]}"); m_k1=$(median "${k_one[@]}")
m_if=$(median "${i_fleet[@]}"); m_i1=$(median "${i_one[@]}")
r_wall=$(awk -v a="$m_fleet" -v b="$m_seq" 'BEGIN {printf "%.2f", a / b}')
r_cpu=$(awk -v a="$m_cf" -v b="$m_c1" 'BEGIN {printf "%.2f", a / b}')
t_all_f=$(awk -v a="$m_cf" -v c="$m_kf" 'BEGIN {printf "%.2f", a + c}')
t_all_1=$(awk -v b="$m_c1" -v d="$m_k1" 'BEGIN {printf "%.2f", b + d}')
r_all=$(awk -v a="$t_all_f" -v b="$t_all_1" 'BEGIN {printf "%.2f", a / b}')
r_inc=$(awk -v a="$m_if" -v b="$m_i1" 'BEGIN {printf "%.2f", a / b}')
m_uf=$(median "${u_fleet[@]}"); m_us=$(median "${u_seq[@]}")
cores=$(nproc)
bound=$(awk -v u="$m_uf" -v c="$cores" 'BEGIN {printf "%.2f", u / c}')
eff_f=$(awk -v u="$m_uf" -v c="$cores" -v w="$m_fleet" 'BEGIN {printf "%.0f", 100 * u / (c * w)}')
eff_s=$(awk -v u="$m_us" -v c="$cores" -v w="$m_seq" 'BEGIN {printf "%.0f", 100 * u / (c * w)}')
cat <<EOF

### Fleet: $hosts loopback hosts (one machine, $(nproc) cores shared by pusher and hosts), $runs runs

The same machine; $fs_line.

| what | figure | goal |
| --- | ---: | --- |
| push to $hosts hosts in parallel (wall) | **${m_fleet} s** ($(join "${t_fleet[@]}")) | |
| $hosts sequential single-host pushes (wall) | **${m_seq} s** ($(join "${t_seq[@]}")) | |
| parallel / sequential | **${r_wall}×** | ≤ 0.6× |
| CPU busy (every process and the kernel), parallel push | ${m_uf} s ($(join "${u_fleet[@]}")): ${eff_f} % of ${cores} cores × wall; so no schedule on ${cores} cores beats **${bound} s** | |
| CPU busy, sequential pushes | ${m_us} s ($(join "${u_seq[@]}")): ${eff_s} % of ${cores} cores × wall | |
| pusher's own CPU (user+sys), first push, $hosts hosts vs 1 host | ${m_cf} s ($(join "${c_fleet[@]}")) vs ${m_c1} s ($(join "${c_one[@]}")) = **${r_cpu}×** | ≤ 1.5× |
| the same plus the ssh processes it waits for | ${t_all_f} s vs ${t_all_1} s = ${r_all}× | |
| pusher's own CPU, next release (${#changed[@]} files changed), $hosts hosts vs 1 host | ${m_if} s ($(join "${i_fleet[@]}")) vs ${m_i1} s ($(join "${i_one[@]}")) = **${r_inc}×** | |
| activation of $hosts staged hosts (whole command, connections included) | **$(median "${t_act[@]}") s** ($(join "${t_act[@]}")) | < 1 s |

The pusher's own CPU is the \`slipway\` process's user + system time over
all its threads (read from /proc while it is a zombie); "plus the ssh
processes it waits for" adds \`ssh -G\` and each ssh master's
authentication. The masters' encryption runs in daemonised ssh processes
and the hosts' work in their \`serve\` processes, all on the same cores.
EOF
