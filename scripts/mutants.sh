#!/usr/bin/env bash
# Mutation testing of the modules that guard safety (not part of CI): each
# mutant of a module is tested against the tests that cover that module, and
# every mutant the tests miss must be killed by a new test or justified in
# docs/reliability.md ("Mutation testing").
#
#   scripts/mutants.sh                  # every module below, one after another
#   scripts/mutants.sh lock activate    # only these
#   JOBS=2 scripts/mutants.sh prune     # mutants built and tested in parallel
#   scripts/mutants.sh stage -- --re space_needed  # only one function's mutants
#   OUT=again scripts/mutants.sh stage -- …        # results in target/mutants/stage-again/
#   TOGETHER=1 scripts/mutants.sh lock activate    # one run (one scratch build) for both
#
# Needs cargo-mutants (`cargo install --locked cargo-mutants`). Results go to
# target/mutants/<module>/mutants.out/ (caught.txt, missed.txt, …).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-mutants >/dev/null 2>&1 || {
  echo "cargo-mutants is missing: cargo install --locked cargo-mutants" >&2
  exit 1
}

# module -> "file(s)|test targets|test name filters[|test tool]": the CLI
# tests that drive the module, plus its unit tests where it has some
# (`--lib`, which costs one more compilation of the library per mutant).
# The tests run under cargo-nextest where it is installed: it stops at the
# first failing test, so a caught mutant costs seconds instead of the whole
# filtered suite. `objects` keeps `cargo test`, which runs one test binary
# at a time: its durability test reads the kernel's count of dirty pages and
# must not share the machine with another push.
declare -A SCOPE=(
  [signatures]="src/host/signatures.rs|--test cli|sign:: security::a_push_offering security::host_check_lists"
  [activate]="src/host/activate.rs|--test cli|releases:: sign::releases_staged gates:: faults::faults_an_activation faults::faults_a_torn_history faults::faults_a_switch_that_cannot faults::faults_a_full_disk_still serve::serve_resolves serve::serve_refuses_to_activate"
  [lock]="src/host/lock.rs|--test cli|releases::a_held_lock releases::racing fleet::fleet_activate_fails_fast faults::faults_a_full_disk_still"
  [prune]="src/host/prune.rs|--test cli|releases:: security::an_append_only faults::faults_a_prune prune"
  [manifest]="src/manifest.rs|--lib --test cli|manifest:: bundles:: hostile:: serve:: push::push_stages_a_tree push::a_one_file_change security::links_out_of_the_release"
  [objects]="src/host/objects.rs|--test cli --test durability|push:: serve:: releases::prune_removes_a_release a_push_leaves|cargo"
  [stage]="src/host/stage.rs src/host/plan_push.rs src/host/space.rs|--lib --test cli --test durability|host::space:: a_push_fsyncs push:: hostile:: sign:: serve:: releases::prune_removes_a_release plan::plan_shows_what_deploy plan::plan_of_a_release_allowed_signers faults::faults_disk_full faults::faults_a_push_stopped releases::verify_repair fleet::fleet_a_target_that_reaches_one_root_twice faults::faults_a_directory_that_appears pull::pull_deploy_over_ssh_sends_no_content_on_garage pull::pull_a_host_killed_midway"
)
ORDER=(activate signatures lock prune manifest objects stage)

# Anything after `--` goes to cargo-mutants itself, e.g. `scripts/mutants.sh
# stage -- --re space_needed` to run again only the mutants of one function.
modules=()
extra=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then
    shift
    extra=("$@")
    break
  fi
  modules+=("$1")
  shift
done
[ ${#modules[@]} -gt 0 ] || modules=("${ORDER[@]}")

# TOGETHER=1: the modules named make one run (one scratch build instead of
# one each; a mutant is tested against the tests of every module named).
if [ -n "${TOGETHER:-}" ] && [ ${#modules[@]} -gt 1 ]; then
  all_files="" all_targets="" all_filters="" all_tool=""
  for m in "${modules[@]}"; do
    scope=${SCOPE[$m]:-}
    [ -n "$scope" ] || { echo "unknown module \`$m\` (one of: ${ORDER[*]})" >&2; exit 2; }
    IFS='|' read -r files targets filters tool <<<"$scope"
    all_files+=" $files"
    all_filters+=" $filters"
    [ "$tool" = cargo ] && all_tool=cargo
    for t in --lib --test\ cli --test\ durability; do
      case " $targets " in *" $t "*) case " $all_targets " in *" $t "*) ;; *) all_targets+=" $t" ;; esac ;; esac
    done
  done
  joined=$(IFS=+; echo "${modules[*]}")
  SCOPE[$joined]="${all_files# }|${all_targets# }|${all_filters# }|$all_tool"
  modules=("$joined")
fi

for m in "${modules[@]}"; do
  scope=${SCOPE[$m]:-}
  [ -n "$scope" ] || { echo "unknown module \`$m\` (one of: ${ORDER[*]})" >&2; exit 2; }
  IFS='|' read -r files targets filters tool <<<"$scope"
  if [ -z "$tool" ]; then
    tool=cargo
    command -v cargo-nextest >/dev/null 2>&1 && tool=nextest
  fi
  args=(--test-tool "$tool")
  # The test targets go to every cargo invocation, the build of each mutant
  # too: building every test binary of the package (the library's unit
  # tests are one more compilation of it) would double the time a mutant
  # takes to build.
  set -- $targets
  while [ $# -gt 0 ]; do
    case $1 in
      --test) args+=("--cargo-arg=--test=$2"); shift 2 ;;
      *) args+=("--cargo-arg=$1"); shift ;;
    esac
  done
  for f in $files; do args+=(--file "$f"); done
  echo "== $m: $files (tests: $filters; $tool)" >&2
  out="target/mutants/$m${OUT:+-$OUT}"
  mkdir -p "$out"
  start=$(date +%s)
  # Exit 2 means "some mutants were missed": report it, go on to the next module.
  # shellcheck disable=SC2086
  # Each run starts with a whole build in a scratch copy (3 to 4 minutes on
  # 2 cores; copying target/ does not save it: cargo-mutants' own RUSTFLAGS
  # rebuild every dependency); each mutant after that takes 5 to 10 s to
  # build and up to its scope's test time (about 30 s for `stage`) to test.
  cargo mutants "${args[@]}" "${extra[@]}" --jobs "${JOBS:-1}" --baseline skip --timeout "${TIMEOUT:-300}" \
    --output "$out" \
    -- -- $filters || [ $? -eq 2 ]
  echo "== $m: $(( $(date +%s) - start )) s" >&2
done
