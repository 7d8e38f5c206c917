"""The peer wiring filters: what every tier's configuration is derived from."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "filter_plugins"))

import flaskfleet as ff  # noqa: E402 - the plugin folder is not a package

HOSTVARS = {
    "app1": {"private_ip": "10.0.0.21"},
    "app2": {"private_ip": "10.0.0.22"},
    "app3": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.23"}}},
    "app4": {"ansible_host": "10.0.0.24"},
    "lonely": {"ansible_host": "lonely.example.org"},
    "loop": {"ansible_host": "127.0.0.1"},
    "bad": {"private_ip": "not-an-ip"},
}


@pytest.mark.parametrize(
    ("host", "expected"),
    [("app1", "10.0.0.21"), ("app3", "10.0.0.23"), ("app4", "10.0.0.24")],
)
def test_address_prefers_private_ip_then_facts_then_ip_host(host, expected):
    assert ff.flaskfleet_address(host, HOSTVARS) == expected


@pytest.mark.parametrize("host", ["lonely", "loop", "missing"])
def test_address_unknown_names_the_fix(host):
    with pytest.raises(ff.AnsibleFilterError, match="private_ip"):
        ff.flaskfleet_address(host, HOSTVARS)


def test_address_rejects_malformed_private_ip():
    with pytest.raises(ff.AnsibleFilterError, match="not an IP address"):
        ff.flaskfleet_address("bad", HOSTVARS)


def test_addresses_keep_order_and_drop_duplicates():
    assert ff.flaskfleet_addresses(["app2", "app1", "app2"], HOSTVARS) == ["10.0.0.22", "10.0.0.21"]


@pytest.mark.parametrize(
    ("host", "slot"),
    [("db2", "db2"), ("DB-Replica.3", "db_replica_3"), ("9db", "r_9db")],
)
def test_slot_names_are_valid_postgres_identifiers(host, slot):
    assert ff.flaskfleet_slot_name(host) == slot


def test_urls_quote_credentials():
    url = ff.flaskfleet_postgres_url("10.0.0.5", "app", "p@ss/w:rd", "flaskfleet")
    assert url == "postgresql+psycopg://app:p%40ss%2Fw%3Ard@10.0.0.5:5432/flaskfleet"
    assert ff.flaskfleet_redis_url("10.0.0.6", "a b", 6380) == "redis://:a%20b@10.0.0.6:6380/0"


def test_spec_without_defaults_strips_nested_defaults():
    spec = {
        "a": {"type": "int", "default": 1},
        "b": {
            "type": "list",
            "elements": "dict",
            "default": [],
            "options": {"c": {"default": "x"}},
        },
    }
    assert ff.flaskfleet_spec_without_defaults(spec) == {
        "a": {"type": "int"},
        "b": {"type": "list", "elements": "dict", "options": {"c": {}}},
    }


def test_systemd_sandbox_is_shared_and_extended():
    base = ff.flaskfleet_systemd_sandbox().splitlines()
    assert "NoNewPrivileges=yes" in base
    assert "SystemCallFilter=~@privileged @resources" in base
    assert "PrivateUsers=yes" in base and "MemoryDenyWriteExecute=yes" in base
    extended = ff.flaskfleet_systemd_sandbox(
        {"MemoryDenyWriteExecute": False, "SystemCallFilter": ["@system-service", "~@resources"]}
    ).splitlines()
    assert "MemoryDenyWriteExecute=no" in extended
    assert [line for line in extended if line.startswith("SystemCallFilter=")] == [
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@resources",
    ]


ROLES = Path(__file__).resolve().parent.parent / "roles"


@pytest.mark.parametrize("role", ["common", "redis", "nginx"])
def test_platform_check_reads_the_roles_meta(role):
    bookworm = {"distribution": "Debian", "distribution_release": "bookworm"}
    assert ff.flaskfleet_platform_problem(bookworm, str(ROLES / role)) == ""
    trixie = {
        "distribution": "Debian",
        "distribution_release": "trixie",
        "distribution_version": "13",
    }
    problem = ff.flaskfleet_platform_problem(trixie, str(ROLES / role))
    assert f"the {role} role supports Debian bookworm" in problem
    assert "Debian 13 (trixie)" in problem
    ubuntu = {"distribution": "Ubuntu", "distribution_release": "noble"}
    assert "supports Debian bookworm" in ff.flaskfleet_platform_problem(ubuntu, str(ROLES / role))


REDIS_CONF = """# managed
bind 127.0.0.1 10.0.0.5
port 6379
save ""
maxmemory 64mb
maxmemory-policy allkeys-lru
include /etc/redis/redis-cache.auth.conf
"""
LIVE = ["maxmemory", "maxmemory-policy", "save"]


def test_redis_settings_redis_can_take_live_are_set_live():
    new = (
        REDIS_CONF.replace("64mb", "128mb")
        .replace('save ""', 'save "3600 1"')
        .replace("managed", "x")
    )
    assert ff.flaskfleet_redis_live_changes(REDIS_CONF, new, LIVE) == [
        ["maxmemory", "128mb"],
        ["save", "3600 1"],
    ]
    assert ff.flaskfleet_redis_live_changes(REDIS_CONF, REDIS_CONF, LIVE) == []


@pytest.mark.parametrize(
    "new",
    [
        REDIS_CONF.replace("port 6379", "port 6390"),  # read at start only
        REDIS_CONF.replace("maxmemory 64mb", "maxmemory 64mb\nmaxmemory 32mb"),  # given twice
        REDIS_CONF + "appendonly yes\n",  # not in the live list of this call
    ],
)
def test_redis_settings_read_at_start_need_a_restart(new):
    assert ff.flaskfleet_redis_live_changes(REDIS_CONF, new, LIVE) is None
    assert ff.flaskfleet_redis_live_changes("", REDIS_CONF, LIVE) is None  # first install
