"""The rolling procedure's drain path: the role's upstream entry point (tasks_from:
upstream.yml), run through playbooks/tasks/lb_state.yml as roll_batch.yml runs it.

Drain and undrain change only the upstream, with a reload (same master), and are in
force when the play returns; the same request again changes nothing and does not
reload; check mode reports the change and writes nothing; a candidate nginx rejects
fails the play and leaves the live files and the running nginx untouched. They run in
order (after test_reconverge.py) and the last one puts every server back in service.
"""

import json
import os
import subprocess

import pytest
from conftest import INVENTORY, LB, send

testinfra_hosts = [LB]

PLAYBOOK = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "lb_state.yml")
UPSTREAM_CONF = "/etc/nginx/flaskfleet/upstream.conf"
UPSTREAM_JSON = "/etc/nginx/flaskfleet/upstream.json"
BASE = "http://127.0.0.1"


def lb_state(*args):
    result = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, *args, PLAYBOOK],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return result, result.stdout + result.stderr


def master_pid(host):
    return host.run("systemctl show -p MainPID --value nginx").stdout.strip()


def workers(host):
    return set(host.run("pgrep -P %s", master_pid(host)).stdout.split())


def changed_count(output):
    """Sum of changed= over the play recap."""
    total = 0
    for line in output.splitlines():
        if " changed=" in line and " ok=" in line:
            total += int(line.split(" changed=")[1].split()[0])
    return total


def served(host, count):
    results = send(host, f"{BASE}/", count=count)
    assert {status for status, _ in results} == {200}
    return {served_by for _, served_by in results}


@pytest.fixture(scope="module")
def drained(host, instances):
    """Drain the first app server with the entry point; return it and nginx's state before."""
    name = instances[0].split(":")[0]
    pid, old = master_pid(host), workers(host)
    result, output = lb_state("-e", json.dumps({"lb_drain": [name]}))
    assert result.returncode == 0, output[-3000:]
    # In force when the play returns: every worker of the previous configuration is gone.
    after = workers(host)
    return {"name": name, "pid": pid, "old": old, "after": after, "output": output}


def test_drain_reloads_and_is_complete_when_the_play_returns(host, drained):
    assert changed_count(drained["output"]) == 1, drained["output"][-3000:]
    assert master_pid(host) == drained["pid"]  # reloaded, not restarted
    assert not drained["after"] & drained["old"]


def test_a_drained_host_takes_no_request_at_once(host, instances, drained):
    name = drained["name"]
    lines = host.file(UPSTREAM_CONF).content_string.splitlines()
    mine = [line for line in lines if line.endswith(f"# {name}")]
    assert mine and all(line.endswith(f" down;  # {name}") for line in mine)
    doc = json.loads(host.file(UPSTREAM_JSON).content_string)
    assert {s["host"] for s in doc["servers"] if s["drained"]} == {name}
    assert not any(s.startswith(f"{name}:") for s in served(host, 3 * len(instances)))


def test_the_same_drain_again_changes_nothing_and_does_not_reload(host, drained):
    before = host.file(UPSTREAM_CONF).sha256sum
    old = workers(host)
    result, output = lb_state("-e", json.dumps({"lb_drain": [drained["name"]]}))
    assert result.returncode == 0, output[-3000:]
    assert changed_count(output) == 0, output[-3000:]
    assert host.file(UPSTREAM_CONF).sha256sum == before
    assert workers(host) == old


def test_check_mode_reports_the_undrain_and_changes_nothing(host, drained):
    conf, doc = host.file(UPSTREAM_CONF).sha256sum, host.file(UPSTREAM_JSON).sha256sum
    old = workers(host)
    result, output = lb_state("--check", "-e", json.dumps({"lb_undrain": [drained["name"]]}))
    assert result.returncode == 0, output[-3000:]
    assert changed_count(output) == 1, output[-3000:]
    assert host.file(UPSTREAM_CONF).sha256sum == conf
    assert host.file(UPSTREAM_JSON).sha256sum == doc
    assert workers(host) == old


def test_a_rejected_candidate_touches_nothing(host, drained):
    # A document whose settings nginx rejects (an invalid fail_timeout) stands in for
    # any candidate nginx -t refuses; the live upstream.conf stays valid.
    saved = host.file(UPSTREAM_JSON).content_string
    doc = json.loads(saved)
    doc["settings"]["fail_timeout"] = "not-a-time"
    host.run("cp %s %s.saved", UPSTREAM_JSON, UPSTREAM_JSON)
    assert host.run("printf '%%s\\n' %s > %s", json.dumps(doc), UPSTREAM_JSON).rc == 0
    try:
        conf = host.file(UPSTREAM_CONF).sha256sum
        pid, old = master_pid(host), workers(host)
        result, output = lb_state("-e", json.dumps({"lb_undrain": [drained["name"]]}))
        assert result.returncode != 0, output[-3000:]
        assert "nginx rejected the new configuration" in output, output[-3000:]
        assert "/etc/nginx/flaskfleet/upstream.conf" in output, output[-3000:]
        assert host.file(UPSTREAM_CONF).sha256sum == conf
        assert master_pid(host) == pid
        assert workers(host) == old
        assert {status for status, _ in send(host, f"{BASE}/", count=4)} == {200}
    finally:
        host.run("mv %s.saved %s", UPSTREAM_JSON, UPSTREAM_JSON)


def test_undrain_puts_the_host_back(host, instances, drained):
    old = workers(host)
    result, output = lb_state("-e", json.dumps({"lb_undrain": [drained["name"]]}))
    assert result.returncode == 0, output[-3000:]
    assert changed_count(output) == 1, output[-3000:]
    assert not workers(host) & old
    assert " down;" not in host.file(UPSTREAM_CONF).content_string
    assert served(host, 4 * len(instances)) == set(instances)
