"""The app server: released offline, served by sandboxed systemd gunicorn instances.

Runs after side_effect.yml, which deployed release B and rolled back to A (the
version in app_src/pyproject.toml): A is live, B stays on disk for the next switch.
"""

import json
import os
import re
import tomllib
from pathlib import Path

import pytest
from fftest import wait_for

testinfra_hosts = ["ff-appsrv-app1"]

APP = "flaskfleet"
ROOT = f"/opt/{APP}"
PORTS = [8001, 8002]
PRIVATE_IP = "172.28.4.11"
RELEASE_B = "1.1.0"


def _release_a():
    project = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[3]))
    with open(project / "app_src" / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["version"]


VERSION_A = _release_a()


def _link(host, name):
    """The release a link points at: <version>-<content id>."""
    return host.file(f"{ROOT}/{name}").linked_to.rsplit("/", 1)[-1]


@pytest.fixture
def release_a(host):
    """Release A (the version in app_src/pyproject.toml), current after the rollback."""
    name = _link(host, "current")
    assert re.match(rf"^{re.escape(VERSION_A)}-[0-9a-f]{{12}}$", name), name
    return name


@pytest.fixture
def release_b(host):
    name = _link(host, "previous")
    assert re.match(rf"^{re.escape(RELEASE_B)}-[0-9a-f]{{12}}$", name), name
    return name


def _journal(host, port):
    return host.run(f"journalctl --no-pager -n 60 -u gunicorn@{port}.service").stdout


def _get(host, url):
    """(status, headers text, body) of a GET from the host itself."""
    out = host.run(f"curl -sS --max-time 10 -D - -o /tmp/body {url}; echo; cat /tmp/body")
    assert out.rc == 0, out.stderr
    head, _, body = out.stdout.partition("\r\n\r\n")
    status = int(head.split()[1])
    return status, head, body.strip()


@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("address", ["127.0.0.1", PRIVATE_IP])
def test_every_instance_serves_the_deployed_release(host, port, address, release_a):
    status, head, body = _get(host, f"http://{address}:{port}/healthz")
    assert status == 200, _journal(host, port)
    data = json.loads(body)
    assert data == {"status": "ok", "version": release_a, "instance": f"ff-appsrv-app1:{port}"}
    assert f"X-Served-By: ff-appsrv-app1:{port}" in head


@pytest.mark.parametrize("port", PORTS)
def test_readyz_reaches_the_real_database_and_redis(host, port):
    status, _, body = _get(host, f"http://127.0.0.1:{port}/readyz")
    data = json.loads(body)
    assert status == 200, body
    assert data["status"] == "ok"
    assert {"primary", "cache", "broker"} <= data.keys()


def test_metrics_are_aggregated_across_workers(host):
    # PROMETHEUS_MULTIPROC_DIR is the instance's RuntimeDirectory: writable in the sandbox.
    _get(host, "http://127.0.0.1:8001/healthz")
    status, _, body = _get(host, "http://127.0.0.1:8001/metrics")
    assert status == 200
    assert 'flaskfleet_http_requests_total{endpoint="/healthz"' in body


def test_access_log_has_the_request_time(host):
    _get(host, "http://127.0.0.1:8002/version")
    log = host.run("journalctl --no-pager -n 200 -u gunicorn@8002.service").stdout
    assert re.search(r'"GET /version HTTP/1\.1" 200 .* rt=\d+\.\d+ ms=\d+', log), log


def test_environment_file_is_readable_only_by_root_and_the_app_group(host):
    env = host.file(f"{ROOT}/current/{APP}.env")
    assert env.mode == 0o640
    assert env.user == "root"
    assert env.group == APP
    assert host.run(f"runuser -u {APP} -- cat {ROOT}/current/{APP}.env").rc == 0
    refused = host.run(f"runuser -u nobody -- cat {ROOT}/current/{APP}.env")
    assert refused.rc != 0
    assert "Permission denied" in refused.stderr


def test_the_app_user_owns_nothing_and_cannot_change_the_code(host):
    owned = host.run(f"find {ROOT}/ -user {APP} -o -group {APP} -perm -g=w")
    assert owned.stdout.strip() == ""
    write = host.run(f"runuser -u {APP} -- touch {ROOT}/current/venv/lib/probe")
    assert write.rc != 0
    assert host.user(APP).shell == "/usr/sbin/nologin"


@pytest.mark.parametrize("port", PORTS)
def test_unit_is_enabled_and_sandboxed(host, port):
    unit = host.service(f"gunicorn@{port}.service")
    assert unit.is_enabled
    assert unit.is_running, _journal(host, port)
    props = unit.systemd_properties
    expected = {
        "Type": "notify",
        "Restart": "on-failure",
        "User": APP,
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictNamespaces": "yes",
        "UMask": "0077",
    }
    assert {k: props.get(k) for k in expected} == expected
    assert set(props["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # Empty values (no capability at all) are easiest to read raw.
    caps = host.run(f"systemctl show -P CapabilityBoundingSet -P AmbientCapabilities {unit.name}")
    assert caps.rc == 0
    assert caps.stdout.strip() == ""
    assert f"FLASKFLEET_INSTANCE=ff-appsrv-app1:{port}" in props["Environment"]


@pytest.mark.parametrize("port", PORTS)
def test_each_instance_has_its_own_control_socket(host, port):
    """gunicornc reaches this instance (and only it) through its runtime directory, and the
    master logged no control-socket error since it started (the default path, ~/.gunicorn,
    is read-only in the sandbox and one for all instances)."""
    sock = f"/run/{APP}-gunicorn-{port}/gunicorn-{port}.ctl"
    assert host.socket(f"unix://{sock}").is_listening
    out = host.run(f"{ROOT}/current/venv/bin/gunicornc -s {sock} -c 'show workers' -j")
    assert out.rc == 0, out.stdout + out.stderr
    run = host.run(f"systemctl show -P InvocationID gunicorn@{port}.service").stdout.strip()
    log = host.run(f"journalctl --no-pager _SYSTEMD_INVOCATION_ID={run}").stdout
    assert f"Control socket listening at {sock}" in log, log
    assert "Control server error" not in log, log


@pytest.mark.parametrize("port", PORTS)
def test_systemd_security_exposure_is_below_3(host, port):
    out = host.run(f"systemd-analyze security --no-pager gunicorn@{port}.service")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) < 3.0, out.stdout


@pytest.mark.parametrize("port", PORTS)
def test_master_killed_with_sigkill_is_restarted(host, port, release_a):
    unit = f"gunicorn@{port}.service"
    old = host.run(f"systemctl show -P MainPID {unit}").stdout.strip()
    assert old not in ("", "0")
    assert host.run(f"kill -9 {old}").rc == 0

    def restarted():  # the restart delay is the unit's business, not the test's
        new = host.run(f"systemctl show -P MainPID {unit}").stdout.strip()
        return new not in ("", "0", old) and host.service(unit).is_running

    wait_for(restarted, 60, f"{unit} to restart", interval=1, diagnose=lambda: _journal(host, port))
    wait_for(
        lambda: host.run(f"curl -sf --max-time 5 http://127.0.0.1:{port}/healthz").rc == 0,
        60,
        f"{unit} to answer /healthz",
        interval=1,
    )
    status, _, body = _get(host, f"http://127.0.0.1:{port}/healthz")
    assert status == 200, _journal(host, port)
    assert json.loads(body)["version"] == release_a


def test_install_never_touched_a_package_index(host, release_a):
    # pip ran with PIP_NO_INDEX: its log only ever looked in the shipped wheelhouse ...
    log = host.file(f"{ROOT}/current/pip-install.log").content_string
    assert f"Looking in links: {ROOT}/releases/{release_a}/wheelhouse" in log
    assert "Looking in indexes" not in log
    # ... and the host could not have reached one: prepare removed its default route,
    # so any address outside the scenario subnet is unreachable (no packet leaves).
    assert host.run("ip route show default").stdout.strip() == ""
    probe = host.run(
        "python3 -c \"import socket; socket.create_connection(('198.51.100.1', 443), timeout=3)\""
    )
    assert probe.rc != 0
    assert "Network is unreachable" in probe.stderr


def test_rollback_kept_both_releases_and_switched_current_back(host, release_a, release_b):
    current = host.file(f"{ROOT}/current")
    assert current.is_symlink
    assert current.linked_to == f"{ROOT}/releases/{release_a}"
    assert host.file(f"{ROOT}/previous").linked_to == f"{ROOT}/releases/{release_b}"
    b = host.run(f"{ROOT}/releases/{release_b}/venv/bin/flaskfleet-app version")
    assert b.stdout.strip() == RELEASE_B


def test_old_releases_beyond_the_kept_number_were_pruned(host, release_a, release_b):
    # side_effect.yml planted two older releases; with app_release_keep=3 the
    # deploy of B kept B, A and the newer of them, and removed the oldest.
    releases = host.run(f"ls {ROOT}/releases").stdout.split()
    assert sorted(releases) == sorted([release_a, release_b, "0.0.2"])


def test_instance_on_an_unconfigured_port_was_stopped_and_disabled(host):
    stray = host.service("gunicorn@8011.service")
    assert not stray.is_running
    assert not stray.is_enabled
