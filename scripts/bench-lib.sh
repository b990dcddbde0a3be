# shellcheck shell=bash
# Helpers shared by scripts/bench-*.sh (sourced, not run).

note() { printf '== %s\n' "$*" >&2; }

# Make sure the named commands and GNU time exist; install missing ones with
# apt-get when running as root, else say what to install.
need_tools() {
  local missing=() t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  [ -x /usr/bin/time ] || missing+=(time)
  [ ${#missing[@]} -eq 0 ] && return 0
  # Debian package names: coreutils provides sha256sum, python3-minimal python3.
  local pkgs=()
  for t in "${missing[@]}"; do
    case "$t" in
      sha256sum) pkgs+=(coreutils) ;;
      *) pkgs+=("$t") ;;
    esac
  done
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    note "installing: ${pkgs[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2
  else
    echo "missing: ${missing[*]}; install them (e.g. sudo apt-get install ${pkgs[*]})" >&2
    exit 1
  fi
}

# The release binary, honouring CARGO_TARGET_DIR; $SLIPWAY_BIN measures
# another one (e.g. an older build, for a before/after comparison).
slipway_bin() {
  local bin="${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/slipway}"
  if [ ! -x "$bin" ]; then
    echo "no slipway binary at $bin; run without --no-build" >&2
    exit 1
  fi
  printf '%s\n' "$bin"
}

# A fresh temporary directory under $BENCH_TMP (default $TMPDIR or /tmp).
make_work_dir() {
  mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/slipway-bench.XXXXXX"
}

# timed OUT CMD...: run CMD (its stdout passes through), then write
# "WALL_SECONDS PEAK_RSS_KIB CPU_SECONDS" to OUT. Peak RSS and CPU time
# (user + system) are GNU time's; for a pipeline under `bash -c`, the peak is
# its biggest member's and the CPU time the sum over all of them.
timed() {
  local out=$1 start end
  shift
  start=$(date +%s%N)
  /usr/bin/time -f '%M %U %S' -o "$out.rss" "$@"
  end=$(date +%s%N)
  tail -n 1 "$out.rss" | awk -v s="$start" -v e="$end" \
    '{printf "%.2f %s %.2f\n", (e - s) / 1e9, $1, $2 + $3}' >"$out"
}

# timed_own OUT CMD...: run CMD (its stdout passes through), then write
# "WALL_SECONDS OWN_CPU_SECONDS CHILDREN_CPU_SECONDS" to OUT: OWN is the
# process's own user + system time (all its threads), read from
# /proc/PID/stat while it is a zombie; CHILDREN is that of the processes it
# waited for (for slipway: `ssh -G` and each ssh master's authentication).
timed_own() {
  local out=$1
  shift
  python3 - "$out" "$@" <<'PY'
import os, subprocess, sys, time
out = sys.argv[1]
start = time.monotonic()
p = subprocess.Popen(sys.argv[2:])
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
wall = time.monotonic() - start
with open(f"/proc/{p.pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
tick = os.sysconf("SC_CLK_TCK")
utime, stime, cutime, cstime = (int(x) / tick for x in fields[11:15])
rc = p.wait()
with open(out, "w") as f:
    f.write(f"{wall:.2f} {utime + stime:.2f} {cutime + cstime:.2f}\n")
sys.exit(rc)
PY
}

# busy_seconds: CPU time spent by every process and the kernel since boot
# (user, nice, system, irq, softirq, steal of /proc/stat), in seconds; the
# difference of two readings is the machine's busy time in between.
busy_seconds() {
  awk -v tck="$(getconf CLK_TCK)" '$1 == "cpu" {printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / tck; exit}' /proc/stat
}

# median N...: the middle value (mean of the two middle ones for an even count).
median() {
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1}
    END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

fastest() { printf '%s\n' "$@" | sort -g | head -n 1; }
join() { local IFS=' '; printf '%s' "$*"; }
mib_of() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
mib_of_kib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# One line: cores, CPU model, and the device and file system of $work.
machine_line() {
  local cpu fs
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  fs=$(df --output=source,fstype "${work:-.}" | awk 'NR == 2 {print $1 " (" $2 ")"}')
  printf '%s cores (nproc), %s, %s' "$(nproc)" "${cpu:-unknown CPU}" "$fs"
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ssh_aliases CONFIG N PORT DIR [LINE...]: write an ssh config with N aliases
# bench-1 … bench-N of the sshd on 127.0.0.1:PORT whose keys are in DIR
# (see start_sshd), each with the extra LINEs (e.g. a ProxyCommand).
ssh_aliases() {
  local config=$1 n=$2 port=$3 dir=$4 i line
  shift 4
  : >"$config"
  for i in $(seq 1 "$n"); do
    cat >>"$config" <<EOC
Host bench-$i
  HostName 127.0.0.1
  Port $port
  User $(id -un)
  IdentityFile $dir/client
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
EOC
    for line in "$@"; do printf '  %s\n' "$line" >>"$config"; done
  done
}

# start_sshd DIR N: a throwaway sshd on 127.0.0.1 (its own host key, client
# key and known_hosts, all in DIR), and DIR/config with N aliases
# bench-1 … bench-N of it (ssh_aliases). Sets sshd_pid (the caller's cleanup
# kills it) and sshd_port, and returns once it answers.
start_sshd() {
  local dir=$1 n=$2
  mkdir -p "$dir" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$dir/host" >/dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$dir/client" >/dev/null
  cp "$dir/client.pub" "$dir/authorized_keys"
  sshd_port=$(free_port)
  cat >"$dir/sshd_config" <<EOC
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $dir/host
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
PermitRootLogin yes
SetEnv SHLVL=1
MaxSessions 100
MaxStartups 100
EOC
  /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" &
  # shellcheck disable=SC2034 # the caller's cleanup kills it
  sshd_pid=$!
  printf '[127.0.0.1]:%s %s\n' "$sshd_port" "$(cut -d' ' -f1-2 "$dir/host.pub")" >"$dir/known_hosts"
  ssh_aliases "$dir/config" "$n" "$sshd_port" "$dir"
  local _
  for _ in $(seq 1 50); do
    ssh -F "$dir/config" bench-1 true 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the throwaway sshd did not answer; see $dir/sshd.log" >&2
  exit 1
}

# fresh_fs_usable: whether mount_fresh_ext4 can work here (root, mkfs.ext4, losetup).
fresh_fs_usable() {
  [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null 2>&1 && command -v losetup >/dev/null 2>&1
}

# mount_fresh_ext4 IMG DIR SIZE: a fresh ext4 file system of SIZE (inode
# tables written now, so no lazy initialisation runs in the background) in
# the file IMG, mounted on DIR (whatever was mounted there first is unmounted).
mount_fresh_ext4() {
  local img=$1 dir=$2 size=$3
  mountpoint -q "$dir" && umount "$dir"
  rm -f "$img"
  truncate -s "$size" "$img"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$img"
  mount -o loop "$img" "$dir"
}
