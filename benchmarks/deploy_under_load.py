#!/usr/bin/env python3
"""Deploy under load: the rolling deploy against the naive one, with numbers.

Against a converged cluster (the lab by default), for each mode in turn:
start tools/loadgen.py on the load balancer's published loopback port, deploy
a new release label of app_src, stop the load, and record what the clients
saw. Modes:

  rolling  playbooks/deploy_app.yml (drain, switch, health-gated restarts)
  naive    benchmarks/naive_deploy.yml (switch everywhere, restart all at once)

Prints a table and writes the reports to .bench/deploy-<time>.json. The
cluster ends on the release of the last mode run; roll back with
playbooks/rollback_app.yml or deploy again.

  python benchmarks/deploy_under_load.py [--rate 40] [--modes rolling naive]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import git_commit  # noqa: E402 - benchmarks/ is not a package

PLAYBOOKS = {
    "rolling": ROOT / "playbooks" / "deploy_app.yml",
    "naive": ROOT / "benchmarks" / "naive_deploy.yml",
}


def app_version() -> str:
    with open(ROOT / "app_src" / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def run_mode(mode: str, version: str, args: argparse.Namespace, out: Path) -> dict:
    stop = out.with_suffix(f".{mode}.stop")
    report = out.with_suffix(f".{mode}.load.json")
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(args.settle)
    started = time.monotonic()
    cmd = [
        "ansible-playbook",
        "-i",
        args.inventory,
        str(PLAYBOOKS[mode]),
        "-e",
        f"app_release_version={version}",
    ]
    log = out.with_suffix(f".{mode}.ansible.log")
    with open(log, "w") as f:
        rc = subprocess.run(
            cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=False
        ).returncode
    deploy_seconds = time.monotonic() - started
    time.sleep(args.settle)
    stop.touch()
    load.wait(timeout=120)
    stop.unlink(missing_ok=True)
    data = json.loads(report.read_text())
    return {
        "mode": mode,
        "version": version,
        "playbook_rc": rc,
        "deploy_seconds": round(deploy_seconds, 1),
        "ansible_log": str(log),
        "load": data,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inventory", default=str(ROOT / "inventory" / "lab"))
    p.add_argument("--url", default="http://127.0.0.1:8080", help="load balancer (loopback only)")
    p.add_argument(
        "--rate", type=float, default=40.0, help="requests per second during each deploy"
    )
    p.add_argument("--modes", nargs="+", choices=sorted(PLAYBOOKS), default=["rolling", "naive"])
    p.add_argument("--settle", type=float, default=5.0, help="seconds of load before and after")
    args = p.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ROOT / ".bench"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"deploy-{stamp}.json"
    base = app_version()
    results = []
    for n, mode in enumerate(args.modes, start=1):
        # A label never deployed before, so each mode really switches release.
        version = f"{base}-bench{stamp}-{n}{mode}"
        print(f"{mode}: deploying {version} under {args.rate:g} req/s ...", flush=True)
        results.append(run_mode(mode, version, args, out))
    out.write_text(
        json.dumps({"commit": git_commit(ROOT), "rate": args.rate, "modes": results}, indent=2)
    )

    print()
    header = (
        f"{'mode':8} {'deploy s':>9} {'requests':>9} {'failed':>7}"
        f" {'p50 ms':>7} {'p99 ms':>7}  failures by kind"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        load = r["load"]
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(load["failures"].items())) or "-"
        print(
            f"{r['mode']:8} {r['deploy_seconds']:>9.1f} {load['requests']:>9} {load['failed']:>7}"
            f" {load['latency_ms']['p50']:>7.1f} {load['latency_ms']['p99']:>7.1f}  {kinds}"
        )
    print(f"\nreports: {out}")
    failed_playbooks = [r["mode"] for r in results if r["playbook_rc"] != 0]
    if failed_playbooks:
        print(
            f"playbook failed for: {', '.join(failed_playbooks)} (see the ansible logs)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
