"""Real Celery worker and beat subprocesses (`celery -A flaskfleet_app.celery_app ...`)
against the test broker: reports, slow jobs, beat heartbeats, warm shutdown, and redelivery
after kill -9 (acks_late + reject_on_worker_lost + visibility timeout)."""

import os
import signal
import socket
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from servers import venv_bin, wait_for

pytestmark = pytest.mark.worker


class Proc:
    """A celery worker/beat in its own process group, logging to a file."""

    def __init__(self, args, env, ready_marker):
        self.log = Path(tempfile.mkstemp(prefix="ff-celery-", suffix=".log")[1])
        self.fh = self.log.open("w")
        self.proc = subprocess.Popen(
            [venv_bin("celery"), "-A", "flaskfleet_app.celery_app", *args],
            env=env,
            stdout=self.fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=tempfile.gettempdir(),
        )
        wait_for(
            lambda: ready_marker in self.text() or self.proc.poll() is not None,
            30,
            what=f"celery {args[0]} to start",
        )
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig) if sig == signal.SIGKILL else self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.fh.close()
        return self.proc.returncode


def worker(env, name, concurrency=2):
    return Proc(
        ["worker", "-l", "INFO", "-c", str(concurrency), "-n", f"{name}@%h",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env,
        "ready.",
    )  # fmt: skip


@pytest.fixture(scope="module")
def celery_worker(cli_env, migrated):
    proc = worker(cli_env(), "main")
    yield proc
    proc.stop()


def test_report_built_by_real_worker(client, celery_worker):
    client.post("/api/articles", json={"title": "alpha beta", "body": "beta gamma gamma"})
    client.post("/api/articles", json={"title": "delta", "body": "gamma"})
    r = client.post("/api/reports")
    assert r.status_code == 202, r.json
    location = r.headers["Location"]
    assert location == f"/api/reports/{r.json['id']}"
    assert client.get(location).json["status"] in ("pending", "started", "success")
    status = wait_for(
        lambda: (s := client.get(location).json)["status"] in ("success", "failure") and s,
        30,
        what="the report",
    )
    assert status["status"] == "success", (status, celery_worker.text()[-3000:])
    assert status["attempts"] == 1
    assert status["result"]["articles"] == 2
    top = {w["word"]: w["count"] for w in status["result"]["top_words"]}
    assert top == {"gamma": 3, "beta": 2, "alpha": 1, "delta": 1}
    assert "flaskfleet_app.tasks.build_report" in celery_worker.text()


def test_slow_job_by_real_worker(client, celery_worker):
    r = client.post("/api/jobs", json={"key": "quick-1", "seconds": 0.3})
    assert r.status_code == 202 and r.headers["Location"] == "/api/jobs/quick-1"
    status = wait_for(
        lambda: (s := client.get("/api/jobs/quick-1").json)["applied"] and s, 30, what="job"
    )
    assert status["executions"] == 1 and status["effects"] == 1
    assert status["finished_executions"] == 1


def test_beat_schedules_refresh_stats(client, celery_worker, cli_env, tmp_path):
    beat = Proc(
        ["beat", "-l", "INFO", "-s", str(tmp_path / "schedule")],
        cli_env(FLASKFLEET_BEAT_INTERVAL="0.5"),
        "beat: Starting",
    )
    try:
        result = wait_for(
            lambda: (b := client.get("/api/beat").json)["count"] >= 2 and b, 30, what="beats"
        )
    finally:
        beat.stop()
    assert result["scheduler_hosts"] == [socket.gethostname()]
    assert all(h["executed_by"].startswith(socket.gethostname()) for h in result["heartbeats"])


def test_warm_shutdown_finishes_the_running_task(client, cli_env, broker_server, migrated):
    env = cli_env(FLASKFLEET_BROKER_URL=broker_server.url(3))
    proc = worker(env, "warm", concurrency=1)
    app_client = client.application.test_client()
    # The web app must publish to the same broker db as this worker.
    from flaskfleet_app.celeryconf import make_celery
    from flaskfleet_app.config import Settings

    ext = client.application.extensions["flaskfleet"]
    ext.celery = make_celery(Settings.from_env(env), producer=True)
    try:
        # Long enough that the job is still sleeping when SIGTERM arrives, even on 2 busy cores.
        assert app_client.post("/api/jobs", json={"key": "warm-1", "seconds": 6}).status_code == 202
        running = wait_for(
            lambda: (s := app_client.get("/api/jobs/warm-1").json)["executions"] == 1 and s, 20
        )
        sigterm_at = datetime.now(UTC)
        # Mid-run at SIGTERM: started, not finished, no effect yet (read before the signal).
        assert running["finished_executions"] == 0 and running["applied"] is False, running
        rc = proc.stop(signal.SIGTERM)  # warm shutdown: finish the task, then exit
    finally:
        proc.stop(signal.SIGKILL)
    assert rc == 0, proc.text()[-3000:]
    status = app_client.get("/api/jobs/warm-1").json
    assert status["executions"] == 1 and status["finished_executions"] == 1
    assert status["applied"] is True
    # The one execution finished after the signal: the worker waited for it.
    finished_at = datetime.fromisoformat(status["attempts"][0]["finished_at"])
    assert finished_at > sigterm_at, (status, sigterm_at.isoformat())


def test_kill9_redelivers_and_applies_once(client, cli_env, broker_server, migrated):
    env = cli_env(
        FLASKFLEET_BROKER_URL=broker_server.url(4),
        FLASKFLEET_TASK_TIME_LIMIT="3",
        FLASKFLEET_TASK_SOFT_TIME_LIMIT="3",
        FLASKFLEET_VISIBILITY_TIMEOUT="4",
    )
    from flaskfleet_app.celeryconf import make_celery
    from flaskfleet_app.config import Settings

    ext = client.application.extensions["flaskfleet"]
    ext.celery = make_celery(Settings.from_env(env), producer=True)
    first = worker(env, "doomed", concurrency=1)
    try:
        assert client.post("/api/jobs", json={"key": "k9", "seconds": 2}).status_code == 202
        wait_for(lambda: client.get("/api/jobs/k9").json["executions"] == 1, 20)
    finally:
        first.stop(signal.SIGKILL)  # the whole process group, mid-task: no ack was sent
    assert client.get("/api/jobs/k9").json["applied"] is False
    second = worker(env, "heir", concurrency=1)
    try:
        status = wait_for(
            lambda: (s := client.get("/api/jobs/k9").json)["applied"] and s,
            30,
            what="redelivery",
        )
    finally:
        second.stop()
    assert status["executions"] == 2, status
    assert status["effects"] == 1
    assert status["finished_executions"] == 1
