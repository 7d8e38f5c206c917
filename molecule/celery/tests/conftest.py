"""Scenario helpers: run code in the workers' own environment, read the database.
(Host lookups, polls and journals come from molecule/_shared/fftest.py.)"""

import json

import pytest
from fftest import journal, remote

DATA_HOST = "ff-celery-data"


class Workers:
    """The application as the workers of one host see it (same EnvironmentFiles, same user)."""

    def __init__(self, host):
        self.host = host
        self.vars = host.ansible.get_variables()
        app = self.vars["flaskfleet_app_name"]
        self.app = app
        self.venv = f"/opt/{app}/current/venv/bin"
        self.env_files = [f"/opt/{app}/current/{app}.env", f"/etc/{app}/celery/celery.env"]
        self.nodename = host.run("uname -n").stdout.strip()

    def run(self, *argv):
        props = [f"--property=EnvironmentFile={f}" for f in self.env_files]
        cmd = [
            "systemd-run", "--wait", "--pipe", "--quiet", "--collect",
            f"--property=User={self.app}", f"--property=Group={self.app}", *props, *argv,
        ]  # fmt: skip
        return self.host.run(" ".join(["%s"] * len(cmd)), *cmd)

    def python(self, code):
        out = self.run(f"{self.venv}/python", "-c", code)
        assert out.rc == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def send(self, task, kwargs, queue=None, wait=None):
        """Send a task through the broker; with wait, return its result from the backend."""
        code = (
            "import json\n"
            "from flaskfleet_app.celery_app import celery\n"
            f"r = celery.send_task({task!r}, kwargs={kwargs!r}, queue={queue!r})\n"
            f"result = r.get(timeout={wait}) if {wait!r} else None\n"
            "print(json.dumps({'id': r.id, 'result': result}))\n"
        )
        return self.python(code)

    def inspect(self, command, node):
        app = self.vars.get("celery_app", "flaskfleet_app.celery_app")
        out = self.run(
            f"{self.venv}/celery", f"--app={app}",
            "inspect", command, "--json", "--timeout=10", f"--destination={node}",
        )  # fmt: skip
        assert out.rc == 0, out.stdout + out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])[node]

    def journal(self, unit, lines=80):
        return journal(self.host, unit, lines)

    def unit_pids(self, unit):
        """PIDs of the processes in a unit (the worker and its pool children)."""
        ps = self.host.check_output("ps -e -o pid= -o unit=")
        return {pid for pid, owner in (ln.split() for ln in ps.splitlines()) if owner == unit}


class Database:
    """psql as postgres on the data host: an observer independent of the app."""

    def __init__(self):
        self.host = remote(DATA_HOST)
        self.name = self.host.ansible.get_variables()["flaskfleet_db_name"]

    def query(self, sql):
        out = self.host.run("runuser -u postgres -- psql -X -d %s -tA -F '|' -c %s", self.name, sql)
        assert out.rc == 0, out.stderr
        return [line.split("|") for line in out.stdout.splitlines() if line]

    def executions(self, key):
        """[(hostname, pid, finished_at as epoch seconds or None)] of a slow_count job's
        executions, oldest first."""
        rows = self.query(
            "select hostname, pid, coalesce(extract(epoch from finished_at)::text, '') "
            f"from job_executions where key = '{key}' order by id"
        )
        return [(h.rsplit(":", 1)[0], p, float(f) if f else None) for h, p, f in rows]

    def job(self, key):
        """Executions of a slow_count job and whether its effect was applied (once at most)."""
        rows = self.query(
            "select count(*), count(finished_at), "
            f"(select count(*) from job_effects where key = '{key}'), "
            "coalesce(bool_and(finished_at is not null) filter (where id = "
            f"(select max(id) from job_executions where key = '{key}')), false) "
            f"from job_executions where key = '{key}'"
        )
        executions, finished, effects, last = rows[0]
        return {
            "executions": int(executions),
            "finished": int(finished),
            "effects": int(effects),
            "last_finished": last == "t",
        }


@pytest.fixture(scope="module")
def db():
    return Database()


@pytest.fixture()
def workers(host):
    return Workers(host)
