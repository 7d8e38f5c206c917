"""Every worker host: its worker units run as configured, stop warm, and only one host runs beat."""

import pytest
from fftest import exposure

testinfra_hosts = ["ff-celery-w1", "ff-celery-w2"]

POOLS = {
    "prefork": "celery.concurrency.prefork:TaskPool",
    "threads": "celery.concurrency.thread:TaskPool",
    "solo": "celery.concurrency.solo:TaskPool",
}


def configured_workers(host):
    return host.ansible.get_variables()["celery_workers"]


def test_every_configured_worker_runs_and_answers(host, workers):
    for worker in configured_workers(host):
        unit = host.service(f"celery-worker@{worker['name']}")
        assert unit.is_running, workers.journal(f"celery-worker@{worker['name']}")
        assert unit.is_enabled
        node = f"{worker['name']}@{workers.nodename}"
        assert workers.inspect("ping", node) == {"ok": "pong"}


def test_workers_consume_their_queues_with_their_pool(host, workers):
    for worker in configured_workers(host):
        node = f"{worker['name']}@{workers.nodename}"
        queues = sorted(q["name"] for q in workers.inspect("active_queues", node))
        assert queues == sorted(worker["queues"])
        pool = workers.inspect("stats", node)["pool"]
        assert pool["implementation"] == POOLS[worker["pool"]]
        assert pool["max-concurrency"] == worker["concurrency"]
        if worker["pool"] == "prefork":
            assert len(pool["processes"]) == worker["concurrency"]
            assert pool["max-tasks-per-child"] == (worker.get("max_tasks_per_child") or "N/A")


def test_running_workers_use_the_no_loss_settings(host, workers):
    """The configuration the running worker reports, not the files on disk."""
    hv = host.ansible.get_variables()
    for worker in configured_workers(host):
        conf = workers.inspect("conf", f"{worker['name']}@{workers.nodename}")
        assert conf["task_acks_late"] is True
        assert conf["task_reject_on_worker_lost"] is True
        assert conf["worker_prefetch_multiplier"] == 1
        assert conf["task_time_limit"] == hv["celery_task_time_limit"]
        assert conf["task_soft_time_limit"] == hv["celery_task_soft_time_limit"]
        visibility = conf["broker_transport_options"]["visibility_timeout"]
        assert visibility == hv["celery_visibility_timeout"]
        assert visibility > conf["task_time_limit"]


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ("KillSignal", "15"),
        ("KillMode", "mixed"),
        ("Restart", "on-failure"),
        ("User", "flaskfleet"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        # As gunicorn's: the shared sandbox (flaskfleet_systemd_sandbox).
        ("MemoryDenyWriteExecute", "yes"),
        ("PrivateUsers", "yes"),
        ("RemoveIPC", "yes"),
        ("ProcSubset", "pid"),
    ],
)
def test_worker_units_stop_warm_and_are_sandboxed(host, prop, expected):
    for worker in configured_workers(host):
        props = host.service(f"celery-worker@{worker['name']}").systemd_properties
        assert props[prop] == expected, (worker["name"], prop, props[prop])


def test_worker_and_beat_units_rate_like_gunicorns(host):
    units = [f"celery-worker@{worker['name']}.service" for worker in configured_workers(host)]
    if host.ansible.get_variables().get("celery_beat", False):
        units.append("celery-beat.service")
    for unit in units:
        assert exposure(host, unit) < 3.0, unit
        # ~@resources: the sandbox denies e.g. setpriority (renice) inside the unit.
        props = host.service(unit[: -len(".service")]).systemd_properties
        assert "setpriority" not in props["SystemCallFilter"].split(), unit


def test_worker_processes_hold_no_capabilities(host):
    for worker in configured_workers(host):
        unit = f"celery-worker@{worker['name']}"
        ps = host.check_output("ps -e -o pid= -o unit=")
        procs = [p for p, u in (ln.split() for ln in ps.splitlines()) if u == f"{unit}.service"]
        assert procs, unit
        for pid in procs:
            status = host.file(f"/proc/{pid}/status").content_string
            caps = dict(line.split(":\t") for line in status.splitlines() if line.startswith("Cap"))
            assert caps["CapBnd"] == caps["CapEff"] == caps["CapPrm"] == "0000000000000000", (
                unit,
                pid,
                caps,
            )


def test_stop_timeout_covers_the_longest_task(host):
    limit = host.ansible.get_variables()["celery_task_time_limit"]
    for worker in configured_workers(host):
        unit = f"celery-worker@{worker['name']}"
        span = host.service(unit).systemd_properties["TimeoutStopUSec"]  # e.g. "5min 30s"
        out = host.run("systemd-analyze timespan %s", span)
        usec = next(ln for ln in out.stdout.splitlines() if "μs:" in ln).split(":")[1]
        assert int(usec) / 1e6 >= limit, (unit, span)


def test_the_worker_cannot_write_its_code_or_system(host):
    worker = configured_workers(host)[0]["name"]
    pid = host.service(f"celery-worker@{worker}").systemd_properties["MainPID"]
    # Even root, inside the worker's mount namespace, meets read-only mounts.
    for path in ("/opt/flaskfleet/current/venv/x", "/etc/x", "/usr/local/x", "/root/x"):
        out = host.run(f"nsenter -t {pid} -m -- touch {path}")
        if out.rc == 0:
            host.run(f"rm -f {path}")
        assert out.rc != 0, f"{path} is writable inside celery-worker@{worker}"


def test_beat_runs_on_the_chosen_host_only(host, workers):
    beat = host.service("celery-beat")
    if host.ansible.get_variables().get("celery_beat", False):
        assert beat.is_running, workers.journal("celery-beat")
        assert beat.is_enabled
        # The schedule persists in beat's StateDirectory.
        assert host.run("ls /var/lib/celery-beat/celerybeat-schedule*").rc == 0
    else:
        assert not beat.is_running
        assert not host.file("/etc/systemd/system/celery-beat.service").exists


def test_workers_unit_list_matches_the_inventory(host):
    out = host.run("systemctl list-units 'celery-worker@*' --state=running --plain --no-legend")
    running = sorted(line.split()[0] for line in out.stdout.splitlines())
    expected = sorted(f"celery-worker@{w['name']}.service" for w in configured_workers(host))
    assert running == expected
