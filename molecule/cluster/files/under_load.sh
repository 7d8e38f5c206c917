#!/usr/bin/env bash
# Run a command while tools/loadgen.py sends steady traffic to the load
# balancer's published port (FF_LOAD_URL, default http://127.0.0.1:18080).
# The load report (JSON) goes to REPORT and what the load generator printed to
# REPORT with .log for .json: both stay as the scenario's artifacts. The
# command's own stdout and stderr (for ansible-playbook, its task recap from the
# profile_tasks callback: where the step's time went) are also copied, as they
# come, to REPORT with .ansible.log for .json; they still reach this script's
# stdout and stderr (the side effect's assertions read them).
# FF_LOAD_MIX (optional) is loadgen's --mix: the requests another app answers;
# FF_LOAD_ARGS (optional) more loadgen options, e.g. "--job-seconds 2 --job-prefix x".
# Usage: under_load.sh REPORT RATE -- command...
# Exit status: the command's; 70 if it succeeded but the load generator left no report.
set -uo pipefail
report="$1"; rate="$2"; shift 3
log="${report%.json}.log"
ansible_log="${report%.json}.ansible.log"
url="${FF_LOAD_URL:-http://127.0.0.1:18080}"
root="$(cd "$(dirname "$0")/../../.." && pwd)"
stop="$(mktemp -u /tmp/ff-load-stop.XXXXXX)"
mkdir -p "$(dirname "$report")"
rm -f "$report" "$ansible_log"
# --timeout 30: a request still unanswered after 30 s counts as failed. On the 2-core CI
# machine, with two scenarios and this load at once, the run queue reaches 15-40
# runnable processes: an answer can take over 10 s (loadgen's default) while nothing was
# dropped. Every slow answer still shows in the report's latency (from the schedule).
python3 "$root/tools/loadgen.py" --url "$url" --rate "$rate" --concurrency 8 --timeout 30 \
  --duration 1500 --stop-file "$stop" --report "$report" ${FF_LOAD_MIX:+--mix "$FF_LOAD_MIX"} ${FF_LOAD_ARGS:-} >"$log" 2>&1 &
load=$!
sleep 2
# stderr through the inner tee (back to stderr), stdout through the outer one;
# a pipeline waits for its tees, and the command's status comes out of both.
{ "$@" 2>&1 1>&3 3>&- | tee -a "$ansible_log" >&2 3>&-; exit "${PIPESTATUS[0]}"; } 3>&1 | tee -a "$ansible_log"
rc=${PIPESTATUS[0]}
sleep 2
touch "$stop"
wait "$load"
rm -f "$stop"
if [ ! -s "$report" ]; then
  echo "under_load.sh: the load generator left no report in $report; its output ($log):" >&2
  tail -n 40 "$log" >&2
  [ "$rc" -ne 0 ] || rc=70
fi
exit "$rc"
