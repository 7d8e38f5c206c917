#!/usr/bin/env bash
# Run a command while tools/loadgen.py sends steady traffic to the load
# balancer's published port (FF_LOAD_URL, default http://127.0.0.1:18080).
# The load report (JSON) goes to REPORT and what the load generator printed to
# REPORT with .log for .json: both stay as the scenario's artifacts.
# FF_LOAD_MIX (optional) is loadgen's --mix: the requests another app answers.
# Usage: under_load.sh REPORT RATE -- command...
# Exit status: the command's; 70 if it succeeded but the load generator left no report.
set -uo pipefail
report="$1"; rate="$2"; shift 3
log="${report%.json}.log"
url="${FF_LOAD_URL:-http://127.0.0.1:18080}"
root="$(cd "$(dirname "$0")/../../.." && pwd)"
stop="$(mktemp -u /tmp/ff-load-stop.XXXXXX)"
mkdir -p "$(dirname "$report")"
rm -f "$report"
python3 "$root/tools/loadgen.py" --url "$url" --rate "$rate" --concurrency 8 \
  --duration 1500 --stop-file "$stop" --report "$report" ${FF_LOAD_MIX:+--mix "$FF_LOAD_MIX"} >"$log" 2>&1 &
load=$!
sleep 3
"$@"
rc=$?
sleep 3
touch "$stop"
wait "$load"
rm -f "$stop"
if [ ! -s "$report" ]; then
  echo "under_load.sh: the load generator left no report in $report; its output ($log):" >&2
  tail -n 40 "$log" >&2
  [ "$rc" -ne 0 ] || rc=70
fi
exit "$rc"
