#!/usr/bin/env bash
# Benchmark the service-slot switch (docs/ab-deploys.md) over a real sshd on
# loopback, each host with a real nginx in front of its two slots:
#
#   rollback to the warm slot:  `slipway rollback` (the previous release is
#                               running in the other slot: nothing starts)
#   healthy -> traffic:         `slipway activate` of a release already running
#                               in the idle slot (checked once, then switched)
#   baseline:                   `slipway status` (connect, lock-free read) and
#                               `ssh host true`, measured in the same round
#   pause window:               a deploy whose migration takes 1 s (`sleep 1`):
#                               from the first `pause` to the last `resume`, as
#                               slipway prints it ("intake was paused for X s")
#
# for 1 and 8 hosts. The 8 "hosts" are ssh aliases of one throwaway sshd with
# distinct roots, ports and nginx instances, so all share this machine.
#
#   scripts/bench-switch.sh            # release build, 7 rounds
#   scripts/bench-switch.sh -n 3 --no-build
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

runs=7
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--runs) runs=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "bench-switch: unknown argument \`$1\`; see --help" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
need_tools ssh python3 curl
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || need_tools nginx
[ -x /usr/sbin/sshd ] || need_tools sshd

if [ "$build" = 1 ] && [ -z "${SLIPWAY_BIN:-}" ]; then
  note "building slipway (cargo build --release)"
  cargo build --release --locked --quiet >&2
fi
slipway=$(slipway_bin)

work=$(make_work_dir)
sshd_pid=
# Every service instance slipway started on the hosts, with its session.
kill_instances() {
  local f pid
  for f in "$work"/hosts/*/.slipway/service/[ab].json; do
    [ -f "$f" ] || continue
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pid") or "")' "$f")
    [ -n "$pid" ] && pkill -KILL -s "$pid" 2>/dev/null
  done
  return 0
}
cleanup() {
  for conf in "$work"/proxy*/nginx.conf; do
    [ -f "$conf" ] && "$nginx" -p "$(dirname "$conf")/" -c "$conf" -e "$(dirname "$conf")/error.log" -s quit 2>/dev/null
  done
  kill_instances
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

hosts=8
note "starting a throwaway sshd"
start_sshd "$work/ssh" "$hosts"
export SLIPWAY_SSH_CONFIG="$work/ssh/config" SLIPWAY_REMOTE_BIN="$slipway" SLIPWAY_STORE="$work/store"

note "a tiny web service, two releases"
for v in v1 v2; do
  mkdir -p "$work/app-$v/bin"
  cat >"$work/app-$v/bin/server" <<'EOF'
#!/usr/bin/env python3
import http.server, os
body = (os.environ["SLIPWAY_RELEASE"] + "\n").encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["SLIPWAY_PORT"])), H).serve_forever()
EOF
  chmod +x "$work/app-$v/bin/server"
  echo "$v" >"$work/app-$v/VERSION"
  "$slipway" build --dir "$work/app-$v" --name "$v" >/dev/null
done

note "one nginx per host"
entries_for() {
  local n=$1 i entries=()
  for i in $(seq 1 "$n"); do
    entries+=("{ host = \"ssh://bench-$i$work/hosts/$i\", ports = [${ports_a[$i]}, ${ports_b[$i]}], upstream = \"$work/proxy$i/upstream.conf\", reload = \"$nginx -p $work/proxy$i/ -c $work/proxy$i/nginx.conf -e $work/proxy$i/error.log -s reload\" }")
  done
  local IFS=,
  printf '%s' "${entries[*]}"
}
declare -a ports_a ports_b
for i in $(seq 1 "$hosts"); do
  ports_a[$i]=$(free_port)
  ports_b[$i]=$(free_port)
  mkdir -p "$work/proxy$i/tmp" "$work/hosts/$i"
  echo "server 127.0.0.1:${ports_a[$i]};" >"$work/proxy$i/upstream.conf"
  cat >"$work/proxy$i/nginx.conf" <<EOF
user $(id -un) $(id -gn);
pid $work/proxy$i/nginx.pid;
worker_processes 1;
events {}
http {
    access_log off;
    client_body_temp_path $work/proxy$i/tmp;
    proxy_temp_path $work/proxy$i/tmp;
    upstream app { include $work/proxy$i/upstream.conf; }
    server { listen 127.0.0.1:$(free_port); location / { proxy_pass http://app; } }
}
EOF
  "$nginx" -p "$work/proxy$i/" -c "$work/proxy$i/nginx.conf" -e "$work/proxy$i/error.log"
done

cd "$work"
run_for() {
  local n=$1
  cat >slipway.toml <<EOF
[targets.bench]
hosts = [$(entries_for "$n")]

[targets.bench.service]
start = "exec bin/server"
check = "curl -fsS http://127.0.0.1:\$SLIPWAY_PORT/"
EOF
  "$slipway" -q deploy v1 -t bench >/dev/null
  "$slipway" -q deploy v2 -t bench >/dev/null
  local rb=() act=() st=() rtt=() r
  for r in $(seq 1 "$runs"); do
    timed "$work/t" "$slipway" -q status -t bench >/dev/null
    st+=("$(cut -d' ' -f1 "$work/t")")
    timed "$work/t" ssh -F "$work/ssh/config" bench-1 true
    rtt+=("$(cut -d' ' -f1 "$work/t")")
    timed "$work/t" "$slipway" -q rollback -t bench >/dev/null
    rb+=("$(cut -d' ' -f1 "$work/t")")
    timed "$work/t" "$slipway" -q activate v2 -t bench >/dev/null
    act+=("$(cut -d' ' -f1 "$work/t")")
  done
  printf '%s hosts: rollback to warm slot %s s, activate warm release %s s, status %s s, ssh true %s s (medians of %s)\n' \
    "$n" "$(median "${rb[@]}")" "$(median "${act[@]}")" "$(median "${st[@]}")" "$(median "${rtt[@]}")" "$runs"
  printf '  rollback: %s\n  activate: %s\n  status:   %s\n  ssh true: %s\n' "$(join "${rb[@]}")" "$(join "${act[@]}")" "$(join "${st[@]}")" "$(join "${rtt[@]}")"
}

# A deploy with a 1 s migration: releases m1, m2, … each expect a new schema.
migrations=0
window_for() {
  local n=$1 w=() r out
  cat >>slipway.toml <<EOF

[targets.bench.hooks]
schema = "cat SCHEMA"
db_schema = "cat $work/db-schema"
pause = "touch $work/paused-\$SLIPWAY_SLOT"
resume = "rm -f $work/paused-\$SLIPWAY_SLOT"
migrate = "sleep 1 && cp SCHEMA $work/db-schema"
EOF
  for r in $(seq 1 "$runs"); do
    migrations=$((migrations + 1))
    cp -a "$work/app-v1" "$work/app-m$migrations"
    echo "$migrations" >"$work/app-m$migrations/SCHEMA"
    "$slipway" build --dir "$work/app-m$migrations" --name "m$migrations" >/dev/null
    out=$("$slipway" deploy "m$migrations" -t bench 2>&1 >/dev/null)
    w+=("$(printf '%s\n' "$out" | awk '/intake was paused for/ {print $(NF-1)}')")
  done
  printf '%s hosts: pause window %s s with a 1 s migration (median of %s): %s\n' "$n" "$(median "${w[@]}")" "$runs" "$(join "${w[@]}")"
}
echo 0 >"$work/db-schema"

note "$(machine_line)"
run_for 1
window_for 1
kill_instances
for i in $(seq 1 "$hosts"); do
  chmod -R u+w "$work/hosts/$i"
  rm -rf "$work/hosts/$i"
  mkdir -p "$work/hosts/$i"
  echo "server 127.0.0.1:${ports_a[$i]};" >"$work/proxy$i/upstream.conf"
done
run_for 8
window_for 8
