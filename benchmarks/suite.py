#!/usr/bin/env python3
"""`make bench`: the benchmark suite on the local lab, each figure a ratio measured side by side.

Absolute times on a shared 2-core machine are noise; what two runs of the same thing in the
same minutes show is not. Every item writes bench/results/suite-<item>.json (the figures,
the targets met or missed, the commit, the command, the time) and, where a picture says more,
bench/suite-<item>.png; benchmarks/report.py renders bench/report.md and the README table
from them. The items, in the order `make bench` runs them:

  converge     a fresh lab's first converge, the idempotent re-run, --check, and a re-run
               under a stock ansible.cfg (no pipelining, 5 forks, implicit fact gathering)
  scale        `--limit` of one new app server vs a full re-run; re-run time with 2, 3, 4 app
               servers (app3 and app4 join the lab, and stay until `make down`)
  lb           requests/s and p99 straight to every gunicorn instance vs through nginx, on the
               cached endpoint, with upstream keepalive on and off (wrk, closed loop: the
               saturation throughput)
  scaling      throughput of the I/O-bound /api/slow with 1, 2, 3 app servers at fixed
               per-host workers (wrk straight to the instances of the first N hosts)
  cache        cached vs uncached throughput (wrk), and the miss penalty at p50 (open loop)
  replication  replay lag p50/p99/max of each replica under a pgbench write load
  celery       drain rate of 10,000 no-op tasks and their enqueue-to-done p99 (the worker's
               no-loss settings: late acks, prefetch 1)
  deploy       rolling deploy under open-loop load: failures and p99 vs the steady p99 of the
               same load just before; the naive deploy beside it
  fault        p99 and failures while an app server's processes are killed, then while its
               container is killed (power loss); the host is brought back afterwards

  python benchmarks/suite.py                  # every item, on a freshly built lab
  python benchmarks/suite.py lb cache         # some items, on the lab as it is (converged)

Traffic goes only to 127.0.0.1 and to the lab's own network (172.28.0.0/24). The direct
measurements open the gunicorn ports of the app servers to this machine (the lab network's
gateway, 172.28.0.1) with a rule added to the running firewall and removed afterwards; the
inventory's firewall is untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import RESULTS, git_commit  # noqa: E402 - benchmarks/ is not a package

ITEMS = [
    "converge",
    "scale",
    "lb",
    "scaling",
    "cache",
    "replication",
    "celery",
    "deploy",
    "fault",
]
PREFIX = "ff-lab-"
GATEWAY = "172.28.0.1"
LB = "172.28.0.11"
# The load balancer's private listener: the whole app without the public rate limit
# (one client address sending thousands of requests a second is what it refuses).
LB_URL = f"http://{LB}:8088"
APPS = {"app1": "172.28.0.21", "app2": "172.28.0.22", "app3": "172.28.0.23", "app4": "172.28.0.24"}
PORTS = (8001, 8002)  # flaskfleet_gunicorn_instances: 2 in inventory/lab
WORK = ROOT / ".bench" / "suite"
SCALE_OUT = ROOT / "inventory" / "lab" / "90-scale-out.yml"
EXTRA_APPS = {"app3": 2210, "app4": 2211}  # SSH ports of the app servers `scale` adds
# What a new app server touches: the hosts whose firewalls and pg_hba learn its address.
JOIN_LIMIT = "loadbalancers,postgres_primary,postgres_replicas,redis,monitoring"


# What the converge item measured in this invocation (the scale item reuses its re-run).
CONVERGED: dict = {}


class CPU:
    """How busy this machine's CPUs were over a block (/proc/stat): what limits a figure."""

    @staticmethod
    def _times() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def __enter__(self):
        self.start = self._times()
        return self

    def __exit__(self, *exc):
        busy, total = (b - a for a, b in zip(self.start, self._times(), strict=True))
        self.busy_percent = round(100 * busy / total, 1) if total else None


# -- running things ------------------------------------------------------------------------
def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("check", True)
    return subprocess.run(argv, cwd=ROOT, **kw)


def dexec(host: str, *argv: str, user: str | None = None, check: bool = True) -> str:
    cmd = ["docker", "exec", *(["-u", user] if user else []), PREFIX + host, *argv]
    return run(cmd, check=check).stdout


def run_counts(text: str) -> dict:
    """What an ansible-playbook log says of its run: hosts, changed tasks, the tasks it went
    through and their results on all hosts (ok and skipped)."""
    recap = re.findall(
        r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
        r"\s+skipped=(\d+)",
        text,
        re.M,
    )
    return {
        "hosts": len(recap),
        "changed": sum(int(r[2]) for r in recap),
        "tasks": len(re.findall(r"^TASK \[", text, re.M)),
        "task_results": sum(int(r[1]) + int(r[5]) for r in recap),
    }


def timed_playbook(name: str, args: list[str], env: dict | None = None) -> dict:
    """One ansible-playbook run, timed; its log under .bench/suite/."""
    log = WORK / f"{name}.log"
    started = time.monotonic()
    with open(log, "w") as f, CPU() as cpu:
        rc = subprocess.run(
            ["ansible-playbook", *args],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        ).returncode
    seconds = round(time.monotonic() - started, 1)
    out = {"rc": rc, "seconds": seconds, **run_counts(log.read_text())}
    out["cpu_busy_percent"] = cpu.busy_percent
    out["log"] = str(log.relative_to(ROOT))
    print(f"  {name}: {seconds:.0f} s, {out['hosts']} hosts, changed={out['changed']}, rc={rc}")
    if rc != 0:
        raise SystemExit(f"{name} failed (rc={rc}): see {log}")
    return out


def lab(*args: str) -> None:
    run([sys.executable, "tools/lab.py", *args], capture_output=False)


# -- load tools ----------------------------------------------------------------------------
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return round(float(value) * UNITS_MS[unit], 3)


def parse_wrk(text: str) -> dict:
    """The figures of one `wrk --latency` run."""
    lat = {f"p{p}_ms": _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", text, re.M)}
    if "p99_ms" not in lat:
        raise KeyError("no latency distribution")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1]),
        "requests": int(re.search(r"(\d+) requests in", text)[1]),
        "errors": (sum(map(int, sock.groups())) if sock else 0) + (int(non2xx[1]) if non2xx else 0),
        **lat,
    }


def wrk_all(
    urls: list[str], connections: int, seconds: int, timeout: int = 10, close: bool = False
) -> dict:
    """wrk against every URL at once, the connections split between them: total
    requests/s, errors, and the worst URL's p50/p99 (each wrk only knows its own)."""
    per = max(1, connections // len(urls))
    procs = [
        subprocess.Popen(
            [
                "wrk",
                "--latency",
                "-t1",
                f"-c{per}",
                f"-d{seconds}s",
                f"--timeout={timeout}s",
                *(["-H", "Connection: close"] if close else []),
                u,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for u in urls
    ]
    with CPU() as cpu:
        outputs = [p.communicate()[0] for p in procs]
    try:
        parts = [parse_wrk(text) for text in outputs]
    except (TypeError, KeyError) as e:
        raise SystemExit("wrk's output is not what it should be:\n" + "\n".join(outputs)) from e
    return {
        "urls": len(urls),
        "connections": per * len(urls),
        "seconds": seconds,
        "rps": round(sum(p["rps"] for p in parts), 1),
        "requests": sum(p["requests"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "p50_ms": max(p["p50_ms"] for p in parts),
        "p99_ms": max(p["p99_ms"] for p in parts),
        "cpu_busy_percent": cpu.busy_percent,
    }


def loadgen(name: str, url: str, rate: float, seconds: float, mix: str, *extra: str) -> dict:
    report = WORK / f"{name}.load.json"
    cpu = CPU().__enter__()
    run(
        [
            sys.executable,
            "tools/loadgen.py",
            f"--url={url}",
            f"--rate={rate}",
            f"--duration={seconds}",
            f"--mix={mix}",
            f"--report={report}",
            *extra,
        ]
    )
    cpu.__exit__(None, None, None)
    return json.loads(report.read_text()) | {"cpu_busy_percent": cpu.busy_percent}


class Background:
    """tools/loadgen.py running until stop(): the load around an operation."""

    def __init__(self, name: str, url: str, rate: float, mix: str):
        self.report = WORK / f"{name}.load.json"
        self.stop_file = WORK / f"{name}.stop"
        self.stop_file.unlink(missing_ok=True)
        self.started = time.time()
        self.cpu = CPU().__enter__()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "tools/loadgen.py",
                f"--url={url}",
                f"--rate={rate}",
                "--duration=3600",
                f"--mix={mix}",
                f"--stop-file={self.stop_file}",
                f"--report={self.report}",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> dict:
        self.stop_file.touch()
        self.proc.wait(timeout=180)
        self.stop_file.unlink(missing_ok=True)
        self.cpu.__exit__(None, None, None)
        return json.loads(self.report.read_text()) | {"cpu_busy_percent": self.cpu.busy_percent}


def load_summary(report: dict) -> dict:
    return {
        "requests": report["requests"],
        "failed": report["failed"],
        "failures": report.get("failures", {}),
        "p50_ms": report["latency_ms"]["p50"],
        "p99_ms": report["latency_ms"]["p99"],
        "max_ms": report["latency_ms"]["max"],
        "cpu_busy_percent": report.get("cpu_busy_percent"),
        "failed_reads": report.get("failed_reads", 0),
        "failed_writes": report.get("failed_writes", 0),
        "write_outage_s": report.get("write_outage_s", 0),
        # Per scheduled second (loadgen's columns): requests, failures, p99.
        "timeline": {
            k: report.get("timeline", {}).get(k, []) for k in ("requests", "failures", "p99_ms")
        },
    }


@contextlib.contextmanager
def direct_access(hosts: list[str]):
    """Open the gunicorn ports of these app servers to this machine for the block (a rule
    in the running firewall, tagged and removed afterwards; the inventory's is untouched)."""
    ports = ", ".join(map(str, PORTS))
    rule = f'ip saddr {GATEWAY} tcp dport {{ {ports} }} accept comment "flaskfleet-bench"'
    for h in hosts:
        dexec(h, "sh", "-c", f"nft insert rule inet flaskfleet input {rule}")
    try:
        yield [f"http://{APPS[h]}:{p}" for h in hosts for p in PORTS]
    finally:
        for h in hosts:
            listing = dexec(h, "nft", "-a", "list", "chain", "inet", "flaskfleet", "input")
            for handle in re.findall(r'"flaskfleet-bench" # handle (\d+)', listing):
                dexec(h, "nft", "delete", "rule", "inet", "flaskfleet", "input", "handle", handle)


def target(name: str, measured: float, op: str, goal: float, unit: str = "", limit: str = ""):
    met = measured <= goal if op == "<=" else measured >= goal if op == ">=" else measured < goal
    return {
        "name": name,
        "measured": round(measured, 3),
        "op": op,
        "goal": goal,
        "unit": unit,
        "met": bool(met),
        "limit": "" if met else limit,
    }


def wait_healthy(url: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if run(["curl", "-fsS", "-o", "/dev/null", url], check=False).returncode == 0:
            return
        time.sleep(2)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def app_hosts() -> list[str]:
    """The app servers of the lab inventory as it is now (2, or more after `scale`)."""
    out = run(["ansible-inventory", "--graph", "appservers"]).stdout
    return [h for h in re.findall(r"--(app\d+)\b", out)]


def write_scale_out(hosts: list[str]) -> None:
    lines = [
        "---",
        "# Written by `make bench` (benchmarks/suite.py): the app servers its `scale` item adds.",
        "# `make down` removes them with the rest of the lab.",
        "all:",
        "  children:",
        "    appservers:",
        "      hosts:",
    ]
    for h in hosts:
        lines.append(
            f"        {h}: {{ansible_host: 127.0.0.1, ansible_port: {EXTRA_APPS[h]},"
            f" private_ip: {APPS[h]}}}"
        )
    SCALE_OUT.write_text("\n".join(lines) + "\n")


# -- the items -----------------------------------------------------------------------------
def item_converge() -> dict:
    print("converge: a fresh lab", flush=True)
    lab("down")
    SCALE_OUT.unlink(missing_ok=True)
    lab("up")
    first = timed_playbook("converge-first", ["site.yml"])
    rerun = timed_playbook("converge-rerun", ["site.yml"])
    check = timed_playbook("converge-check", ["site.yml", "--check", "--diff"])
    # Ansible's defaults, keeping only what finds the project and checks host keys.
    stock = WORK / "stock-ansible.cfg"
    stock.write_text(
        "[defaults]\n"
        f"inventory = {ROOT}/inventory/lab\n"
        f"roles_path = {ROOT}/roles\n"
        f"filter_plugins = {ROOT}/filter_plugins\n"
        "interpreter_python = /usr/bin/python3\n"
        "host_key_checking = True\n"
        "[ssh_connection]\n"
        "ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s"
        " -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes\n"
    )
    env = dict(__import__("os").environ, ANSIBLE_CONFIG=str(stock))
    stock_rerun = timed_playbook("converge-rerun-stock-config", ["site.yml"], env=env)
    CONVERGED["rerun"] = rerun
    return converge_result(
        {"first": first, "rerun": rerun, "check": check, "rerun_stock_config": stock_rerun}
    )


def converge_result(f: dict) -> dict:
    """The converge item's targets and notes, from its four timed runs."""
    first, rerun, check, stock = f["first"], f["rerun"], f["check"], f["rerun_stock_config"]

    def per_task(r):
        return round(1000 * r["seconds"] / max(1, r["tasks"]))

    return {
        "figures": f,
        "targets": [
            target(
                "idempotent re-run / first converge",
                rerun["seconds"] / first["seconds"],
                "<=",
                0.35,
                "x",
                f"the re-run still goes through {rerun['tasks']} tasks "
                f"({rerun['task_results']} results on {rerun['hosts']} hosts: most tasks run on "
                f"the host or two of one group) at {per_task(rerun)} ms each, changing nothing; "
                f"the first converge, packages included, took {per_task(first)} ms per task "
                f"over {first['tasks']} tasks: on this machine a task's round trip, not its "
                "work, is most of a converge",
            ),
            target(
                "idempotent re-run / re-run with a stock ansible.cfg",
                rerun["seconds"] / stock["seconds"],
                "<=",
                0.7,
                "x",
                f"{per_task(rerun)} ms per task with the project's config, {per_task(stock)} ms "
                f"over {stock['tasks']} tasks with Ansible's defaults (implicit fact gathering "
                "adds tasks): pipelining (one SSH exchange per task instead of several), 20 "
                "forks and facts gathered once save that difference; 0.7x would need 30% of "
                "every task",
            ),
        ],
        "notes": [
            f"changed on the re-run: {rerun['changed']}; on --check --diff: {check['changed']}",
            "the stock-config re-run comes right after the project's, on the same converged "
            "lab; the stock config keeps only what finds the project and checks host keys "
            "(no pipelining, 5 forks, implicit fact gathering)",
        ],
    }


def rederive(item: str) -> None:
    """Re-derive an item's targets and notes from what it measured: the converge item's
    counts from the logs of its own runs (.bench/suite/), the scaling item's from its
    points. The times, figures and the commit that measured them stay as they were."""
    path = RESULTS / f"suite-{item}.json"
    data = json.loads(path.read_text())
    f = data["figures"]
    if item == "converge":
        for run_ in f.values():
            run_.update(run_counts((ROOT / run_["log"]).read_text()))
        data.update(converge_result(f))
    elif item == "scaling":
        path_, conns = "/api/slow?ms=500", f["by_app_servers"]["1"]["connections"]
        data.update(scaling_result(f["by_app_servers"], path_, conns))
    else:
        raise SystemExit("--rederive knows the converge and scaling items")
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def converge_rerun_on_this_lab() -> dict | None:
    """The converge item's re-run, if it was measured on the running lab as it is now: the
    result written after the lab's containers were created, and no app server added since."""
    path = RESULTS / "suite-converge.json"
    created = run(
        ["docker", "inspect", "-f", "{{.Created}}", PREFIX + "app1"], check=False
    ).stdout.strip()
    if not path.is_file() or not created or SCALE_OUT.exists():
        return None
    born = datetime.datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00").timestamp()
    return json.loads(path.read_text())["figures"]["rerun"] if path.stat().st_mtime > born else None


def item_scale() -> dict:
    print("scale: app3 joins with --limit, app4 with a full run", flush=True)
    before = app_hosts()
    # The lab's full re-run with its first app servers: the converge item's, when it ran
    # on this very lab (after its containers were created), else one now.
    rerun_before = CONVERGED.get("rerun") or converge_rerun_on_this_lab()
    if rerun_before is None:
        rerun_before = timed_playbook(f"scale-full-rerun-{len(before)}-apps", ["site.yml"])
    # The same job done both ways: one new app server joins through `--limit` (the new
    # host and the tiers that learn its address), the next through a full site.yml run.
    write_scale_out(["app3"])
    lab("up", "app3")
    limit = timed_playbook("scale-limit-app3", ["site.yml", "--limit", f"app3,{JOIN_LIMIT}"])
    write_scale_out(["app3", "app4"])
    lab("up", "app4")
    full_join = timed_playbook("scale-full-run-app4-joins", ["site.yml"])
    rerun_after = timed_playbook(f"scale-full-rerun-{len(before) + 2}-apps", ["site.yml"])
    wait_healthy(f"{LB_URL}/healthz")
    return {
        "figures": {
            "limit_one_new_app_server": limit,
            "full_run_one_new_app_server": full_join,
            "full_rerun_by_app_servers": {
                str(len(before)): rerun_before,
                str(len(before) + 2): rerun_after,
            },
        },
        "targets": [
            target(
                "one new app server: `--limit` run / full run",
                limit["seconds"] / full_join["seconds"],
                "<=",
                0.5,
                "x",
                f"the new host's own first converge, the same in both: {limit['changed']} "
                f"changed tasks in the `--limit` run, {full_join['changed']} in the full run; "
                f"an idempotent full re-run takes {rerun_after['seconds']:.0f} s",
            )
        ],
        "notes": [
            f"app3 joins through `--limit app3,{JOIN_LIMIT}` (the hosts whose firewalls, "
            "pg_hba and upstreams learn its address), app4 through a full `site.yml` run; then "
            "an idempotent full re-run with 4 app servers beside the converge item's with 2"
        ],
    }


def _keepalive(value: int) -> dict:
    return timed_playbook(
        f"lb-keepalive-{value}",
        ["playbooks/load_balancers.yml", "-e", f"nginx_upstream_keepalive={value}"],
    )


def median_run(runs: list[dict]) -> dict:
    """The run of median throughput among repeated wrk runs, with every run's requests/s."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[len(ordered) // 2] | {"runs_rps": [r["rps"] for r in runs]}


def item_lb() -> dict:
    print("lb: straight to the instances vs through nginx", flush=True)
    hosts = app_hosts()
    path = "/api/articles"
    wait_healthy(f"{LB_URL}{path}")
    # Short runs, alternated and repeated: a single run on a shared 2-core machine can be
    # off by half; the median of three, each next to its comparison, is what is reported.
    conns, secs, rounds = 32, 10, 3
    with direct_access(hosts) as urls:
        direct_urls = [u + path for u in urls]
        direct, through, off, direct_off = [], [], [], []
        for _ in range(rounds):
            direct.append(wrk_all(direct_urls, conns, secs))
            through.append(wrk_all([LB_URL + path], conns, secs))
        try:
            _keepalive(0)
            time.sleep(3)
            for _ in range(rounds):
                direct_off.append(wrk_all(direct_urls, conns, secs))
                off.append(wrk_all([LB_URL + path], conns, secs))
        finally:
            timed_playbook("lb-keepalive-restored", ["playbooks/load_balancers.yml"])
    direct, through = median_run(direct), median_run(through)
    off, direct_off = median_run(off), median_run(direct_off)
    print(f"  direct {direct['rps']}/s, nginx {through['rps']}/s, no keepalive {off['rps']}/s")
    return {
        "figures": {
            "direct": direct,
            "nginx_keepalive": through,
            "direct_beside_no_keepalive": direct_off,
            "nginx_no_keepalive": off,
        },
        "targets": [
            target(
                "throughput through nginx / straight to the instances",
                through["rps"] / direct["rps"],
                ">=",
                0.9,
                "x",
                "nginx runs on the same 2 cores as the app servers and wrk (busy "
                f"{direct['cpu_busy_percent']}% in the direct run, {through['cpu_busy_percent']}% "
                "through nginx): each request through it costs the CPU nginx needs, taken from "
                "gunicorn",
            )
        ],
        "notes": [
            f"`{path}` (served from the Redis cache), wrk {conns} connections for {secs} s, "
            f"{rounds} rounds each alternating direct and through nginx (the median run is "
            f"shown, every run's requests/s beside it); the upstream is every instance of the "
            f"{len(hosts)} app servers behind lb1 ({', '.join(hosts)}); the direct run spreads "
            "the same connections over the same instances",
        ],
    }


def item_scaling() -> dict:
    print("scaling: /api/slow on 1, 2, 3 app servers", flush=True)
    hosts = app_hosts()[:3]
    path = "/api/slow?ms=500"
    conns = 48 * len(hosts)
    points = {}
    with direct_access(hosts) as _:
        for n in range(1, len(hosts) + 1):
            urls = [f"http://{APPS[h]}:{p}{path}" for h in hosts[:n] for p in PORTS]
            # A new connection per request: gunicorn's workers then share the requests
            # (with keep-alive, each connection stays with the worker that accepted it).
            points[str(n)] = wrk_all(urls, conns, 20, timeout=30, close=True)
            print(f"  {n} app servers: {points[str(n)]['rps']}/s", flush=True)
    return scaling_result(points, path, conns)


# Requests a second one lab app server answers at most on /api/slow?ms=500: 2 gunicorn
# instances (inventory/lab) x 2 workers x 4 threads, each request holding a thread 0.5 s.
LAB_HOST_CAPACITY = 2 * 2 * 4 / 0.5


def scaling_result(points: dict, path: str, conns: int) -> dict:
    """The scaling item's targets and notes, from its measured points."""
    one = points["1"]["rps"]

    def limit(n: str) -> str:
        share = [
            f"{k} host(s) {points[k]['rps']:g}/s = "
            f"{100 * points[k]['rps'] / (int(k) * LAB_HOST_CAPACITY):.0f}%"
            for k in ("1", n)
        ]
        return (
            f"not this machine's CPU ({points[n]['cpu_busy_percent']}% busy): of what the "
            f"hosts' threads can answer ({LAB_HOST_CAPACITY:g}/s each), "
            + " and ".join(share)
            + "; what keeps the larger lab from its threads' full rate is not measured here"
        )

    targets = [
        target(
            f"1 -> {n} app servers, throughput", points[n]["rps"] / one, ">=", goal, "x", limit(n)
        )
        for n, goal in (("2", 1.8), ("3", 2.6))
        if n in points
    ]
    return {
        "figures": {"by_app_servers": points},
        "targets": targets,
        "notes": [
            f"`{path}` straight to every instance of the first N app servers, {conns} "
            "connections in all (the same for every N, a new one per request), the lab's "
            "workers per host unchanged"
        ],
    }


def item_cache() -> dict:
    print("cache: hit vs uncached", flush=True)
    wait_healthy(f"{LB_URL}/api/articles")
    hit = wrk_all([f"{LB_URL}/api/articles"], 32, 15)
    # consistent=1 reads the primary and skips the cache (read-your-writes' path).
    uncached = wrk_all([f"{LB_URL}/api/articles?consistent=1"], 32, 15)
    # The miss penalty at a rate well below saturation: p50 of a key never cached (the
    # replica's query and the cache fill) minus p50 of a hit.
    # The floor: a request through the same nginx and gunicorn that touches neither the
    # cache nor a database (/healthz), at the same rate.
    floor = loadgen("cache-floor-latency", LB_URL, 20, 30, "GET /healthz:1")
    hit_p50 = loadgen("cache-hit-latency", LB_URL, 20, 30, "GET /api/articles:1")
    miss_p50 = loadgen("cache-miss-latency", LB_URL, 20, 30, "GET /api/articles?tag=miss-{n}:1")
    penalty = miss_p50["latency_ms"]["p50"] - hit_p50["latency_ms"]["p50"]
    return {
        "figures": {
            "hit": hit,
            "uncached": uncached,
            "floor_open_loop": load_summary(floor),
            "hit_open_loop": load_summary(hit_p50),
            "miss_open_loop": load_summary(miss_p50),
        },
        "targets": [
            target(
                "cache hit / uncached throughput",
                hit["rps"] / uncached["rps"],
                ">=",
                5,
                "x",
                f"the request itself: /healthz (no cache, no database) takes "
                f"{floor['latency_ms']['p50']} ms at p50, a cache hit "
                f"{hit_p50['latency_ms']['p50']} ms and a read that misses "
                f"{miss_p50['latency_ms']['p50']} ms (20/s, open loop): a hit saves the "
                "difference between the last two, the rest is the request's own cost",
            ),
            target(
                "miss penalty at p50",
                penalty,
                "<=",
                2,
                "ms",
                "a miss asks the replica (a query over TLS) and writes the result to Redis: "
                "two more round trips than a hit",
            ),
        ],
        "notes": [
            "through lb1's private listener; uncached = `/api/articles?consistent=1` (the "
            "primary, no cache); the miss penalty is measured open loop at 20/s, "
            "`?tag=miss-{n}` making every key new"
        ],
    }


LAG_SQL = (
    "SELECT application_name, coalesce(extract(epoch FROM replay_lag), 0) FROM pg_stat_replication"
)


def item_replication() -> dict:
    print("replication: replay lag under pgbench", flush=True)
    pg = "/usr/lib/postgresql/15/bin/pgbench"
    db = "flaskfleet_bench"
    dexec("db1", "dropdb", "--if-exists", db, user="postgres")
    dexec("db1", "createdb", db, user="postgres")
    try:
        dexec("db1", pg, "-q", "-i", "-s", "5", db, user="postgres")
        samples: list[tuple[float, str, float]] = []
        done = threading.Event()

        def sample():
            # One psql per sample is ~20 ms on this machine: 4 samples a second.
            while not done.is_set():
                out = dexec("db1", "psql", "-XAtF,", "-c", LAG_SQL, user="postgres", check=False)
                now = time.time()
                for line in out.splitlines():
                    name, lag = line.split(",")
                    samples.append((now, name, float(lag)))
                time.sleep(0.2)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        bench = dexec(
            "db1",
            pg,
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            "60",
            "-R",
            "200",
            "-P",
            "10",
            db,
            user="postgres",
        )
        done.set()
        t.join()
    finally:
        dexec("db1", "dropdb", "--if-exists", db, user="postgres", check=False)
    tps = re.search(r"tps = ([\d.]+)", bench)
    by = {}
    for _, name, lag in samples:
        by.setdefault(name, []).append(lag * 1000)
    figures = {}
    for name, lags in sorted(by.items()):
        lags.sort()
        figures[name] = {
            "samples": len(lags),
            "p50_ms": round(statistics.median(lags), 1),
            "p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 1),
            "max_ms": round(lags[-1], 1),
        }
    worst = max((f["p99_ms"] for f in figures.values()), default=float("nan"))
    return {
        "figures": {
            "pgbench_tps": float(tps[1]) if tps else None,
            "replicas": figures,
            "timeline": [[round(t, 2), n, round(lag * 1000, 1)] for t, n, lag in samples],
        },
        "targets": [target("replica replay lag p99", worst, "<", 1000, "ms")],
        "notes": [
            "pgbench TPC-B-like writes at 200 tx/s (4 clients) for 60 s on the primary, in a "
            "database of its own (dropped afterwards); replay_lag from pg_stat_replication, "
            "sampled ~4 times a second (0 when the replica has nothing left to replay)"
        ],
    }


CELERY_SCRIPT = r"""
import json, os, sys, time
from datetime import datetime
from celery.app.utils import find_app
app = find_app(sys.argv[1])
queue = os.environ.get("CELERY_QUEUES", "celery").split(",")[0]
n, rate = int(sys.argv[2]), float(sys.argv[3])
client = app.backend.client
sent = {}
t0 = time.time()
for i in range(n):
    if rate:
        # On schedule (open loop): task i is due at t0 + i / rate.
        time.sleep(max(0.0, t0 + i / rate - time.time()))
    r = app.send_task("celery.accumulate", args=[i], queue=queue)
    sent[app.backend.get_key_for_task(r.id)] = time.time()
t1 = time.time()
keys = list(sent)
done = {}
deadline = t1 + 600
while time.time() < deadline and len(done) < n:
    time.sleep(1)
    todo = [k for k in keys if k not in done]
    for k, v in zip(todo, client.mget(todo)):
        if v and json.loads(v).get("status") == "SUCCESS":
            done[k] = datetime.fromisoformat(json.loads(v)["date_done"]).timestamp()
client.delete(*keys)
print(json.dumps({"tasks": n, "done": len(done), "enqueue_seconds": t1 - t0,
                  "first_sent": t0, "last_done": max(done.values(), default=None),
                  "latencies": sorted(done[k] - sent[k] for k in done), "queue": queue}))
"""


def item_celery() -> dict:
    print("celery: 10,000 no-op tasks", flush=True)
    worker = next(
        u
        for u in dexec(
            "worker1", "systemctl", "list-units", "--plain", "--no-legend", "celery-worker@*"
        ).split()
        if u.startswith("celery-worker@")
    )
    pid = dexec("worker1", "systemctl", "show", "-p", "MainPID", "--value", worker).strip()
    environ = dexec("worker1", "cat", f"/proc/{pid}/environ").split("\0")
    cmdline = dexec("worker1", "cat", f"/proc/{pid}/cmdline").split("\0")
    python = cmdline[0] if "python" in cmdline[0] else str(Path(cmdline[1]).parent / "python")
    app_arg = next(a.split("=", 1)[1] for a in cmdline if a.startswith("--app="))
    user = dexec("worker1", "stat", "-c", "%U", f"/proc/{pid}").strip()
    env = [e for e in environ if e and not e.startswith(("INVOCATION_ID=", "NOTIFY_SOCKET="))]
    script = WORK / "celery_noop.py"
    script.write_text(CELERY_SCRIPT)
    run(["docker", "cp", str(script), f"{PREFIX}worker1:/var/tmp/flaskfleet-bench-celery.py"])

    def send(n: int, rate: float) -> dict:
        out = dexec(
            "worker1",
            "env",
            "-i",
            *env,
            python,
            "/var/tmp/flaskfleet-bench-celery.py",
            app_arg,
            str(n),
            str(rate),
            user=user,
        )
        data = json.loads(out.strip().splitlines()[-1])
        lat = data.pop("latencies")
        span = (data["last_done"] - data["first_sent"]) if data["last_done"] else 0
        data["per_s"] = round(data["done"] / span, 1) if span else 0
        data["enqueue_per_s"] = round(n / data.pop("enqueue_seconds"), 1)

        def q(x):
            return round(lat[min(len(lat) - 1, int(len(lat) * x))] * 1000, 1) if lat else None

        data["enqueue_to_done_ms"] = {"p50": q(0.5), "p99": q(0.99), "max": q(1.0)}
        return data

    burst = send(10000, 0)
    steady = send(1000, 50)
    dexec("worker1", "rm", "-f", "/var/tmp/flaskfleet-bench-celery.py")
    concurrency = next(
        (e.split("=", 1)[1] for e in env if e.startswith("CELERY_CONCURRENCY=")), "?"
    )
    return {
        "figures": {"burst": burst, "steady": steady, "worker_concurrency": concurrency},
        "targets": [],
        "notes": [
            "`celery.accumulate` (Celery's built-in no-op, so the figures are the queue's and "
            f"the worker's, not a task's) to queue `{burst['queue']}`, consumed by worker1's "
            f"{concurrency} worker processes with late acks and prefetch 1 (the no-loss "
            "settings); every task sent is waited for. burst: 10,000 sent as fast as one "
            "producer can, the drain rate is done tasks per second from the first send to the "
            "last done; steady: 1,000 sent on schedule at 50/s. Enqueue-to-done runs from the "
            "producer's send to the result's date_done (a no-op starts and ends in the same "
            "millisecond, so it is enqueue-to-start)",
        ],
    }


def item_deploy() -> dict:
    print("deploy: rolling and naive under open-loop load", flush=True)
    import deploy_under_load as dep

    rate, mix = (
        40,
        "GET /api/articles:60,GET /api/articles/{id}:25,POST /api/articles:5,GET /healthz:10",
    )
    steady = loadgen("deploy-steady", "http://127.0.0.1:8080", rate, 60, mix)
    args = argparse.Namespace(
        inventory=str(ROOT / "inventory" / "lab"),
        url="http://127.0.0.1:8080",
        rate=rate,
        settle=5.0,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = dep.app_version()
    modes = {}
    for n, mode in enumerate(("rolling", "naive"), start=1):
        version = f"{base}-bench{stamp}-{n}{mode}"
        with CPU() as cpu:
            r = dep.run_mode(mode, version, args, WORK / f"deploy-{stamp}.json")
        r["load"]["cpu_busy_percent"] = cpu.busy_percent
        if r["playbook_rc"] != 0:
            raise SystemExit(f"the {mode} deploy failed: {r['ansible_log']}")
        modes[mode] = {"deploy_seconds": r["deploy_seconds"], **load_summary(r["load"])}
        print(f"  {mode}: {modes[mode]['failed']} failed, p99 {modes[mode]['p99_ms']} ms")
    roll = modes["rolling"]
    return {
        "figures": {"steady": load_summary(steady), **modes},
        "targets": [
            target("rolling deploy: failed requests", roll["failed"], "<=", 0, ""),
            target(
                "rolling deploy p99 / steady p99",
                roll["p99_ms"] / steady["latency_ms"]["p99"],
                "<=",
                2,
                "x",
                "CPU: a deploy builds the release on every app server (pip, compileall) and runs "
                "Ansible on the same 2 cores that serve the load (busy "
                f"{steady.get('cpu_busy_percent')}% under the steady load, "
                f"{roll.get('cpu_busy_percent')}% during the rolling deploy)",
            ),
        ],
        "notes": [
            f"{rate} requests/s open loop through the load balancer's public port (the sample's "
            "read/write mix); steady = the same load for 60 s just before the deploys"
        ],
    }


def item_fault() -> dict:
    print("fault: app2's processes killed, then its container", flush=True)
    rate, url = 40, "http://127.0.0.1:8080"
    mix = "GET /api/articles:70,GET /api/articles/{id}:20,GET /healthz:10"
    phases = {}
    # Processes: every gunicorn process of app2 gets SIGKILL; systemd starts them again.
    bg = Background("fault-process", url, rate, mix)
    time.sleep(10)
    killed_at = time.time() - bg.started
    dexec("app2", "pkill", "-KILL", "-f", "gunicorn", check=False)
    time.sleep(30)
    phases["process_killed"] = {"at_s": round(killed_at, 1), **load_summary(bg.stop())}
    # Power: the container is killed (no shutdown, no FIN or RST to anyone).
    bg = Background("fault-power", url, rate, mix)
    time.sleep(10)
    killed_at = time.time() - bg.started
    run(["docker", "kill", PREFIX + "app2"])
    time.sleep(40)
    phases["powered_off"] = {"at_s": round(killed_at, 1), **load_summary(bg.stop())}
    # Back: boot it; its units start with the system and nginx takes it back.
    lab("up", "app2")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        probe = ["docker", "exec", PREFIX + "app2", "curl", "-fsS", "-o", "/dev/null"]
        if run([*probe, "http://127.0.0.1:8001/readyz"], check=False).returncode == 0:
            break
        time.sleep(3)
    power = phases["powered_off"]
    proc = phases["process_killed"]
    return {
        "figures": phases,
        "targets": [
            target(
                "app server powered off: p99",
                power["p99_ms"],
                "<=",
                300,
                "ms",
                "requests nginx had sent to the dead host wait for a timeout before they are "
                "retried on another server (see the timeline)",
            ),
            target("app server powered off: failed requests", power["failed"], "<=", 0),
            target("app server processes killed: failed requests", proc["failed"], "<=", 0),
        ],
        "notes": [
            f"{rate} requests/s open loop (reads) through the load balancer's public port; "
            "the fault 10 s into each phase; app2 is booted again afterwards"
        ],
    }


# -- plots ---------------------------------------------------------------------------------
def plot(item: str, data: dict) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = data["figures"]
    fig, ax = plt.subplots(figsize=(8, 4))
    if item == "converge":
        names = ["first", "rerun", "check", "rerun_stock_config"]
        ax.bar(names, [f[n]["seconds"] for n in names], color="#4477aa")
        ax.set_ylabel("seconds")
    elif item == "scale":
        full = f["full_rerun_by_app_servers"]
        ns = sorted(full, key=int)
        ax.plot([int(n) for n in ns], [full[n]["seconds"] for n in ns], "o-", label="full re-run")
        for key, color in (
            ("limit_one_new_app_server", "#cc6677"),
            ("full_run_one_new_app_server", "#228833"),
        ):
            ax.axhline(f[key]["seconds"], color=color, ls="--", label=key.replace("_", " "))
        ax.set_xlabel("app servers")
        ax.set_ylabel("seconds")
        ax.legend()
    elif item == "lb":
        order = ("direct", "nginx_keepalive", "direct_beside_no_keepalive", "nginx_no_keepalive")
        names = [n for n in order if n in f]
        ax.bar(names, [f[n]["rps"] for n in names], color="#4477aa")
        ax.set_ylabel("requests/s (wrk)")
        for i, n in enumerate(names):
            ax.annotate(f"p99 {f[n]['p99_ms']:g} ms", (i, f[n]["rps"]), ha="center", va="bottom")
    elif item == "scaling":
        pts = f["by_app_servers"]
        ns = sorted(pts, key=int)
        xs = [int(n) for n in ns]
        ax.plot(xs, [pts[n]["rps"] for n in ns], "o-", label="measured")
        ax.plot(xs, [pts["1"]["rps"] * x for x in xs], "--", color="#999999", label="ideal")
        ax.set_xticks(xs)
        ax.set_xlabel("app servers")
        ax.set_ylabel("requests/s, /api/slow?ms=500")
        ax.legend()
    elif item == "cache":
        ax.bar(["hit", "uncached"], [f["hit"]["rps"], f["uncached"]["rps"]], color="#4477aa")
        ax.set_ylabel("requests/s (wrk)")
    elif item == "replication":
        t0 = f["timeline"][0][0] if f["timeline"] else 0
        for name in sorted({n for _, n, _ in f["timeline"]}):
            pts = [(t - t0, lag) for t, n, lag in f["timeline"] if n == name]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", label=name)
        ax.set_xlabel("seconds into the pgbench run")
        ax.set_ylabel("replay lag (ms)")
        ax.legend()
    elif item in ("deploy", "fault"):
        series = {k: v for k, v in f.items() if isinstance(v, dict) and "timeline" in v}
        for name, s in series.items():
            p99 = s["timeline"]["p99_ms"]
            pts = [(i, v) for i, v in enumerate(p99) if v is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
        ax.set_yscale("log")
        ax.set_xlabel("second of the load (scheduled)")
        ax.set_ylabel("p99 of the second (ms)")
        ax.legend()
    else:
        plt.close(fig)
        return None
    ax.set_title(f"{item} ({data['commit']})")
    fig.tight_layout()
    path = RESULTS.parent / f"suite-{item}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("items", nargs="*", metavar="ITEM", help=f"some of: {' '.join(ITEMS)}")
    p.add_argument(
        "--rederive",
        metavar="ITEM",
        help="re-derive ITEM's targets from what it measured (converge, scaling)",
    )
    args = p.parse_args(argv)
    if args.rederive:
        rederive(args.rederive)
        return 0
    items = args.items or ITEMS
    unknown = [i for i in items if i not in ITEMS]
    if unknown:
        p.error(f"unknown item(s) {' '.join(unknown)}: choose from {' '.join(ITEMS)}")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    functions = {name: globals()[f"item_{name}"] for name in ITEMS}
    failed = []
    for item in items:
        started = time.time()
        # One item's failure must not cost the others' measurements (a full run is over an
        # hour): it is reported, the run goes on, and the exit status says so at the end.
        # SystemExit too: a failed playbook or deploy inside an item raises it with its log.
        try:
            data = functions[item]()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported, the run fails at the end
            print(f"{item}: FAILED after {time.time() - started:.0f} s: {exc!r}", flush=True)
            failed.append(item)
            continue
        data.update(
            {
                "item": item,
                "commit": git_commit(ROOT),
                "command": f"make bench ITEMS={item}",
                "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
                "seconds": round(time.time() - started),
            }
        )
        (RESULTS / f"suite-{item}.json").write_text(
            json.dumps(data, indent=1, sort_keys=True) + "\n"
        )
        plot(item, data)
        for t in data["targets"]:
            verdict = "met" if t["met"] else "MISSED"
            print(
                f"  target {t['name']}: {t['measured']}{t['unit']} {t['op']} {t['goal']} {verdict}"
            )
    if failed:
        print(f"bench: item(s) failed: {' '.join(failed)}; re-run with `make bench ITEMS='...'`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
