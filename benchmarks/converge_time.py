#!/usr/bin/env python3
"""Converge time of the lab: a first site.yml run on fresh hosts, then a re-run.

Removes the lab, starts fresh lab containers (not timed: that is Docker, not
Ansible), then times `ansible-playbook site.yml` twice and checks that the
re-run changed nothing. Prints the figures and writes .bench/converge-<time>.json.
Leaves the lab up, as `make up` would.

  python benchmarks/converge_time.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import git_commit  # noqa: E402 - benchmarks/ is not a package

RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def timed_site_run(log: Path) -> dict:
    started = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run(
            ["ansible-playbook", "site.yml"],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    seconds = time.monotonic() - started
    recap = {
        m[0]: {"ok": int(m[1]), "changed": int(m[2]), "failed": int(m[4])}
        for m in RECAP.findall(log.read_text())
    }
    return {
        "rc": rc,
        "seconds": round(seconds, 1),
        "hosts": len(recap),
        "changed": sum(h["changed"] for h in recap.values()),
        "log": str(log),
    }


def main() -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ROOT / ".bench"
    out_dir.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "tools/lab.py", "down"], cwd=ROOT, check=True)
    (ROOT / "inventory" / "lab" / "90-scale-out.yml").unlink(missing_ok=True)
    subprocess.run([sys.executable, "tools/lab.py", "up"], cwd=ROOT, check=True)
    first = timed_site_run(out_dir / f"converge-{stamp}.first.log")
    rerun = timed_site_run(out_dir / f"converge-{stamp}.rerun.log") if first["rc"] == 0 else None
    result = {"commit": git_commit(ROOT), "first": first, "rerun": rerun}
    (out_dir / f"converge-{stamp}.json").write_text(json.dumps(result, indent=2))

    print(f"first converge: {first['seconds']:.0f} s on {first['hosts']} hosts, rc={first['rc']}")
    if rerun:
        print(f"re-run: {rerun['seconds']:.0f} s, changed={rerun['changed']}, rc={rerun['rc']}")
    ok = first["rc"] == 0 and rerun is not None and rerun["rc"] == 0 and rerun["changed"] == 0
    if not ok:
        print("the lab did not converge cleanly: see the logs under .bench/", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
