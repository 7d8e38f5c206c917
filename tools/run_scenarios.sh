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

# The cluster scenario is the longest: start it first. The others follow in the
# order given (postgresql's converge not while cluster runs its first operations:
# longest-first put the two heaviest phases together and starved the load test's
# requests on 2 cores). It builds the release
# wheelhouse (.cache/releases/) early in its converge; the other scenarios that
# build the same release (app_servers, celery) run last so that they find it
# built instead of building it at the same time.
ordered=()
for s in "$@"; do [ "$s" = cluster ] && ordered+=("$s"); done
for s in "$@"; do case "$s" in cluster | app_servers | celery) ;; *) ordered+=("$s") ;; esac; done
for s in "$@"; do case "$s" in app_servers | celery) ordered+=("$s") ;; esac; done
# How busy the machine was while the scenarios ran (vmstat every 10 s): whether more of
# them could run at once is read from this, not guessed.
vmstat_pid=""
if command -v vmstat >/dev/null 2>&1; then
  vmstat -n 10 >"$logdir/vmstat.log" 2>/dev/null &
  vmstat_pid=$!
fi
printf '%s\n' "${ordered[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {}
if [ -n "$vmstat_pid" ]; then
  kill "$vmstat_pid" 2>/dev/null
  # Columns: r b swpd free buff cache si so bi bo in cs us sy id wa st; the first sample
  # is the average since boot (skipped).
  awk 'NR > 3 && $1 ~ /^[0-9]+$/ { n++; busy += $13 + $14; wa += $16; r += $1; if ($15 < 10) sat++ }
       END { if (n) printf "molecule: CPU while the scenarios ran (%d samples of 10 s): busy %.0f%%, I/O wait %.0f%%, run queue %.1f, under 10%% idle in %.0f%% of samples\n", n, busy / n, wa / n, r / n, 100 * sat / n }' \
    "$logdir/vmstat.log"
fi

echo "commit=$commit started=$started ended=$(date +%s) jobs=$jobs" >"$logdir/run"

failed=0 passed=0
while read -r s rc secs; do
  if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else
    failed=$((failed + 1))
    echo "=================== $s (last 80 lines of $logdir/$s.log)"
    tail -n 80 "$logdir/$s.log"
  fi
done <"$logdir/results"
# CI keeps only the tail of the output: end with what failed, in a few lines per scenario
# (the molecule action, the failed tests and their first error lines, Ansible's fatal task).
if [ "$failed" -gt 0 ]; then
  echo "=================== what failed (full logs under $logdir)"
  while read -r s rc secs; do
    [ "$rc" -eq 0 ] && continue
    sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^ *│ \{0,1\}//' "$logdir/$s.log" | awk -v s="$s" '
      /Executed: Failed/ && !act { act = $0; sub(/^.*➜ /, "", act) }
      # molecule wraps long lines: a lone FAILED is followed by the test id
      lone && nf < 6 { failed[nf++] = "FAILED " $1; lone = 0; next }
      /^(FAILED|ERROR)$/ { lone = 1; next }
      /^(FAILED|ERROR) [^ ]+::/ && nf < 6 { failed[nf++] = $0 }
      /^=+ [0-9]+ (failed|passed|error)/ { summary = $0 }
      /^E       [^ ]/ && ne < 4 { err[ne++] = substr($0, 1, 240) }
      /^TASK \[/ { task = $0 }
      # the fatal line (host and loop label), then its message from msg on (YAML "msg: ..." or
      # JSON "\"msg\": ...", which sorted keys put near the end of a long, maybe wrapped line)
      want && match($0, /"msg": |(^|[ {])msg: /) { fat[nt - 1] = fat[nt - 1] " " substr($0, RSTART, 300); want = 0 }
      /(fatal|failed): \[/ && nt < 2 {
        tasks[nt++] = substr(task, 1, 160); fat[nt - 1] = substr($0, 1, 200)
        want = !match($0, /"msg": |(^|[ {])msg: /)
        if (!want && RSTART > 200) fat[nt - 1] = fat[nt - 1] " ... " substr($0, RSTART, 300)
      }
      END {
        print s ": " (act ? act : "no failed action in the log")
        if (summary) print "  " summary
        for (i = 0; i < nf; i++) print "  " failed[i]
        for (i = 0; i < ne; i++) print "  " err[i]
        for (i = 0; i < nt; i++) { print "  " tasks[i]; print "    " fat[i] }
      }'
  done <"$logdir/results"
fi
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -eq "$#" ]
