"""Tasks through the real broker: results, beat, warm shutdown, and redelivery after kill -9.

Runs from ff-celery-w1, whose `jobs` worker (prefork, concurrency 1) is the only consumer
of the `jobs` queue: a job sent there runs in celery-worker@jobs on this host.
"""

import uuid

import pytest
from conftest import wait_for

testinfra_hosts = ["ff-celery-w1"]

SLOW = "flaskfleet_app.tasks.slow_count"
JOBS_UNIT = "celery-worker@jobs"


def new_key(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("queue", ["celery", "jobs"])
def test_a_task_sent_through_the_broker_runs_and_its_result_is_visible(workers, db, queue):
    key = new_key(f"result-{queue}")
    sent = workers.send(SLOW, {"key": key, "seconds": 0.2}, queue=queue, wait=60)
    assert sent["result"]["key"] == key
    assert sent["result"]["applied"] is True
    assert db.job(key) == {"executions": 1, "finished": 1, "effects": 1, "last_finished": True}
    if queue == "jobs":  # only this host's jobs worker consumes `jobs`
        hostname, pid = db.query(f"select hostname from job_effects where key = '{key}'")[0][
            0
        ].rsplit(":", 1)
        assert hostname == workers.nodename
        # The task ran in a process of celery-worker@jobs (or one it has since recycled).
        owner = workers.host.run(f"cat /proc/{pid}/cgroup")
        assert owner.rc != 0 or f"{JOBS_UNIT}.service" in owner.stdout


def test_beat_fires_the_periodic_task_from_one_host(workers, db):
    (last,) = db.query("select coalesce(max(id), 0) from beat_heartbeats")[0]
    interval = float(workers.vars["celery_environment"]["FLASKFLEET_BEAT_INTERVAL"])
    query = f"select scheduled_by, executed_by from beat_heartbeats where id > {last}"
    rows = wait_for(
        lambda: (r := db.query(query)) and len(r) >= 3 and r,
        timeout=interval * 3 + 30,
        what="three new heartbeat rows",
    )
    schedulers = {scheduled.rsplit(":", 1)[0] for scheduled, _ in rows}
    assert schedulers == {"ff-celery-w2"}  # the host with celery_beat: true, not the first worker


def test_stop_lets_the_running_task_finish_first(workers, db):
    host = workers.host
    key = new_key("warm")
    workers.send(SLOW, {"key": key, "seconds": 6}, queue="jobs")
    try:
        wait_for(lambda: db.job(key)["executions"] == 1, 30, "the job to start")
        assert db.job(key)["effects"] == 0  # still running when the stop begins
        stop = host.run(f"systemctl stop {JOBS_UNIT}")  # returns once the unit is down
        assert stop.rc == 0, stop.stderr
        # By then the task finished and applied its effect: warm shutdown, no SIGKILL.
        status = db.job(key)
        assert (status["executions"], status["finished"], status["effects"]) == (1, 1, 1)
        props = host.service(JOBS_UNIT).systemd_properties
        assert props["ActiveState"] == "inactive"
        assert props["Result"] == "success", workers.journal(JOBS_UNIT)
    finally:
        host.run(f"systemctl start {JOBS_UNIT}")
    assert db.job(key)["executions"] == 1  # acknowledged: never delivered again


@pytest.mark.parametrize("whom", ["all", "main"])
def test_a_worker_killed_mid_task_gets_the_task_redelivered_and_applied_once(workers, db, whom):
    host = workers.host
    key = new_key(f"kill-{whom}")
    restarts = int(host.service(JOBS_UNIT).systemd_properties["NRestarts"])
    workers.send(SLOW, {"key": key, "seconds": 4}, queue="jobs")
    wait_for(lambda: db.job(key)["executions"] == 1, 30, "the job to start")
    kill = host.run(f"systemctl kill --kill-whom={whom} --signal=SIGKILL {JOBS_UNIT}")
    assert kill.rc == 0, kill.stderr
    if whom == "all":
        assert db.job(key)["effects"] == 0  # killed before its effect
    # systemd restarts the worker (Restart=on-failure)...
    wait_for(
        lambda: (
            int(host.service(JOBS_UNIT).systemd_properties["NRestarts"]) > restarts
            and host.service(JOBS_UNIT).is_running
        ),
        int(workers.vars["celery_stop_timeout"]) + 30,
        "systemd to restart the killed worker",
        diagnose=lambda: workers.journal(JOBS_UNIT, 40),
    )
    # ...and the unacknowledged message comes back after the visibility timeout.
    visibility = int(workers.vars["celery_visibility_timeout"])
    status = wait_for(
        lambda: (s := db.job(key))["executions"] >= 2 and s["last_finished"] and s,
        visibility + 60,
        "the job to be redelivered and finish",
        diagnose=lambda: workers.journal(JOBS_UNIT, 40),
    )
    assert status["executions"] == 2, status  # started twice
    assert status["effects"] == 1, status  # applied once
    if whom == "all":
        assert status["finished"] == 1, status  # the killed run never finished
