"""Tasks through the real broker: results, beat, warm shutdown, and redelivery after kill -9.

Runs from ff-celery-w1, whose `jobs` worker (prefork, concurrency 1) is the only consumer
of the `jobs` queue: a job sent there runs in celery-worker@jobs on this host.
"""

import uuid

import pytest
from fftest import wait_for

testinfra_hosts = ["ff-celery-w1"]

SLOW = "flaskfleet_app.tasks.slow_count"
JOBS_UNIT = "celery-worker@jobs"
JOBS_SERVICE = f"{JOBS_UNIT}.service"  # as ps names the unit of a process
START_TIMEOUT = 60  # seconds for a sent job to start (an execution row appears)


@pytest.fixture()
def job_seconds(workers):
    """How long the jobs of the shutdown tests run (molecule.yml): long enough that a job
    is still running while the test acts on it, on 2 busy cores."""
    return int(workers.vars["molecule_job_seconds"])


def start_job(workers, db, key, seconds):
    """Send a slow job to the jobs worker and wait until it runs; return its PID, which
    must belong to celery-worker@jobs on this host."""
    workers.send(SLOW, {"key": key, "seconds": seconds}, queue="jobs")
    ((hostname, pid, finished),) = wait_for(
        lambda: db.executions(key),
        START_TIMEOUT,
        f"job {key} to start",
        diagnose=lambda: workers.journal(JOBS_UNIT, 40),
    )
    assert hostname == workers.nodename
    assert finished is None, f"job {key} already finished: raise molecule_job_seconds"
    assert pid in workers.unit_pids(JOBS_SERVICE), f"PID {pid} is not in {JOBS_UNIT}"
    return pid


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
        ((hostname, pid, _),) = db.executions(key)
        assert hostname == workers.nodename
        # It ran in a pool process of celery-worker@jobs, which is still there: the jobs
        # worker recycles no children (no max_tasks_per_child) and has not restarted yet.
        assert pid in workers.unit_pids(JOBS_SERVICE), f"PID {pid} is not in {JOBS_UNIT}"


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


def test_stop_lets_the_running_task_finish_first(workers, db, job_seconds):
    host = workers.host
    key = new_key("warm")
    start_job(workers, db, key, job_seconds)
    try:
        # The containers share one kernel clock: the worker's finished_at and this are
        # comparable.
        stop_began = float(host.check_output("date +%s.%N"))
        stop = host.run(f"systemctl stop {JOBS_UNIT}")  # returns once the unit is down
        assert stop.rc == 0, stop.stderr
        # By then the task finished and applied its effect: warm shutdown, no SIGKILL.
        status = db.job(key)
        assert (status["executions"], status["finished"], status["effects"]) == (1, 1, 1)
        # ...and it finished after the stop began: it was running when the stop came.
        ((_, _, finished_at),) = db.executions(key)
        assert finished_at > stop_began, (finished_at, stop_began, "raise molecule_job_seconds")
        props = host.service(JOBS_UNIT).systemd_properties
        assert props["ActiveState"] == "inactive"
        assert props["Result"] == "success", workers.journal(JOBS_UNIT)
    finally:
        host.run(f"systemctl start {JOBS_UNIT}")
    assert db.job(key)["executions"] == 1  # acknowledged: never delivered again


@pytest.mark.parametrize("whom", ["all", "main"])
def test_a_worker_killed_mid_task_gets_the_task_redelivered_and_applied_once(
    workers, db, whom, job_seconds
):
    host = workers.host
    key = new_key(f"kill-{whom}")
    restarts = int(host.service(JOBS_UNIT).systemd_properties["NRestarts"])
    pid = start_job(workers, db, key, job_seconds)
    kill = host.run(f"systemctl kill --kill-whom={whom} --signal=SIGKILL {JOBS_UNIT}")
    assert kill.rc == 0, kill.stderr
    if whom == "all":
        # The pool process running the job died with it, before its effect.
        wait_for(lambda: pid not in workers.unit_pids(JOBS_SERVICE), 30, f"PID {pid} to die")
        assert db.job(key)["effects"] == 0
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
        visibility + job_seconds + 60,
        "the job to be redelivered and finish",
        diagnose=lambda: workers.journal(JOBS_UNIT, 40),
    )
    assert status["executions"] == 2, status  # started twice
    assert status["effects"] == 1, status  # applied once
    if whom == "all":
        assert status["finished"] == 1, status  # the killed run never finished
