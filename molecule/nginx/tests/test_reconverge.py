"""Re-running the load balancer play: a rejected config, drain + scale out, and back.

The tests run the real converge playbook again (as the deploy playbook or an
operator would) and check that nginx took each change with a reload (same
master process) or, for an invalid change, did not take it at all. They run in
order; the last one puts the converged configuration back.
"""

import json
import os
import subprocess

import pytest
from conftest import (
    CERT,
    INVENTORY,
    LB,
    SITE_CONF,
    STATIC_ROOT,
    get_host,
    marker,
    received,
    send,
)
from fftest import wait_for

testinfra_hosts = [LB]

CONVERGE = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")
BASE = "http://127.0.0.1"


def converge(*args):
    """Run the scenario's converge playbook with extra ansible-playbook arguments."""
    return subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, *args, CONVERGE],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def master_pid(host):
    return host.run("systemctl show -p MainPID --value nginx").stdout.strip()


def workers(host):
    return set(host.run("pgrep -P %s", master_pid(host)).stdout.split())


def wait_for_new_workers(host, old):
    """A reload replaces every worker; wait until the old ones are gone."""
    wait_for(
        lambda: not workers(host) & old,
        10,
        f"nginx workers {old} to be replaced (no reload happened?)",
        interval=0.2,
    )


def converge_and_reload(host, *args):
    """Converge with a change; return the master PIDs before and after the reload."""
    pid, old = master_pid(host), workers(host)
    result = converge(*args)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    wait_for_new_workers(host, old)
    return pid, master_pid(host)


def served(host, count):
    results = send(host, f"{BASE}/", count=count)
    assert {status for status, _ in results} == {200}
    return {served_by for _, served_by in results}


NEW_HOST, NEW_ADDRESS, NEW_PORT = "ff-nginx-app3", "172.28.5.12", 8003
# The new app server's "gunicorn" is the responder on port 8003 of the second backend container.
NEW_INSTANCE = f"ff-nginx-app2:{NEW_PORT}"


def test_an_invalid_directive_fails_the_play_and_the_old_config_keeps_serving(host):
    before = host.file(SITE_CONF).sha256sum
    pid, old = master_pid(host), workers(host)
    result = converge(
        "-e", json.dumps({"nginx_extra_directives": ["flaskfleet_no_such_directive on;"]})
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "nginx rejected the new configuration" in output, output[-3000:]
    assert 'unknown directive "flaskfleet_no_such_directive"' in output, output[-3000:]
    # Nothing reached nginx: same file on disk, same master, same workers, still serving.
    assert host.file(SITE_CONF).sha256sum == before
    assert master_pid(host) == pid
    assert workers(host) == old
    assert {status for status, _ in send(host, f"{BASE}/", count=4)} == {200}


@pytest.fixture(scope="module")
def drained_and_scaled_out(host, instances, tmp_path_factory):
    """Drain the first app server and add a third one to appservers, in one run."""
    drained = instances[0].split(":")[0]
    extra = tmp_path_factory.mktemp("inventory") / "scale_out.yml"
    extra.write_text(
        json.dumps(
            {
                "appservers": {
                    "hosts": {
                        NEW_HOST: {
                            "private_ip": NEW_ADDRESS,
                            "flaskfleet_gunicorn_base_port": NEW_PORT,
                            "flaskfleet_gunicorn_instances": 1,
                        },
                        # Drained from the inventory: out of service, still in the upstream.
                        drained: {"flaskfleet_drain": True},
                    }
                }
            }
        )
    )
    assert NEW_INSTANCE not in served(host, 3 * len(instances))
    # A file in the static root that is not in nginx_static_src.
    host.run(f"touch {STATIC_ROOT}/stale.txt")
    # The load balancers only: the "new" app server is a stand-in port on app2, not a host
    # Ansible can reach (its firewall opening is firewall_extra_rules in molecule.yml).
    pids = converge_and_reload(host, "-i", str(extra), "--limit", "loadbalancers")
    return {"drained": drained, "pids": pids}


def test_the_change_is_applied_with_a_reload(drained_and_scaled_out):
    before, after = drained_and_scaled_out["pids"]
    assert before == after  # reloaded, not restarted


def test_a_drained_host_receives_nothing(host, instances, drained_and_scaled_out):
    drained = drained_and_scaled_out["drained"]
    probe = marker()
    results = send(host, f"{BASE}/?{probe}", count=3 * len(instances))
    assert {status for status, _ in results} == {200}
    assert not any(served_by.startswith(f"{drained}:") for _, served_by in results)
    backend = get_host(drained)
    for instance in instances:
        name, port = instance.split(":")
        if name == drained:
            assert received(backend, port, probe) == 0


def test_a_new_app_server_gets_traffic(host, instances, drained_and_scaled_out):
    drained = drained_and_scaled_out["drained"]
    in_service = {i for i in instances if not i.startswith(f"{drained}:")}
    assert served(host, 4 * len(instances)) == in_service | {NEW_INSTANCE}


def test_static_files_not_in_the_release_are_removed(host, drained_and_scaled_out):
    assert not host.file(f"{STATIC_ROOT}/stale.txt").exists
    assert host.file(f"{STATIC_ROOT}/css/app.css").exists


def test_undrain_and_scale_in_restore_the_upstream(host, instances, drained_and_scaled_out):
    # The base inventory again: the drained host is back, the third one is gone.
    before, after = converge_and_reload(host)
    assert before == after
    assert served(host, 4 * len(instances)) == set(instances)


def test_a_configured_certificate_turns_on_the_redirect_and_hsts(host):
    # A certificate the operator configures (nginx_tls_cert/_key: here the lab's own files
    # named by path) counts as real: plain HTTP redirects to HTTPS and HSTS is sent. The
    # self-signed one the role generates gets neither (test_nginx.py).
    configured = {"nginx_tls_cert": CERT, "nginx_tls_key": "/etc/nginx/tls/server.key"}
    try:
        before, after = converge_and_reload(host, "-e", json.dumps(configured))
        assert before == after
        out = host.run(
            "curl -sS -o /dev/null -w '%%{http_code} %%{redirect_url}' %s",
            f"{BASE}/notes/7?page=2",
        )
        assert out.stdout == "301 https://127.0.0.1/notes/7?page=2", out.stdout + out.stderr
        headers = host.run("curl -sSk -D - -o /dev/null https://127.0.0.1/").stdout.lower()
        assert "strict-transport-security: max-age=" in headers, headers
    finally:
        # The scenario's own configuration again: self-signed, no redirect.
        result = converge()
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert {status for status, _ in send(host, f"{BASE}/", count=2)} == {200}
    headers = host.run("curl -sSk -D - -o /dev/null https://127.0.0.1/").stdout.lower()
    assert "strict-transport-security" not in headers
