#!/usr/bin/env bash
# Run a command while tools/loadgen.py sends steady traffic to the load
# balancer's published port; write the load report to $1.
# Usage: under_load.sh REPORT RATE -- command...
# Exit status: the command's. The report says how many requests failed.
set -uo pipefail
report="$1"; rate="$2"; shift 3
root="$(cd "$(dirname "$0")/../../.." && pwd)"
stop="$(mktemp -u /tmp/ff-load-stop.XXXXXX)"
python3 "$root/tools/loadgen.py" --url http://127.0.0.1:18080 --rate "$rate" --concurrency 8 \
  --duration 1500 --stop-file "$stop" --report "$report" >/dev/null 2>&1 &
load=$!
sleep 3
"$@"
rc=$?
sleep 3
touch "$stop"
wait "$load"
rm -f "$stop"
exit "$rc"
