"""Drain state as data: the nginx role's upstream document and its updates."""

import sys
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent / "roles" / "nginx" / "filter_plugins")
)

import nginx_upstream as nu  # noqa: E402 - a role's plugin folder is not a package

SETTINGS = {
    "name": "flaskfleet",
    "algorithm": "least_conn",
    "hash_key": "",
    "max_fails": 3,
    "fail_timeout": "10s",
    "keepalive": 32,
    "keepalive_timeout": "60s",
}


def servers(*hosts, down=()):
    return [
        {"host": h, "address": f"10.0.0.{i}", "port": p, "weight": 1, "down": h in down}
        for i, h in enumerate(hosts, start=1)
        for p in (8001, 8002)
    ]


def states(document):
    return {s["host"]: (s["down"], s["drained"]) for s in document["servers"]}


def test_a_full_run_puts_every_server_in_service_unless_the_inventory_drains_it():
    doc = nu.nginx_upstream_document(servers("app1", "app2", down=["app2"]), SETTINGS)
    assert states(doc) == {"app1": (False, False), "app2": (True, False)}
    assert nu.nginx_upstream_drained_hosts(doc) == ["app2"]
    assert doc["settings"] == SETTINGS


def test_drain_and_undrain_change_only_the_hosts_named():
    doc = nu.nginx_upstream_document(servers("app1", "app2", "app3"), SETTINGS)
    drained = nu.nginx_upstream_update(doc, servers("app1", "app2", "app3"), drain=["app2"])
    assert nu.nginx_upstream_drained_hosts(drained) == ["app2"]
    both = nu.nginx_upstream_update(drained, servers("app1", "app2", "app3"), drain=["app3"])
    assert nu.nginx_upstream_drained_hosts(both) == ["app2", "app3"]
    back = nu.nginx_upstream_update(both, servers("app1", "app2", "app3"), undrain=["app2"])
    assert nu.nginx_upstream_drained_hosts(back) == ["app3"]


def test_a_new_host_joins_drained_and_a_removed_host_goes():
    doc = nu.nginx_upstream_document(servers("app1", "app2"), SETTINGS)
    scaled = nu.nginx_upstream_update(doc, servers("app1", "app3"))
    assert states(scaled) == {"app1": (False, False), "app3": (False, True)}
    put_in = nu.nginx_upstream_update(scaled, servers("app1", "app3"), undrain=["app3"])
    assert nu.nginx_upstream_drained_hosts(put_in) == []


def test_an_update_keeps_the_load_balancers_own_settings():
    doc = nu.nginx_upstream_document(servers("app1"), {**SETTINGS, "algorithm": "ip_hash"})
    updated = nu.nginx_upstream_update(doc, servers("app1"), drain=["app1"])
    assert updated["settings"]["algorithm"] == "ip_hash"
