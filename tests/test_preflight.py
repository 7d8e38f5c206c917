"""The preflight play rejects a broken inventory before any host is touched.

Each case runs the real playbooks/preflight.yml against a small inventory on
the controller only (the play never connects to a host) and checks the exit
status and that the message names the fix.
"""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "filter_plugins"))

import flaskfleet as ff  # noqa: E402 - the plugin folder is not a package

# Five distinct secrets, each as long as the role that uses it needs (16 for Redis and the
# secret key).
GOOD_SECRETS = {
    "flaskfleet_db_password": "db-pw-0123456789",
    "flaskfleet_replication_password": "repl-pw-0123456789",
    "flaskfleet_redis_cache_password": "cache-pw-0123456789",
    "flaskfleet_redis_broker_password": "broker-pw-0123456789",
    "flaskfleet_secret_key": "secret-key-0123456789",
}


# TLS between the tiers is on by default: the private CA's directory on the controller.
PKI = {"flaskfleet_pki_dir": "/nonexistent/pki"}


def all_vars(**values) -> str:
    """The inventory's all.vars block: the good secrets and the CA directory with ``values``
    replacing or added (a value of None leaves the variable out)."""
    merged = {**GOOD_SECRETS, **PKI, **values}
    lines = [f"    {k}: {json.dumps(v)}" for k, v in merged.items() if v is not None]
    return "\n  vars:\n" + "\n".join(lines) + "\n"


SECRETS = all_vars()
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


def test_tls_needs_the_private_ca_directory(tmp_path):
    result = run_preflight(tmp_path, secrets=all_vars(flaskfleet_pki_dir=None))
    assert result.returncode != 0
    assert "needs flaskfleet_pki_dir" in result.stdout + result.stderr
    # Without TLS there is nothing to verify, and no CA is needed.
    result = run_preflight(
        tmp_path, secrets=all_vars(flaskfleet_pki_dir=None, flaskfleet_tls=False)
    )
    assert result.returncode == 0, result.stdout + result.stderr


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


def refused(result, *fragments):
    """The run failed, changed nothing, and one output line holds every fragment: the
    message is one line (with the host, the variable and the fix), not a dump."""
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert not re.search(r"changed=[1-9]", result.stdout), result.stdout[-3000:]
    assert "argument_spec_data" not in out
    lines = [line for line in out.splitlines() if all(f in line for f in fragments)]
    assert lines, f"no line with {fragments}:\n{out[-4000:]}"


TWO_APPS = "{hosts: {app1: {private_ip: 10.0.0.21}, app2: {private_ip: 10.0.0.22}}}"


@pytest.mark.parametrize("serial", ["2", "100%", "150%", "5"])
def test_a_batch_of_every_app_server_is_refused(tmp_path, serial):
    result = run_preflight(tmp_path, secrets=all_vars(deploy_serial=serial), appservers=TWO_APPS)
    refused(
        result,
        f"deploy_serial={serial} puts all 2 app servers in one batch",
        "Set deploy_serial to at most 1",
    )


@pytest.mark.parametrize("serial", ["1", "50%", "99%"])
def test_a_batch_that_leaves_an_app_server_serving_passes(tmp_path, serial):
    result = run_preflight(tmp_path, secrets=all_vars(deploy_serial=serial), appservers=TWO_APPS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize(
    ("groups", "fragments"),
    [
        (
            {"appservers": "{hosts: {app1: {private_ip: 10.0.0.41}}}"},
            ("r1: private_ip=10.0.0.41 is also the private_ip of app1", "its own address"),
        ),
        (
            {"appservers": "{hosts: {app1: {private_ip: 8.8.8.8}}}"},
            ("app1: private_ip=8.8.8.8 is a public address", "Set private_ip to"),
        ),
        (
            {"appservers": "{hosts: {app1: {ansible_host: 8.8.4.4}}}"},
            ("app1: private_ip is not set and ansible_host=8.8.4.4 is a public", "Set private_ip"),
        ),
    ],
)
def test_an_unusable_private_address_is_refused(tmp_path, groups, fragments):
    refused(run_preflight(tmp_path, **groups), *fragments)


@pytest.mark.parametrize(
    ("groups", "fragments"),
    [
        (  # app server and Redis on one host: gunicorn 6378-6379 meets the cache's 6379
            {
                "appservers": "{hosts: {r1: {flaskfleet_gunicorn_base_port: 6378}}}",
                "redis": "{hosts: {r1: {private_ip: 10.0.0.41}}}",
            },
            (
                "r1: flaskfleet_gunicorn_base_port (gunicorn) uses port 6378-6379",
                "flaskfleet_redis_cache_port",
            ),
        ),
        (  # the load balancer's status port inside the app server's gunicorn range
            {
                "loadbalancers": "{hosts: {app1: {nginx_status_port: 8002}}}",
                "appservers": "{hosts: {app1: {private_ip: 10.0.0.21}}}",
            },
            (
                "app1: flaskfleet_gunicorn_base_port (gunicorn) uses port 8001-8002",
                "nginx_status_port (8002)",
            ),
        ),
    ],
)
def test_tiers_sharing_a_host_may_not_share_a_port(tmp_path, groups, fragments):
    refused(run_preflight(tmp_path, **groups), *fragments, "move one of them")


def test_tiers_sharing_a_host_on_their_own_ports_pass(tmp_path):
    result = run_preflight(
        tmp_path,
        loadbalancers="{hosts: {app1: {private_ip: 10.0.0.21}}}",
        redis="{hosts: {app1: {}}}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_a_private_address_on_the_lab_network_passes(tmp_path):
    result = run_preflight(tmp_path, appservers="{hosts: {app1: {private_ip: 172.28.0.21}}}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_the_example_vault_placeholders_are_refused(tmp_path):
    """inventory/example's vault.yml.example, copied but not edited."""
    example = ROOT / "inventory" / "example" / "group_vars" / "all" / "vault.yml.example"
    vault = yaml.safe_load(example.read_text())
    values = {name.removeprefix("vault_"): value for name, value in vault.items()}
    assert values["flaskfleet_secret_key"] == "CHANGE-ME-AT-LEAST-16-CHARS"
    result = run_preflight(tmp_path, secrets=all_vars(**values))
    refused(result, "flaskfleet_secret_key is still a placeholder", "set a random value")


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        (
            {"flaskfleet_secret_key": "changeme-changeme-changeme"},
            ("flaskfleet_secret_key is still a placeholder", "openssl rand"),
        ),
        (
            {"flaskfleet_redis_broker_password": GOOD_SECRETS["flaskfleet_redis_cache_password"]},
            (
                "flaskfleet_redis_cache_password and flaskfleet_redis_broker_password have the "
                "same value",
                "give each secret its own random value",
            ),
        ),
        # 13 characters: enough for the old 12-character check, not for the redis role.
        (
            {"flaskfleet_redis_cache_password": "abcdefghijklm"},
            (
                "flaskfleet_redis_cache_password has 13 characters; the redis role "
                "(redis_password_min_length) needs at least 16",
            ),
        ),
        (
            {"flaskfleet_redis_broker_password": "x" * 20, "redis_password_min_length": 24},
            ("flaskfleet_redis_broker_password has 20 characters", "needs at least 24"),
        ),
        (
            {"flaskfleet_secret_key": "fifteen-chars-x"},
            ("flaskfleet_secret_key has 15 characters; the app_release role needs at least 16",),
        ),
    ],
)
def test_weak_secrets_are_refused(tmp_path, values, fragments):
    refused(run_preflight(tmp_path, secrets=all_vars(**values)), *fragments)


def test_secrets_are_checked_on_every_host(tmp_path):
    # Good in group_vars/all, weak in one host's own variables.
    result = run_preflight(
        tmp_path,
        workers="{hosts: {w1: {private_ip: 10.0.0.31, flaskfleet_secret_key: short-but-set}}}",
    )
    refused(result, "w1: flaskfleet_secret_key has 13 characters")
    assert "app1: flaskfleet_secret_key" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("groups", "fragments"),
    [
        (
            {"loadbalancers": "{hosts: {lb1: {private_ip: 10.0.0.10, nginx_tls_self_signd: 1}}}"},
            (
                "lb1: nginx_tls_self_signd is not a variable of the nginx role",
                "did you mean nginx_tls_self_signed?",
            ),
        ),
        (
            {"workers": "{hosts: {w1: {private_ip: 10.0.0.31, celery_beats: true}}}"},
            ("w1: celery_beats is not a variable of the celery role", "did you mean celery_beat?"),
        ),
        (
            {"appservers": "{hosts: {app1: {private_ip: 10.0.0.21, gunicorn_zzz: 1}}}"},
            ("app1: gunicorn_zzz is not a variable of the gunicorn role", "remove or rename it"),
        ),
    ],
)
def test_a_misspelt_role_variable_is_refused_with_the_nearest_name(tmp_path, groups, fragments):
    refused(run_preflight(tmp_path, **groups), *fragments)


def test_a_role_variable_of_the_wrong_type_gets_one_line_not_the_spec(tmp_path):
    result = run_preflight(
        tmp_path, loadbalancers="{hosts: {lb1: {private_ip: 10.0.0.10, nginx_http_port: eighty}}}"
    )
    refused(
        result,
        "lb1: nginx_http_port is not usable by the nginx role",
        "the role expects int: Port of the plain HTTP site.",
    )
    # Nothing of the rest of the nginx spec.
    assert "nginx_gzip_types" not in result.stdout + result.stderr


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


# --- The checks against what the repository ships --------------------------------------
#
# The checks must refuse nothing the project itself sets: every inventory in the
# repository (inventory/*, each molecule scenario's provisioner.inventory) is loaded as
# Ansible would merge it (group vars, child groups over all, host vars last) and checked
# with the preflight's own functions. Values stay as written (templates unrendered).

ROLE_NAMES = sorted(p.parent.parent.name for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def _yaml(path: Path):
    return yaml.safe_load(path.read_text()) or {}


def _walk_groups(name, node, groups, group_vars, host_vars, depth, depths):
    node = node or {}
    depths[name] = min(depths.get(name, depth), depth)
    groups.setdefault(name, [])
    for host, hvars in (node.get("hosts") or {}).items():
        groups[name].append(host)
        host_vars.setdefault(host, {}).update(hvars or {})
    group_vars.setdefault(name, {}).update(node.get("vars") or {})
    for child, child_node in (node.get("children") or {}).items():
        _walk_groups(child, child_node, groups, group_vars, host_vars, depth + 1, depths)
        groups[name] += groups[child]


def _merge(groups, group_vars, host_vars, depths):
    """(groups, hostvars) as Ansible merges them: all, then deeper groups, then the host."""
    for name in list(groups):
        groups[name] = list(dict.fromkeys(groups[name]))
    groups["all"] = list(dict.fromkeys(h for hosts in groups.values() for h in hosts))
    order = sorted(groups, key=lambda g: (g != "all", depths.get(g, 1), g))
    hostvars = {}
    for host in groups["all"]:
        merged = {}
        for name in order:
            if host in groups[name]:
                merged.update(group_vars.get(name) or {})
        merged.update(host_vars.get(host) or {})
        hostvars[host] = merged
    return groups, hostvars


def inventory_dir(path: Path):
    groups, group_vars, host_vars, depths = {}, {}, {}, {}
    _walk_groups(
        "all", _yaml(path / "hosts.yml").get("all"), groups, group_vars, host_vars, 0, depths
    )
    for kind, target in (("group_vars", group_vars), ("host_vars", host_vars)):
        for item in sorted((path / kind).glob("*")):
            files = sorted(item.glob("*")) if item.is_dir() else [item]
            for file in files:
                if file.suffix in (".yml", ".yaml", ".json"):  # what Ansible loads
                    target.setdefault(item.name.split(".")[0], {}).update(_yaml(file))
    return _merge(groups, group_vars, host_vars, depths)


def molecule_inventory(path: Path):
    scenario = _yaml(path)
    groups, group_vars, host_vars, depths = {"all": []}, {}, {}, {"all": 0}
    for platform in scenario.get("platforms") or []:
        for group in platform.get("groups") or []:
            groups.setdefault(group, []).append(platform["name"])
        groups["all"].append(platform["name"])
    inventory = (scenario.get("provisioner") or {}).get("inventory") or {}
    for name, node in (inventory.get("hosts") or {}).items():
        for child in (node or {}).get("children") or {}:
            groups.setdefault(name, [])
            groups[name] += groups.get(child, [])
            depths[child] = 2
        depths.setdefault(name, 1)
    for name, values in (inventory.get("group_vars") or {}).items():
        group_vars[name] = values or {}
    for name, values in (inventory.get("host_vars") or {}).items():
        host_vars[name] = values or {}
    return _merge(groups, group_vars, host_vars, depths)


SHIPPED = {
    **{f"inventory/{p.name}": p for p in sorted((ROOT / "inventory").iterdir()) if p.is_dir()},
    **{str(p.relative_to(ROOT)): p for p in sorted(ROOT.glob("molecule/*/molecule.yml"))},
}


def load_shipped(name):
    path = SHIPPED[name]
    return molecule_inventory(path) if path.name == "molecule.yml" else inventory_dir(path)


def test_every_shipped_inventory_is_checked():
    assert {"inventory/lab", "inventory/example", "molecule/cluster/molecule.yml"} <= set(SHIPPED)
    groups, hostvars = load_shipped("molecule/cluster/molecule.yml")
    assert hostvars["ff-cluster-lb1"]["nginx_tls_self_signed"] is True  # the loader merges


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_new_checks_refuse_nothing_the_repository_ships(name):
    groups, hostvars = load_shipped(name)
    assert groups["all"], name
    problems = ff._address_problems(groups, hostvars)
    for host in groups["all"]:
        values = hostvars[host]
        problems += ff.flaskfleet_deploy_serial_problems(values.get("deploy_serial"), groups)
        # Stricter than the play: every role's prefix on every host.
        role_values = {k: v for k, v in values.items() if k.startswith(tuple(ROLE_NAMES))}
        problems += ff.flaskfleet_role_variable_problems(
            role_values, host, ROLE_NAMES, str(ROOT / "roles")
        )
        if all(values.get(secret) for secret in ff.CLUSTER_SECRETS):
            problems += ff.flaskfleet_secret_problems(
                values, host, values.get("redis_password_min_length")
            )
    assert problems == [], name


@pytest.mark.parametrize("name", ["inventory/lab", "inventory/example"])
def test_the_shipped_inventories_pass_the_whole_topology_check(name):
    groups, hostvars = load_shipped(name)
    assert ff.flaskfleet_topology_problems(groups, hostvars) == []


# --- The checks agree with the roles -------------------------------------------------------


def test_secret_minimums_are_the_roles_own():
    redis_defaults = _yaml(ROOT / "roles" / "redis" / "defaults" / "main.yml")
    for name in ("flaskfleet_redis_cache_password", "flaskfleet_redis_broker_password"):
        assert ff.CLUSTER_SECRETS[name][0] == redis_defaults["redis_password_min_length"]
    app_preflight = (ROOT / "roles" / "app_release" / "tasks" / "preflight.yml").read_text()
    minimum = ff.CLUSTER_SECRETS["flaskfleet_secret_key"][0]
    assert f"app_release_secret_key | length >= {minimum}" in app_preflight
    postgres_preflight = (ROOT / "roles" / "postgresql" / "tasks" / "preflight.yml").read_text()
    assert "postgresql_db_password | length > 0" in postgres_preflight  # no stricter minimum
    playbook = (ROOT / "playbooks" / "preflight.yml").read_text()
    assert all(f"- {name}\n" in playbook for name in ff.CLUSTER_SECRETS)


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _names_the_project_uses() -> dict[str, str]:
    """Role-prefixed names the playbooks and roles set (set_fact, register, play or task
    vars, vars files) and the docs pass as extra vars (-e NAME=...): name -> where."""
    names: dict[str, str] = {}
    files = [*ROOT.glob("playbooks/**/*.yml"), ROOT / "site.yml"]
    files += [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("roles/*/handlers/*.yml")]
    files += [*ROOT.glob("molecule/*/*.yml")]
    for path in files:
        data = _yaml(path)
        if path.parent.name == "vars" and isinstance(data, dict):
            names.update(dict.fromkeys(data, str(path)))
        for node in _walk(data):
            for key in ("ansible.builtin.set_fact", "set_fact", "vars"):
                if isinstance(node.get(key), dict):
                    names.update(dict.fromkeys(node[key], str(path)))
            if isinstance(node.get("register"), str):
                names[node["register"]] = str(path)
    for path in [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("roles/*/README.md")]:
        for name in re.findall(r"-e ([a-z_]+)=", path.read_text()):
            names[name] = str(path)
    return {n: w for n, w in names.items() if n.startswith(tuple(f"{r}_" for r in ROLE_NAMES))}


def test_every_role_prefixed_name_the_project_uses_is_known():
    """A name the playbooks set or document that no spec defines must be in
    ROLE_PREFIX_NAMES_NOT_IN_SPECS, or the typo check would refuse it."""
    problems = []
    for name, where in sorted(_names_the_project_uses().items()):
        role = next(r for r in ROLE_NAMES if name.startswith(f"{r}_"))
        found = ff.flaskfleet_role_variable_problems({name: None}, "h", [role], str(ROOT / "roles"))
        problems += [f"{p} (from {where})" for p in found if "not a variable" in p]
    assert problems == []


def test_the_names_known_outside_the_specs_are_still_used():
    text = "".join(
        p.read_text()
        for pattern in ("playbooks/**/*.yml", "roles/*/tasks/*.yml", "docs/*.md", "*.md")
        for p in ROOT.glob(pattern)
    )
    assert [n for n in sorted(ff.ROLE_PREFIX_NAMES_NOT_IN_SPECS) if n not in text] == []


# --- The messages ------------------------------------------------------------------------


def test_secret_messages_never_show_a_value():
    values = {
        "flaskfleet_db_password": "CHANGE-ME",
        "flaskfleet_replication_password": "tiny-secret",
        "flaskfleet_redis_cache_password": "same-secret-0123456789",
        "flaskfleet_redis_broker_password": "same-secret-0123456789",
        "flaskfleet_secret_key": "",
    }
    problems = ff.flaskfleet_secret_problems(values, "app1")
    assert len(problems) == 4, problems  # placeholder, short, shared (one line), unset
    assert all(p.startswith("app1: flaskfleet_") and "\n" not in p for p in problems)
    for value in ("tiny-secret", "same-secret"):
        assert not any(value in p for p in problems)


def test_a_no_log_value_is_not_shown_in_a_type_error(tmp_path):
    spec = {"demo_token": {"type": "int", "no_log": True, "description": "A token."}}
    meta = tmp_path / "demo" / "meta"
    meta.mkdir(parents=True)
    (meta / "argument_specs.yml").write_text(
        yaml.safe_dump({"argument_specs": {"main": {"options": spec}}})
    )
    problems = ff.flaskfleet_role_variable_problems(
        {"demo_token": "hunter2-secret"}, "h1", ["demo"], str(tmp_path)
    )
    assert len(problems) == 1 and problems[0].startswith("h1: demo_token is not usable")
    assert "hunter2" not in problems[0]


def test_names_of_roles_not_on_the_host_are_not_checked():
    problems = ff.flaskfleet_role_variable_problems(
        {"nginx_tls_self_signd": True, "redis_cache_maxmemory": "8mb"},
        "db1",
        ["common", "redis"],
        str(ROOT / "roles"),
    )
    assert problems == []


def test_a_misspelt_name_is_reported_whatever_its_value_holds(tmp_path):
    """Only the values of names the roles define are templated by the check."""
    result = run_preflight(
        tmp_path,
        loadbalancers="{hosts: {lb1: {private_ip: 10.0.0.10, nginx_worker_conections: '{{ x }}'}}}",
    )
    refused(
        result,
        "lb1: nginx_worker_conections is not a variable of the nginx role",
        "did you mean nginx_worker_connections?",
    )


ROOT_LOGIN_FIX = "set common_ssh_permit_root_login: prohibit-password"


def test_logging_in_as_root_while_root_logins_are_refused_is_refused(tmp_path):
    # common_ssh_permit_root_login is "no" by default: the run would lock out its own login.
    result = run_preflight(tmp_path, secrets=all_vars(ansible_user="root"))
    refused(result, "app1: Ansible logs in as root", "ansible_user: deploy", ROOT_LOGIN_FIX)


@pytest.mark.parametrize(
    "extra",
    [
        {"ansible_user": "root", "common_ssh_permit_root_login": "prohibit-password"},
        {"ansible_user": "root", "ansible_connection": "community.docker.docker"},
        {"ansible_user": "deploy"},
    ],
)
def test_a_root_login_sshd_keeps_or_no_ssh_login_passes(tmp_path, extra):
    result = run_preflight(tmp_path, secrets=all_vars(**extra))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def login_key(tmp_path):
    """A key pair as Ansible would use it (ansible_ssh_private_key_file + its .pub)."""
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ansible", "-f", str(key)],
        check=True,
    )
    return key, key.with_suffix(".pub").read_text().strip()


OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOfSomeoneElseXXXXXXXXXXXXXXXXXXXXXX other"


@pytest.mark.parametrize(
    ("keys", "exclusive", "passes"),
    [
        ([OTHER_KEY], True, False),  # exclusive would drop the key Ansible logs in with
        (["login", OTHER_KEY], True, True),
        ([OTHER_KEY], False, True),  # keys are only added
        ([], True, True),  # an empty list leaves authorized_keys alone
    ],
)
def test_exclusive_keys_must_keep_the_login_key(tmp_path, keys, exclusive, passes):
    key, public = login_key(tmp_path)
    keys = [public if k == "login" else k for k in keys]
    result = run_preflight(
        tmp_path,
        secrets=all_vars(
            ansible_user="deploy",
            ansible_ssh_private_key_file=str(key),
            common_deploy_user_authorized_keys=keys,
            common_deploy_user_exclusive_keys=exclusive,
        ),
    )
    if passes:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    else:
        refused(
            result,
            "app1: common_deploy_user_authorized_keys does not hold the key Ansible logs in with",
            f"{key}.pub",
            "set common_deploy_user_exclusive_keys: false",
        )


def test_the_login_key_is_found_behind_options_and_a_missing_key_file_is_not_guessed(tmp_path):
    key, public = login_key(tmp_path)
    roles = str(ROOT / "roles")
    login = {"ansible_user": "deploy", "ansible_ssh_private_key_file": str(key)}
    with_options = f'from="10.0.0.0/8",no-agent-forwarding {public}'
    assert (
        ff.flaskfleet_ssh_login_problems(
            {**login, "common_deploy_user_authorized_keys": [with_options, OTHER_KEY]}, "h", roles
        )
        == []
    )
    # Without the .pub next to it (an agent, a token) the key cannot be known: no refusal.
    login["ansible_ssh_private_key_file"] = str(tmp_path / "no-such-key")
    assert (
        ff.flaskfleet_ssh_login_problems(
            {**login, "common_deploy_user_authorized_keys": [OTHER_KEY]}, "h", roles
        )
        == []
    )


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        (
            {"firewall_ssh_sources": ["198.51.100.0/24", "bastion.example.com"]},
            ("firewall_ssh_sources: bastion.example.com is not an IP address or network",),
        ),
        (
            {"firewall_extra_rules": [{"name": "metrics", "ports": [9000]}]},
            ("firewall_extra_rules[0] needs name, ports and sources",),
        ),
        (
            {"firewall_ssh_srcs": ["10.0.0.0/8"]},
            ("firewall_ssh_srcs is not a variable of the firewall role", "firewall_ssh_sources"),
        ),
    ],
)
def test_a_broken_firewall_setting_is_refused_naming_it(tmp_path, values, fragments):
    refused(run_preflight(tmp_path, secrets=all_vars(**values)), *fragments)
