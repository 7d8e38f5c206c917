#!/usr/bin/env python3
"""Database failover under load: how long writes fail, and whether any job is lost.

Against the converged lab (db1 primary, db2 replica; `make up`), with tools/loadgen.py
sending the sample app's mix plus background jobs (POST /api/jobs) to the load balancer's
private listener (127.0.0.1:8088; the jobs endpoint is not on the public one):

  planned    playbooks/promote_replica.yml -e new_primary=db2 with db1 healthy (switchover:
             db1 fenced, db2 promoted once it has replayed everything);
             then db1 is re-cloned as db2's replica and the cluster rewired (site.yml on an
             inventory that says so, written under .bench/);
  unplanned  db2's container is killed (no clean stop), then promote_replica.yml promotes
             db1 at once; db2 is started again: its boot guard must keep it down;
             then db2 is re-cloned as db1's replica and the lab is back as it started.

For each: the write outage (first failed write's start to last failed write's end; for
the unplanned case it includes the time from the kill to the promotion, which a real
incident adds its detection time to), failed reads and writes, and the accepted jobs not
applied exactly once (loadgen --check-jobs). Writes .bench/failover-<time>.json with the
commit it ran at and prints a table.

  python benchmarks/failover.py [--rate 40] [--settle 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "inventory" / "lab"
PREFIX = "ff-lab-"  # tools/lab.py's container names
JOB_MIX = (
    "GET /api/articles:50,GET /api/articles/{id}:25,POST /api/articles:10,"
    "GET /healthz:12,POST /api/jobs:3"
)


def commit() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + ("+uncommitted" if dirty else "")


def find_group(tree, name: str):
    """The dict of group `name` anywhere under an inventory tree (YAML inventory layout)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == name and isinstance(value, dict):
                return value
            found = find_group(value, name)
            if found is not None:
                return found
    return None


def inventory_with_primary(primary: str, out: Path) -> Path:
    """A copy of the lab inventory where `primary` is the primary and the others replicas."""
    data = yaml.safe_load((LAB / "hosts.yml").read_text())
    prim, repl = find_group(data, "postgres_primary"), find_group(data, "postgres_replicas")
    hosts = {**(prim.get("hosts") or {}), **(repl.get("hosts") or {})}
    prim["hosts"] = {primary: hosts[primary]}
    repl["hosts"] = {h: v for h, v in hosts.items() if h != primary}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for entry in LAB.iterdir():
        if entry.name != "hosts.yml":
            (out / entry.name).symlink_to(entry.resolve())
    (out / "hosts.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def playbook(inventory: Path, name: str, *extra: str, log: Path) -> tuple[int, float]:
    started = time.monotonic()
    with open(log, "a") as f:
        f.write(f"\n$ ansible-playbook -i {inventory} {name} {' '.join(extra)}\n")
        f.flush()
        rc = subprocess.run(
            ["ansible-playbook", "-i", str(inventory), name, *extra],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    return rc, round(time.monotonic() - started, 1)


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def phase(name: str, args, inventory: Path, new_primary: str, kill: str | None, out: Path):
    stop = out.with_suffix(f".{name}.stop")
    report = out.with_suffix(f".{name}.load.json")
    log = out.with_suffix(f".{name}.ansible.log")
    load = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tools" / "loadgen.py"),
            f"--url={args.url}",
            f"--rate={args.rate}",
            "--concurrency=8",
            "--duration=1800",
            f"--stop-file={stop}",
            f"--report={report}",
            f"--mix={JOB_MIX}",
            "--job-seconds=1",
            f"--job-prefix={out.stem}-{name}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(args.settle)
    started = time.monotonic()
    if kill:
        docker("kill", PREFIX + kill)
    rc, promote_seconds = playbook(
        inventory, "playbooks/promote_replica.yml", "-e", f"new_primary={new_primary}", log=log
    )
    kill_to_promoted = round(time.monotonic() - started, 1)
    time.sleep(args.settle)
    stop.touch()
    load.wait(timeout=120)
    stop.unlink(missing_ok=True)
    jobs = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "loadgen.py"),
            "--check-jobs",
            str(report),
            f"--url={args.url}",
            "--wait=300",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    data = json.loads(report.read_text())
    return {
        "phase": name,
        "new_primary": new_primary,
        "killed": kill,
        "playbook_rc": rc,
        "promotion_seconds": promote_seconds,
        "start_to_promoted_seconds": kill_to_promoted,
        "load": {k: v for k, v in data.items() if k != "jobs"} | {"jobs": data["jobs"]["accepted"]},
        "jobs": json.loads(jobs.stdout) if jobs.stdout.strip().startswith("{") else jobs.stderr,
        "ansible_log": str(log),
    }


def guard_verdict(host: str) -> dict:
    docker("start", PREFIX + host)
    deadline = time.monotonic() + 60
    # Right after `docker start` systemd may not have its bus yet: ask until it answers.
    booted = ("running", "degraded")
    while time.monotonic() < deadline:
        state = docker("exec", PREFIX + host, "systemctl", "is-system-running", "--wait")
        if state.stdout.strip() in booted:
            break
        time.sleep(1)
    deadline = time.monotonic() + 60
    while True:  # until the unit has started, or its boot guard has refused
        active = docker("exec", PREFIX + host, "systemctl", "is-active", "postgresql@15-main")
        if active.stdout.strip() in ("active", "failed") or time.monotonic() > deadline:
            break
        time.sleep(1)
    journal = docker(
        "exec", PREFIX + host, "journalctl", "-b", "-u", "postgresql@15-main", "--no-pager"
    )
    said = [line for line in journal.stdout.splitlines() if "flaskfleet-pg-boot-guard" in line]
    return {"postgresql": active.stdout.strip(), "guard": said[-1:] or ["(nothing)"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--url",
        default="http://127.0.0.1:8088",
        help="the load balancer's private listener (the jobs endpoint is private; loopback only)",
    )
    p.add_argument("--rate", type=float, default=40.0, help="requests per second")
    p.add_argument("--settle", type=float, default=10.0, help="seconds of load before and after")
    args = p.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ROOT / ".bench"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"failover-{stamp}.json"
    steps = out.with_suffix(".steps.log")
    result = {"commit": commit(), "rate": args.rate, "phases": [], "steps": []}

    def step(what: str, inventory: Path, name: str, *extra: str) -> None:
        rc, seconds = playbook(inventory, name, *extra, log=steps)
        result["steps"].append({"what": what, "rc": rc, "seconds": seconds})
        print(f"  {what}: rc={rc} in {seconds} s", flush=True)
        if rc != 0:
            out.write_text(json.dumps(result, indent=2))
            raise SystemExit(f"{what} failed: see {steps}; the lab needs a hand (README)")

    print("planned switchover db1 -> db2 ...", flush=True)
    result["phases"].append(phase("planned", args, LAB, "db2", None, out))
    db2_primary = inventory_with_primary("db2", out_dir / "failover-inventory")
    step("re-clone db1 from db2", db2_primary, "playbooks/resync_replica.yml", "-e", "replica=db1")
    step("rewire the cluster (site.yml)", db2_primary, "site.yml")

    print("unplanned failover: kill db2, promote db1 ...", flush=True)
    result["phases"].append(phase("unplanned", args, db2_primary, "db1", "db2", out))
    result["phases"][-1]["returned_primary"] = guard_verdict("db2")
    step("re-clone db2 from db1", LAB, "playbooks/resync_replica.yml", "-e", "replica=db2")
    step("rewire the cluster (site.yml)", LAB, "site.yml")
    out.write_text(json.dumps(result, indent=2))

    print(f"\ncommit {result['commit']}, {args.rate:g} requests/s")
    header = (
        f"{'phase':10} {'promote s':>9} {'write outage s':>14} {'failed writes':>13}"
        f" {'failed reads':>12} {'requests':>9} {'jobs':>5} {'lost':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in result["phases"]:
        load, jobs = r["load"], r["jobs"]
        lost = jobs["lost"] if isinstance(jobs, dict) else "?"
        print(
            f"{r['phase']:10} {r['promotion_seconds']:>9.1f} {load['write_outage_s']:>14.1f}"
            f" {load['failed_writes']:>13} {load['failed_reads']:>12} {load['requests']:>9}"
            f" {load['jobs']:>5} {lost:>5}"
        )
    print(f"returned former primary: {result['phases'][-1]['returned_primary']}")
    print(f"\nreport: {out}")
    bad = [r["phase"] for r in result["phases"] if r["playbook_rc"] != 0]
    if bad:
        print(f"promotion failed in: {', '.join(bad)} (see the ansible logs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
