"""Drain state as data: the nginx role's upstream document and its updates."""

import json
import subprocess
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


def test_one_instance_drains_while_the_others_of_its_host_serve():
    doc = nu.nginx_upstream_document(servers("app1", "app2"), SETTINGS)
    one = nu.nginx_upstream_update(doc, servers("app1", "app2"), drain=["app1:8001"])
    drained = {(s["host"], s["port"]) for s in one["servers"] if s["drained"]}
    assert drained == {("app1", 8001)}
    # The next change keeps that state per server, not per host.
    other = nu.nginx_upstream_update(one, servers("app1", "app2"), drain=["app2"])
    drained = {(s["host"], s["port"]) for s in other["servers"] if s["drained"]}
    assert drained == {("app1", 8001), ("app2", 8001), ("app2", 8002)}
    back = nu.nginx_upstream_update(other, servers("app1", "app2"), undrain=["app1:8001", "app2"])
    assert nu.nginx_upstream_drained_hosts(back) == []


def test_a_new_port_of_a_known_host_takes_the_host_state():
    doc = nu.nginx_upstream_document(servers("app1"), SETTINGS)
    three = servers("app1") + [{"host": "app1", "address": "10.0.0.1", "port": 8003}]
    updated = nu.nginx_upstream_update(doc, three)
    assert [s["drained"] for s in updated["servers"]] == [False, False, False]


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


# The one-task apply of the upstream entry point (library/nginx_upstream_apply.py), run
# as Ansible runs a module; `nginx` stands in for nginx -t (true accepts, false rejects).
# The write + reload path needs systemd and nginx: the nginx scenario covers it.
MODULE = Path(__file__).resolve().parent.parent / "roles" / "nginx" / "library"
MODULE = MODULE / "nginx_upstream_apply.py"


def apply(tmp_path, check_mode=False, nginx="/bin/true", **changes):
    conf_dir = tmp_path / "nginx"
    (conf_dir / "flaskfleet").mkdir(parents=True, exist_ok=True)
    (conf_dir / "nginx.conf").write_text(f"include {conf_dir}/flaskfleet/*.conf;\n")
    args = {
        "conf_dir": str(conf_dir),
        "upstream_conf": "upstream flaskfleet { server 10.0.0.1:8001 down; }\n",
        "state_file": str(conf_dir / "flaskfleet" / "upstream.json"),
        "state_content": '{"servers": []}\n',
        "nginx": nginx,
        "_ansible_check_mode": check_mode,
        **changes,
    }
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    out = subprocess.run(
        [sys.executable, str(MODULE), str(path)], capture_output=True, text=True, check=False
    )
    return json.loads(out.stdout), conf_dir / "flaskfleet"


def test_apply_changes_nothing_when_the_live_files_hold_the_candidate(tmp_path):
    _, live = apply(tmp_path, check_mode=True)
    (live / "upstream.conf").write_text("upstream flaskfleet { server 10.0.0.1:8001 down; }\n")
    (live / "upstream.json").write_text('{"servers": []}\n')
    result, _ = apply(tmp_path, nginx="/bin/false")
    assert result["changed"] is False and not result.get("failed")
    assert result["reloaded"] is False


def test_apply_in_check_mode_reports_the_change_and_writes_nothing(tmp_path):
    result, live = apply(tmp_path, check_mode=True)
    assert result["changed"] is True and not result.get("failed")
    assert not (live / "upstream.conf").exists()
    assert not (live / "upstream.json").exists()


def test_apply_refuses_a_candidate_nginx_rejects_and_writes_nothing(tmp_path):
    _, live = apply(tmp_path, check_mode=True)
    (live / "upstream.conf").write_text("old\n")
    result, _ = apply(tmp_path, nginx="/bin/false")
    assert result["failed"] is True
    assert "nginx rejected the new configuration" in result["msg"]
    assert (live / "upstream.conf").read_text() == "old\n"
    assert not (live / "upstream.json").exists()
