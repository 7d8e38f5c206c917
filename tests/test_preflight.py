"""The preflight play rejects a broken inventory before any host is touched.

Each case runs the real playbooks/preflight.yml against a small inventory on
the controller only (the play never connects to a host) and checks the exit
status and that the message names the fix.
"""

import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRETS = """
  vars:
    flaskfleet_db_password: aaaaaaaaaaaaaaaa
    flaskfleet_replication_password: aaaaaaaaaaaaaaaa
    flaskfleet_redis_cache_password: aaaaaaaaaaaaaaaa
    flaskfleet_redis_broker_password: aaaaaaaaaaaaaaaa
    flaskfleet_secret_key: aaaaaaaaaaaaaaaa
"""
GOOD = {
    "loadbalancers": "{hosts: {lb1: {private_ip: 10.0.0.10}}}",
    "appservers": "{hosts: {app1: {private_ip: 10.0.0.21}}}",
    "workers": "{hosts: {w1: {private_ip: 10.0.0.31}}}",
    "redis": "{hosts: {r1: {private_ip: 10.0.0.41}}}",
    "postgres_primary": "{hosts: {db1: {private_ip: 10.0.0.51}}}",
    "postgres_replicas": "{hosts: {db2: {private_ip: 10.0.0.52}}}",
}


def run_preflight(tmp_path, secrets=SECRETS, **groups):
    layout = {**GOOD, **groups}
    children = "\n".join(f"    {g}: {v}" for g, v in layout.items() if v is not None)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:{textwrap.indent(secrets, '')}\n  children:\n{children}\n")
    return subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / "preflight.yml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_good_inventory_passes(tmp_path):
    result = run_preflight(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (
            {"postgres_primary": "{hosts: {db1: {}, db3: {}}}"},
            "it needs exactly one",
        ),
        ({"postgres_primary": None}, "it needs exactly one"),
        (
            {"postgres_replicas": "{hosts: {db1: {}}}"},
            "is in both postgres_primary and",
        ),
        ({"appservers": None}, "at least one host in appservers"),
        (
            {"workers": "{hosts: {w1: {celery_beat: true}, w2: {celery_beat: true}}}"},
            "two beat processes",
        ),
        ({"appservers": "{hosts: {app1: {private_ip: app-one}}}"}, "is not an IP address"),
        (
            {"appservers": "{hosts: {app1: {common_ssh_permit_root_login: maybe}}}"},
            "common_ssh_permit_root_login must be one of",
        ),
        (
            {"retired": "{hosts: {app1: {}}}"},
            "is in the retired group and still in a service group",
        ),
        (
            {"appservers": "{hosts: {app1: {flaskfleet_gunicorn_instances: 0}}}"},
            "must be a whole number from 1 to 64",
        ),
        (
            {"appservers": "{hosts: {app1: {gunicorn_instances: 3}}}"},
            "set flaskfleet_gunicorn_instances instead",
        ),
    ],
)
def test_a_broken_inventory_fails_with_the_fix(tmp_path, groups, message):
    result = run_preflight(tmp_path, **groups)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "changed=1" not in result.stdout


def test_missing_secrets_fail(tmp_path):
    result = run_preflight(tmp_path, secrets="")
    assert result.returncode != 0
    assert "flaskfleet_db_password is not set" in result.stdout + result.stderr


def test_a_retired_host_outside_every_service_group_passes(tmp_path):
    result = run_preflight(tmp_path, retired="{hosts: {app9: {private_ip: 10.0.0.29}}}")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("serial", ["0", "all", "-1", "50 %"])
def test_a_bad_batch_size_fails(tmp_path, serial):
    result = run_preflight(tmp_path, secrets=SECRETS + f'    deploy_serial: "{serial}"\n')
    assert result.returncode != 0
    assert "is not a batch size" in result.stdout + result.stderr


@pytest.mark.parametrize("serial", ["1", "3", "25%"])
def test_a_good_batch_size_passes(tmp_path, serial):
    result = run_preflight(tmp_path, secrets=SECRETS + f'    deploy_serial: "{serial}"\n')
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_importing_plays_role_variables_pass(tmp_path):
    """rollback_app.yml imports deploy_app.yml (and so preflight) with app_release_version
    as a play variable: preflight must read it as the play sees it."""
    wrapper = tmp_path / "wrapper.yml"
    wrapper.write_text(
        "- name: Preflight as an importing playbook runs it\n"
        f"  ansible.builtin.import_playbook: {ROOT / 'playbooks' / 'preflight.yml'}\n"
        "  vars:\n"
        "    app_release_version: 2.0.0\n"
    )
    inventory = tmp_path / "hosts.yml"
    children = "\n".join(f"    {g}: {v}" for g, v in GOOD.items())
    inventory.write_text(f"all:{SECRETS}\n  children:\n{children}\n")
    result = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(wrapper)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_a_broken_app_description_is_refused_naming_the_fix(tmp_path):
    app = (
        "    flaskfleet_app:\n"
        "      source: {path: examples/does-not-exist}\n"
        "      wsgi: 'not a target'\n"
        "      env: {database: DB_URL}\n"
    )
    result = run_preflight(tmp_path, secrets=SECRETS + app)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "is not a directory on the controller" in out
    assert "is not a WSGI target" in out
    assert "flaskfleet_app.env.database: unknown wiring value" in out


def test_an_app_description_may_use_the_wiring_values(tmp_path):
    app = (
        "    flaskfleet_app:\n"
        "      source: {path: app_src}\n"
        "      wsgi: flaskfleet_app.wsgi:app\n"
        "      celery: flaskfleet_app.celery_app\n"
        "      extra_env: {REPORTS_DB: '{{ flaskfleet_wiring.database_url }}'}\n"
    )
    result = run_preflight(tmp_path, secrets=SECRETS + app)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
