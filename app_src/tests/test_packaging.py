"""The release artefacts: a wheelhouse that installs offline into a fresh venv, whose
console script, migrations, templates and static files work; and gunicorn serving the WSGI
object with multiprocess Prometheus metrics."""

import re
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
from servers import free_port, run, venv_bin, wait_for

from flaskfleet_app import metrics
from flaskfleet_app.metrics import child_exit

APP_SRC = Path(__file__).resolve().parent.parent


@pytest.mark.wheel
@pytest.mark.timeout(1200)  # builds every wheel, then installs them into a fresh venv
def test_wheelhouse_installs_offline_and_works(tmp_path, cli_env, pg):
    wh = tmp_path / "wh"
    r = run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", str(APP_SRC), "-w", str(wh)],
        cli_env(),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next(wh.glob("flaskfleet_app-1.0.0-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "flaskfleet_app/static/style.css",
        "flaskfleet_app/templates/index.html",
        "flaskfleet_app/migrations/env.py",
        "flaskfleet_app/migrations/script.py.mako",
        "flaskfleet_app/migrations/versions/0001_initial.py",
        "flaskfleet_app/migrations/versions/0002_job_failures.py",
    ):
        assert needed in names
    assert not any("tests/" in n for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = cli_env(PIP_CONFIG_FILE="/dev/null", PIP_NO_INDEX="1")
    r = run(
        [str(venv / "bin/pip"), "install", "--quiet", "--no-index", "--find-links", str(wh),
         "flaskfleet-app"],
        env,
        timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]

    r = run([str(venv / "bin/flaskfleet-app"), "--version"], env)
    assert r.stdout.strip() == "1.0.0"
    r = run([str(venv / "bin/flaskfleet-app"), "check-config"], env)
    assert r.returncode == 0, r.stderr

    pg.drop_database("flaskfleet_wheel")
    pg.create_database("flaskfleet_wheel", "app")
    try:
        url = pg.url("app", "app-db-pw-123", "flaskfleet_wheel")
        mig_env = cli_env(FLASKFLEET_DATABASE_URL=url)
        for expected in ("migrated from empty to 0002", "already at revision 0002"):
            r = run([str(venv / "bin/flaskfleet-app"), "migrate"], mig_env)
            assert r.returncode == 0, r.stderr
            assert expected in r.stdout
    finally:
        pg.drop_database("flaskfleet_wheel")

    probe = (
        "from flaskfleet_app.wsgi import app; from flaskfleet_app.celery_app import celery; "
        "c = app.test_client(); print(c.get('/version').json['version'], "
        "c.get('/static/style.css').status_code, celery.conf.task_acks_late)"
    )
    r = run([str(venv / "bin/python"), "-c", probe], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1.0.0", "200", "True"]


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - 127.0.0.1 only
        return resp.status, dict(resp.headers), resp.read().decode()


def test_gunicorn_serves_wsgi_with_multiprocess_metrics(tmp_path, cli_env, migrated):
    port = free_port()
    mp = tmp_path / "prom"
    mp.mkdir()
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "from flaskfleet_app.metrics import child_exit  # noqa: F401\n"
        f"bind = '127.0.0.1:{port}'\nworkers = 2\n"
    )
    env = cli_env(PROMETHEUS_MULTIPROC_DIR=str(mp), FLASKFLEET_INSTANCE=f"app1:{port}")
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [venv_bin("gunicorn"), "-c", str(conf), "flaskfleet_app.wsgi:app"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up():
            try:
                return get(f"{base}/healthz")[0] == 200
            except OSError:
                return False

        wait_for(up, 30, what="gunicorn")
        for _ in range(20):
            status, headers, body = get(f"{base}/healthz")
            assert status == 200 and headers["X-Served-By"] == f"app1:{port}"
        status, headers, text = get(f"{base}/metrics")
        assert status == 200
        served = re.findall(
            r'^flaskfleet_http_requests_total\{endpoint="/healthz",method="GET",status="200"\} '
            r"(\S+)$",
            text,
            re.M,
        )
        # Aggregated over both workers' files: every request counted exactly once.
        assert [float(v) for v in served] == [21.0], text[-2000:]
        assert any(mp.iterdir())
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


class DeadWorker:
    pid = 12345


def live_gauge_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_child_exit_hook_drops_the_dead_workers_live_gauges(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in (
        "gauge_livesum_12345.db",  # the dead worker's live gauges: removed
        "gauge_liveall_12345.db",
        "counter_12345.db",  # its counters still count: kept
        "gauge_livesum_999.db",  # another worker: kept
    ):
        (tmp_path / name).write_bytes(b"")
    child_exit(None, DeadWorker())
    assert live_gauge_files(tmp_path) == ["counter_12345.db", "gauge_livesum_999.db"]


def test_child_exit_hook_without_multiproc(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    calls = []
    monkeypatch.setattr(
        metrics.multiprocess, "mark_process_dead", lambda *a, **kw: calls.append((a, kw))
    )
    child_exit(None, DeadWorker())  # single-process metrics: nothing to clean up
    assert calls == []
