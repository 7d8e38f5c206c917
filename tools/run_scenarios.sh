#!/usr/bin/env bash
# Run molecule scenarios, JOBS at a time, each into its own log; print a
# summary and the tail of every failed log. Exit non-zero if any failed.
set -uo pipefail
jobs="$1"; shift
logdir="${MOLECULE_LOG_DIR:-.cache/molecule-logs}"
mkdir -p "$logdir"

run_one() {
  local s="$1" log="$logdir/$1.log" start end rc
  start=$(date +%s)
  molecule test -s "$s" >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  echo "$s $rc $((end - start))" >>"$logdir/results"
  if [ "$rc" -eq 0 ]; then
    echo "molecule: $s passed in $((end - start))s"
  else
    echo "molecule: $s FAILED (rc=$rc) in $((end - start))s; log: $log"
  fi
}
export -f run_one
export logdir
rm -f "$logdir/results"
# The run's commit and wall time, for benchmarks/report.py collect-molecule.
commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- 2>/dev/null || commit="$commit+uncommitted"
started=$(date +%s)

# Longest first (the scenarios share two lanes: a long one started last would run
# alone at the end): cluster, app_contract, postgresql, then the role scenarios.
# cluster builds the release wheelhouse (.cache/releases/) early in its converge;
# app_servers and celery, which build the same release, start long after it.
rank() {
  case "$1" in
    cluster) echo 1 ;; app_contract) echo 2 ;; postgresql) echo 3 ;; celery) echo 4 ;;
    nginx) echo 5 ;; app_servers) echo 6 ;; redis) echo 7 ;; common) echo 8 ;; *) echo 9 ;;
  esac
}
mapfile -t ordered < <(for s in "$@"; do echo "$(rank "$s") $s"; done | sort -n | cut -d' ' -f2)
printf '%s\n' "${ordered[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {}

echo "commit=$commit started=$started ended=$(date +%s) jobs=$jobs" >"$logdir/run"

failed=0 passed=0
while read -r s rc secs; do
  if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else
    failed=$((failed + 1))
    echo "=================== $s (last 80 lines of $logdir/$s.log)"
    tail -n 80 "$logdir/$s.log"
  fi
done <"$logdir/results"
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -eq "$#" ]
