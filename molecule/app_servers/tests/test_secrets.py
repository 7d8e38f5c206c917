"""No secret on a command line or in a journal (issue #18).

prepare.yml started a sampler on every host that recorded each distinct command line
(/proc/*/cmdline, what `ps -eww -o args` shows) every 0.05 s through prepare, converge,
idempotence, the check run and side_effect's deploy and rollback: every way this scenario
runs the app_release and gunicorn roles (import check, config check, migration). None of
the scenario's generated secrets may be in what it saw, nor anywhere in a host's journal
(sudo logs the command it runs, Ansible modules log their arguments, units their output).

The secrets are compared on the controller: a secret sent to a host to grep for would
itself be on a command line and in the journal.
"""

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from fftest import inventory

testinfra_hosts = ["ff-appsrv-app1", "ff-appsrv-data1"]

SAMPLES = "/var/tmp/ff-ps-sampler.log"
# How molecule.yml generates a secret: the password lookup into the ephemeral directory.
SECRET_FILE = re.compile(r"MOLECULE_EPHEMERAL_DIRECTORY'\)\s*~\s*'/([^']+)'")


class Secrets(dict):
    """{name: value}; its repr names them only, so no failure report prints a value."""

    def __repr__(self):
        return f"<secrets {', '.join(self)}>"


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


@pytest.fixture(scope="module")
def secrets():
    """{file name: value} of every secret the scenario's inventory generates."""
    names = set()
    for path in Path(inventory()).parent.glob("*_vars/*"):
        for text in _strings(yaml.safe_load(path.read_text())):
            names.update(SECRET_FILE.findall(text))
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    found = Secrets((name, (ephemeral / name).read_text().split()[0]) for name in sorted(names))
    # The database password, both Redis passwords and the secret key, as converge used them.
    expected = {"db_pw", "redis_cache_pw", "redis_broker_pw", "secret_key"}
    assert expected <= found.keys(), sorted(found)
    assert all(len(value) >= 16 for value in found.values()), "a secret shorter than 16 characters"
    return found


def _leaks(text, secrets):
    """Lines of text holding a secret, each secret replaced by its name."""
    found = []
    for line in text.splitlines():
        hits = [name for name, value in secrets.items() if value in line]
        if hits:
            for name in hits:
                line = line.replace(secrets[name], f"<{name}>")
            found.append(line[:600])
    return found


@pytest.fixture(scope="module")
def samples(host):
    out = host.run(f"cat {SAMPLES}")
    assert out.rc == 0, out.stderr
    return out.stdout


# What each host's sampler must have seen for its observation to count.
SEEN = {
    "ff-appsrv-app1": [
        # the gunicorn instances, and the commands that run with the app's environment,
        # caught while they ran (import check, config check, migration)
        r"/bin/gunicorn --config /etc/flaskfleet/gunicorn\.conf\.py ",
        r"from gunicorn\.util import import_app",
        r"flaskfleet-app check-config",
        r"flaskfleet-app migrate",
    ],
    "ff-appsrv-data1": [r"postgres: 15/main: ", r"redis-server .*:6380"],
}


def test_the_sampler_saw_the_run(host, samples):
    # A real observation: Ansible's own remote commands (sudo around each module) ...
    assert len(re.findall(r"BECOME-SUCCESS-\w+", samples)) >= 5, samples[-3000:]
    # ... and the processes of the host's services.
    missing = [p for p in SEEN[host.backend.get_hostname()] if not re.search(p, samples)]
    assert not missing, f"the sampler never saw {missing}:\n{samples[-3000:]}"


def test_no_secret_on_any_command_line(samples, secrets):
    leaks = _leaks(samples, secrets)
    if leaks:
        pytest.fail("secrets on command lines:\n" + "\n".join(leaks), pytrace=False)


def _field(entry, name):
    value = entry.get(name) or ""
    if isinstance(value, list):  # a binary field: journalctl gives its bytes
        value = bytes(value).decode(errors="replace")
    return value


def test_no_secret_in_the_journal(host, secrets):
    # Every entry since boot: its message and the command line of the process that logged it.
    fields = "MESSAGE,_CMDLINE,SYSLOG_IDENTIFIER"
    out = host.run(f"journalctl --no-pager --output=json --output-fields={fields}")
    assert out.rc == 0, out.stderr
    entries = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    text = "\n".join(
        f"{_field(e, 'SYSLOG_IDENTIFIER')}: {_field(e, 'MESSAGE')} (by: {_field(e, '_CMDLINE')})"
        for e in entries
    )
    assert "COMMAND=/bin/sh -c 'echo BECOME-SUCCESS-" in text  # sudo's entries are in it
    assert "Invoked with" in text  # and the modules' arguments
    leaks = _leaks(text, secrets)
    if leaks:
        pytest.fail("secrets in the journal:\n" + "\n".join(leaks), pytrace=False)
