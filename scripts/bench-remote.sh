#!/usr/bin/env bash
# Benchmark the remote store (docs/remote-store.md): releases published once
# to an S3-compatible bucket (a throwaway single-node Garage on loopback),
# hosts pulling what they lack from it, against push mode over SSH. In one run:
#
#   operator egress:  bytes on the operator's SSH connections per host,
#                     `deploy` (push mode) vs `deploy --from` (pull mode), for
#                     1, 2, 4, 8 and 16 hosts, first deploy and next release
#                     (10 changed files); counted by a relay (scripts/bench-relay.py)
#                     that an ssh config used only for these runs puts in as
#                     `ProxyCommand`
#   host downloads:   `bytes_downloaded` of `push --from --json` against the
#                     compressed bytes the host lacked (the release's packs;
#                     the 10 changed objects)
#   wall time:        8-host first deploy, pull vs push, interleaved runs,
#                     fresh host roots every run
#   publish:          `slipway publish` of the tree vs `aws s3 sync` of the
#                     same files to the same Garage (another prefix); then
#                     after 10 changed files, both again
#
# The tree is generated (scripts/gen-tree.py, seeded) in a temporary
# directory, removed at the end with the sshd, the Garage node and its data.
# The "hosts" are ssh aliases of one throwaway sshd on 127.0.0.1 with
# distinct roots: the operator, every host and Garage share this machine's
# cores. Run as root (mkfs.ext4, a loop device), the hosts' roots are on a
# fresh ext4 file system made for every deploy measured (--no-fresh-fs: in
# a directory under $BENCH_TMP, emptied instead).
#
# Needs Garage (/opt/garage/bin/garage, or $GARAGE), the aws CLI (installed
# with `python3 -m pip install awscli` when missing), ssh, sshd, python3.
#
#   scripts/bench-remote.sh                         # 20k files / 300 MiB, 3 runs
#   scripts/bench-remote.sh -n 1 --files 2000 --mib 30 --no-build   # quick
#   scripts/bench-remote.sh --hosts "1 2 4" --wall-hosts 4
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

runs=${BENCH_RUNS:-3}
files=20000
mib=300
seed=1
build=1
host_counts="1 2 4 8 16"
wall_hosts=8
fresh_fs=auto
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--runs) runs=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --hosts) host_counts=$2; shift 2 ;;
    --wall-hosts) wall_hosts=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-fresh-fs) fresh_fs=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "bench-remote: unknown argument \`$1\`; see --help" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
need_tools ssh python3
[ -x /usr/sbin/sshd ] || need_tools sshd
garage=${GARAGE:-$(command -v garage || echo /opt/garage/bin/garage)}
if [ ! -x "$garage" ]; then
  echo "bench-remote: no Garage binary at $garage (set GARAGE=/path/to/garage)" >&2
  exit 1
fi
if ! command -v aws >/dev/null 2>&1; then
  note "installing the aws CLI (python3 -m pip install awscli)"
  python3 -m pip install -q awscli >&2
  hash -r
fi

if [ "$build" = 1 ] && [ -z "${SLIPWAY_BIN:-}" ]; then
  note "building slipway (cargo build --release)"
  cargo build --release --locked --quiet >&2
fi
slipway=$(slipway_bin)
if [ "$fresh_fs" != 0 ]; then
  if fresh_fs_usable; then fresh_fs=1; else fresh_fs=0; fi
fi

max_hosts=$wall_hosts
for n in $host_counts; do [ "$n" -gt "$max_hosts" ] && max_hosts=$n; done

work=$(make_work_dir)
sshd_pid=
garage_pid=
cleanup() {
  if [ -n "$sshd_pid" ]; then kill "$sshd_pid" 2>/dev/null || true; fi
  if [ -n "$garage_pid" ]; then kill "$garage_pid" 2>/dev/null || true; wait "$garage_pid" 2>/dev/null || true; fi
  if mountpoint -q "$work/roots" 2>/dev/null; then umount "$work/roots" || true; fi
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- a throwaway sshd; a second ssh config that counts the bytes ----------------
note "starting a throwaway sshd ($max_hosts aliases)"
start_sshd "$work/ssh" "$max_hosts"
mkdir -p "$work/count"
ssh_aliases "$work/ssh/config-counted" "$max_hosts" "$sshd_port" "$work/ssh" \
  "ProxyCommand python3 $here/scripts/bench-relay.py $work/count %n %h %p"
export SLIPWAY_REMOTE_BIN="$slipway" SLIPWAY_STORE="$work/store"

# --- a throwaway single-node Garage -----------------------------------------------
note "starting Garage ($("$garage" --version 2>/dev/null | head -n 1))"
g="$work/garage"
mkdir -p "$g/meta" "$g/data"
rpc_port=$(free_port); s3_port=$(free_port); admin_port=$(free_port)
cat >"$g/garage.toml" <<EOF
metadata_dir = "$g/meta"
data_dir = "$g/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
EOF
gcmd() { "$garage" -c "$g/garage.toml" "$@"; }
"$garage" -c "$g/garage.toml" server >"$g/log" 2>&1 &
garage_pid=$!
for _ in $(seq 1 100); do
  gcmd status >/dev/null 2>&1 && break
  sleep 0.1
done
node=$(gcmd node id -q | cut -c1-16)
gcmd layout assign -z dc1 -c 10G "$node" >/dev/null
gcmd layout apply --version 1 >/dev/null
gcmd bucket create releases >/dev/null
gcmd key create bench >"$g/key"
gcmd bucket allow --read --write --owner releases --key bench >/dev/null
endpoint="http://127.0.0.1:$s3_port"
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_PROFILE AWS_SESSION_TOKEN
AWS_ACCESS_KEY_ID=$(awk -F': *' '/Key ID/ {print $2; exit}' "$g/key")
AWS_SECRET_ACCESS_KEY=$(awk -F': *' '/Secret key/ {print $2; exit}' "$g/key")
: >"$work/aws-none"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=garage AWS_REGION=garage \
  AWS_CONFIG_FILE="$work/aws-none" AWS_SHARED_CREDENTIALS_FILE="$work/aws-none"
aws_s3=(aws --endpoint-url "$endpoint" s3)
for _ in $(seq 1 100); do
  "${aws_s3[@]}" ls s3://releases/ >/dev/null 2>&1 && break
  sleep 0.2
done
garage_cpu() {
  awk -v tck="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%.2f\n", ($12 + $13) / tck}' "/proc/$garage_pid/stat"
}

# --- the trees and their bundles --------------------------------------------------
note "generating the tree: $files files, $mib MiB, seed $seed"
python3 "$here/scripts/gen-tree.py" "$work/v1" --seed "$seed" --files "$files" --mib "$mib"
cp -a "$work/v1" "$work/v2"
# 10 changed files: new random contents of the same sizes (as bench-push.sh).
mapfile -t changed < <(cd "$work/v2" && find . -type f -size +8k | sort | awk 'NR % 997 == 1' | head -n 10)
if [ "${#changed[@]}" -lt 10 ]; then
  mapfile -t changed < <(cd "$work/v2" && find . -type f -size +8k | sort | awk 'NR % 97 == 1' | head -n 10)
fi
for f in "${changed[@]}"; do
  size=$(stat -c %s "$work/v2/$f")
  head -c "$size" /dev/urandom >"$work/v2/$f"
done
tree_files=$(find "$work/v1" -type f | wc -l)
tree_bytes=$(find "$work/v1" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
"$slipway" -q build --dir "$work/v1" --name v1 >/dev/null
"$slipway" -q build --dir "$work/v2" --name v2 >/dev/null
bundle_bytes=$(stat -c %s "$work/store"/bundles/*.tar.zst | head -n 1)
note "warming the page cache"
tar -cf - -C "$work" v1 v2 >/dev/null
cat "$work/store"/bundles/*.tar.zst >/dev/null

# slipway.toml: one remote per publish run (a fresh prefix each), and target
# `t` of N hosts with roots under BASE.
write_config() {
  local base=$1 n=$2 i r
  {
    for r in $(seq 1 "$runs"); do
      printf '[remotes.r%s]\nurl = "s3://releases/p%s"\nendpoint = "%s"\nregion = "garage"\n\n' "$r" "$r" "$endpoint"
    done
    printf '[targets.t]\nhosts = ['
    for i in $(seq 1 "$n"); do
      [ "$i" -gt 1 ] && printf ', '
      printf '"ssh://bench-%s%s/%s"' "$i" "$base" "$i"
    done
    printf ']\n'
  } >"$work/slipway.toml"
}
sw() { "$slipway" -q --config "$work/slipway.toml" "$@"; }
jq_py() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$2"; }
remove_tree() { chmod -R u+w "$1" 2>/dev/null || true; rm -rf "$1"; }

note "$(machine_line); load average $(cut -d' ' -f1-3 /proc/loadavg)"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the hosts' roots: a fresh file system for every deploy measured ---------------------
# (or an emptied directory): on a long-lived file system, removing the last
# measurement's trees takes minutes and what was deleted before changes how
# fast the next one writes.
roots="$work/roots"
mkdir -p "$roots"
if [ "$fresh_fs" = 1 ]; then
  mount_fresh_ext4 "$work/roots.img" "$roots" 16G >/dev/null 2>&1 || true
  mountpoint -q "$roots" || { note "cannot mount a fresh file system here; the hosts' roots go under $work"; fresh_fs=0; }
fi
if [ "$fresh_fs" = 1 ]; then
  fs_line="the hosts' roots on a fresh ext4 (16 GiB loop device) made for every deploy"
else
  fs_line="the hosts' roots in $(df --output=fstype "$work" | tail -n 1) under $work, emptied for every deploy"
fi
reset_roots() {
  if [ "$fresh_fs" = 1 ]; then
    mount_fresh_ext4 "$work/roots.img" "$roots" 16G
  else
    remove_tree "$roots"
    mkdir -p "$roots"
  fi
  sync
}

# --- 4. publish vs aws s3 sync ------------------------------------------------------
declare -a t_pub1 t_sync1 t_pub2 t_sync2 up1 up2
write_config "$work/none" 1
for r in $(seq 1 "$runs"); do
  note "publish run $r/$runs"
  run_pub1() {
    sync
    timed "$work/m" "$slipway" -q --config "$work/slipway.toml" publish v1 --to "r$r" --json >"$work/pub1-$r.json"
    read -r secs _ _ <"$work/m"; t_pub1+=("$secs")
    up1+=("$(jq_py 'd["bytes_uploaded"]' "$work/pub1-$r.json")")
  }
  run_sync1() {
    sync
    timed "$work/m" "${aws_s3[@]}" sync --quiet --no-progress --no-follow-symlinks "$work/v1/" "s3://releases/sync-$r/"
    read -r secs _ _ <"$work/m"; t_sync1+=("$secs")
  }
  run_pub2() {
    sync
    timed "$work/m" "$slipway" -q --config "$work/slipway.toml" publish v2 --to "r$r" --json >"$work/pub2-$r.json"
    read -r secs _ _ <"$work/m"; t_pub2+=("$secs")
    up2+=("$(jq_py 'd["bytes_uploaded"]' "$work/pub2-$r.json")")
  }
  run_sync2() {
    sync
    timed "$work/m" "${aws_s3[@]}" sync --quiet --no-progress --no-follow-symlinks "$work/v2/" "s3://releases/sync-$r/"
    read -r secs _ _ <"$work/m"; t_sync2+=("$secs")
  }
  if [ $((r % 2)) = 1 ]; then run_pub1; run_sync1; run_pub2; run_sync2
  else run_sync1; run_pub1; run_sync2; run_pub2; fi
done
id1=$(jq_py 'd["id"]' "$work/pub1-1.json"); id1=${id1#sha256:}
id2=$(jq_py 'd["id"]' "$work/pub2-1.json"); id2=${id2#sha256:}
obj_size() { "${aws_s3[@]}" ls "s3://releases/p1/$1" | awk '{print $3; exit}'; }
man1=$(obj_size "releases/$id1/manifest.zst"); idx1=$(obj_size "releases/$id1/index.zst")
man2=$(obj_size "releases/$id2/manifest.zst"); idx2=$(obj_size "releases/$id2/index.zst")
packs1=${up1[0]}; packs2=${up2[0]}
sync1_objects=$("${aws_s3[@]}" ls --recursive "s3://releases/sync-1/" | wc -l)

# --- 1. operator egress, counted on the wire --------------------------------------------
# counted OUT CMD...: run CMD with the counting ssh config; when every
# connection it opened has closed, write "UP DOWN CONNECTIONS" to OUT.
counted() {
  local out=$1 _
  shift
  rm -f "$work/count"/*
  SLIPWAY_SSH_CONFIG="$work/ssh/config-counted" "$@"
  for _ in $(seq 1 600); do
    compgen -G "$work/count/*.open" >/dev/null || break
    sleep 0.1
  done
  cat "$work/count"/*.done 2>/dev/null | awk '{u += $2; d += $3; c++} END {printf "%.0f %.0f %d\n", u, d, c}' >"$out"
}
declare -A eg
miscounted=()
for n in $host_counts; do
  for mode in push pull; do
    note "egress: $n host(s), $mode mode"
    reset_roots
    write_config "$roots" "$n"
    from=(); [ "$mode" = pull ] && from=(--from r1)
    counted "$work/c" sw deploy v1 -t t "${from[@]}" --json >"$work/d1.json"
    read -r u d c <"$work/c"; eg[$mode,$n,1]="$u $d $c"
    eg[$mode,$n,1,sent]=$(jq_py 'sum(h.get("bytes_sent") or 0 for h in d)' "$work/d1.json")
    counted "$work/c" sw deploy v2 -t t "${from[@]}" --json >"$work/d2.json"
    read -r u d c <"$work/c"; eg[$mode,$n,2]="$u $d $c"
    for k in 1 2; do
      read -r _ _ c <<<"${eg[$mode,$n,$k]}"
      [ "$c" = "$n" ] || { note "warning: $c connections counted for $n hosts ($mode mode, release $k)"; miscounted+=("$mode mode, $n hosts, v$k: $c connections counted"); }
    done
    eg[$mode,$n,2,sent]=$(jq_py 'sum(h.get("bytes_sent") or 0 for h in d)' "$work/d2.json")
  done
done

# --- 2. what each host downloads in pull mode ---------------------------------------
note "host downloads: push --from --json, 2 hosts"
reset_roots
write_config "$roots" 2
counted "$work/c" sw push v1 -t t --from r1 --json >"$work/pp1.json"
read -r pu1 _ _ <"$work/c"
counted "$work/c" sw push v2 -t t --from r1 --json >"$work/pp2.json"
read -r pu2 _ _ <"$work/c"
dl1=$(jq_py '" ".join(str(h["bytes_downloaded"]) for h in d)' "$work/pp1.json")
dl2=$(jq_py '" ".join(str(h["bytes_downloaded"]) for h in d)' "$work/pp2.json")
need1=$(jq_py 'd[0]["bytes_needed"]' "$work/pp1.json")
need2=$(jq_py 'd[0]["bytes_needed"]' "$work/pp2.json")

# --- 3. wall time: first deploy to N hosts, pull vs push --------------------------------
write_config "$roots" "$wall_hosts"
export SLIPWAY_SSH_CONFIG="$work/ssh/config"
declare -a w_push w_pull b_push b_pull g_push g_pull
for r in $(seq 1 "$runs"); do
  note "wall run $r/$runs: first deploy to $wall_hosts hosts"
  run_wall() {
    local mode=$1 from=() b0 b1 c0 c1 secs
    [ "$mode" = pull ] && from=(--from r1)
    reset_roots
    b0=$(busy_seconds); c0=$(garage_cpu)
    timed "$work/m" "$slipway" -q --config "$work/slipway.toml" deploy v1 -t t "${from[@]}" >/dev/null
    b1=$(busy_seconds); c1=$(garage_cpu)
    read -r secs _ _ <"$work/m"
    local busy garage_s
    busy=$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.2f", b - a}')
    garage_s=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')
    if [ "$mode" = push ]; then w_push+=("$secs"); b_push+=("$busy"); g_push+=("$garage_s")
    else w_pull+=("$secs"); b_pull+=("$busy"); g_pull+=("$garage_s"); fi
  }
  if [ $((r % 2)) = 1 ]; then run_wall pull; run_wall push; else run_wall push; run_wall pull; fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summary ------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "n/a"; else printf "%.2f", a / b}'; }
kib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1024}'; }
per_host() { awk -v b="$1" -v n="$2" 'BEGIN {printf "%.0f", b / n}'; }

cat <<EOF
### Remote store: $tree_files files, $(mib_of "$tree_bytes") MiB (bundle $(mib_of "$bundle_bytes") MiB, packs in the bucket $(mib_of "$packs1") MiB), seed $seed, $runs runs

Machine: $(machine_line); $fs_line; Garage $("$garage" --version 2>/dev/null | awk '{print $2}' | head -n 1) (one node, lmdb, data on the same disk) and the operator and every host on the same cores. Load average before/after: $load_before / $load_after.

#### Operator egress per host (bytes on the SSH connections, operator → hosts)

| hosts | push: first deploy | pull: first deploy | push: next release | pull: next release | pull, hosts → operator (first / next) |
| ---: | ---: | ---: | ---: | ---: | ---: |
EOF
pull_first=()
for n in $host_counts; do
  read -r pu1_ _ _ <<<"${eg[push,$n,1]}"; read -r lu1_ ld1_ _ <<<"${eg[pull,$n,1]}"
  read -r pu2_ _ _ <<<"${eg[push,$n,2]}"; read -r lu2_ ld2_ _ <<<"${eg[pull,$n,2]}"
  pull_first+=("$(per_host "$lu1_" "$n")")
  printf '| %s | %s KiB | **%s KiB** | %s KiB | **%s KiB** | %s / %s KiB |\n' "$n" \
    "$(kib "$(per_host "$pu1_" "$n")")" "$(kib "$(per_host "$lu1_" "$n")")" \
    "$(kib "$(per_host "$pu2_" "$n")")" "$(kib "$(per_host "$lu2_" "$n")")" \
    "$(kib "$(per_host "$ld1_" "$n")")" "$(kib "$(per_host "$ld2_" "$n")")"
done
pf_min=$(printf '%s\n' "${pull_first[@]}" | sort -g | head -n 1)
pf_max=$(printf '%s\n' "${pull_first[@]}" | sort -g | tail -n 1)
last_n=${host_counts##* }
read -r pu_last _ _ <<<"${eg[push,$last_n,1]}"
read -r lu_last _ _ <<<"${eg[pull,$last_n,1]}"
verdict_egress=$([ "$pf_max" -lt 65536 ] && echo "met" || echo "missed")
cat <<EOF

Pull mode, first deploy: $(kib "$pf_min")–$(kib "$pf_max") KiB per host over $host_counts hosts (goal < 64 KiB per host, independent of the release: **$verdict_egress**); push mode: $(kib "$(per_host "$pu_last" "$last_n")") KiB per host at $last_n hosts = $(ratio "$(per_host "$pu_last" "$last_n")" "$bundle_bytes")× the bundle. At $last_n hosts, pull mode sends $(awk -v a="$lu_last" -v b="$pu_last" 'BEGIN {printf "%.3f", 100 * a / b}') % of push mode's bytes.
slipway's own \`bytes_sent\` (push mode, first deploy, $last_n hosts): $(per_host "${eg[push,$last_n,1,sent]}" "$last_n") B per host; on the wire $(ratio "$pu_last" "${eg[push,$last_n,1,sent]}")× that (SSH framing, MACs, handshake, control).
Connections counted: one per host in every egress run$([ ${#miscounted[@]} = 0 ] || printf ' except: **%s** (those figures are wrong)' "$(IFS=';'; echo "${miscounted[*]}")").

#### What each host downloads in pull mode (\`push --from --json\`, 2 hosts)

| release | \`bytes_downloaded\` per host | what it lacked, compressed | ratio | beyond what it lacked | goal |
| --- | ---: | ---: | ---: | ---: | --- |
| first (v1, lacks everything: $(mib_of "$need1") MiB raw) | $dl1 B | the release's packs: $packs1 B | **$(ratio "${dl1%% *}" "$packs1")×** | $(( ${dl1%% *} - packs1 )) B | ≤ 1.1× |
| next (v2, ${#changed[@]} changed files: $need2 B raw) | $dl2 B | the new pack: $packs2 B | **$(ratio "${dl2%% *}" "$packs2")×** | $(( ${dl2%% *} - packs2 )) B | ≤ 1.1× |

The release's manifest.zst and index.zst in the bucket: $man1 + $idx1 B (v1), $man2 + $idx2 B (v2). A host with no earlier release downloads the manifest, and the index when it lacks more than 1,024 objects; a host with an earlier release gets the manifest as a delta and the locations of the few objects it lacks from the operator over SSH (docs/remote-store.md). Operator egress of these pushes (no activation): $(per_host "$pu1" 2) B and $(per_host "$pu2" 2) B per host.

#### First deploy to $wall_hosts hosts: wall time, pull vs push

| mode | median wall | runs (s) | CPU busy, whole machine (median) | of which Garage |
| --- | ---: | --- | ---: | ---: |
| \`deploy v1 --from r1\` (pull) | **$(median "${w_pull[@]}") s** | $(join "${w_pull[@]}") | $(median "${b_pull[@]}") s | $(median "${g_pull[@]}") s |
| \`deploy v1\` (push) | **$(median "${w_push[@]}") s** | $(join "${w_push[@]}") | $(median "${b_push[@]}") s | $(median "${g_push[@]}") s |

Pull / push: **$(ratio "$(median "${w_pull[@]}")" "$(median "${w_push[@]}")")×** in median wall time. Garage serves the packs from this machine's disk and cores.

#### Publish vs \`aws s3 sync\` (same Garage, another prefix; a fresh prefix for every run)

| what | slipway | aws s3 sync | ratio |
| --- | ---: | ---: | ---: |
| first: the whole tree | \`publish v1\` **$(median "${t_pub1[@]}") s** ($(join "${t_pub1[@]}")), $packs1 B in $(jq_py 'd["packs_uploaded"]' "$work/pub1-1.json") packs | **$(median "${t_sync1[@]}") s** ($(join "${t_sync1[@]}")), $tree_bytes B in $sync1_objects objects | **$(ratio "$(median "${t_pub1[@]}")" "$(median "${t_sync1[@]}")")×** |
| next: ${#changed[@]} changed files | \`publish v2\` **$(median "${t_pub2[@]}") s** ($(join "${t_pub2[@]}")), $packs2 B | **$(median "${t_sync2[@]}") s** ($(join "${t_sync2[@]}")) | **$(ratio "$(median "${t_pub2[@]}")" "$(median "${t_sync2[@]}")")×** |

Compression: the bucket's packs are $(ratio "$packs1" "$tree_bytes")× the tree ($(ratio "$bundle_bytes" "$tree_bytes")× for the bundle). \`aws s3 sync --no-follow-symlinks\` uploads the files as they are (one PUT each; the tree's two symlinks are not followed, so both upload the same $tree_files files) and checks nothing on the way back; \`publish\` verifies every object against the manifest, compresses each as its own frame, and binds the name last.
EOF
