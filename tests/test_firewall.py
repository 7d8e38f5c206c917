"""The firewall's openings come from the topology model: each service port open only
to the hosts that use it (flaskfleet_firewall_rules), rendered by roles/firewall."""

import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from test_topology import inventory, topology

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "filter_plugins"))

import flaskfleet as ff  # noqa: E402 - the plugin folder is not a package


def openings(topo, host, **ports):
    """{port: set of allowed sources} of one host ("any" when open to everyone)."""
    result = {}
    for rule in ff.flaskfleet_firewall_rules(topo, host, ports):
        for port in rule["ports"]:
            sources = {"any"} if rule["any"] else set(rule["v4"] + rule["v6"])
            result.setdefault(port, set()).update(sources)
    return result


APPS = {"10.0.0.21", "10.0.0.22"}
WORKERS = {"10.0.0.31", "10.0.0.32"}
DBS = {"10.0.0.51", "10.0.0.52", "10.0.0.53"}


def test_postgresql_is_open_to_app_servers_workers_and_the_other_database_hosts_only():
    topo = topology()
    assert openings(topo, "db1") == {5432: APPS | WORKERS | (DBS - {"10.0.0.51"})}
    assert openings(topo, "db2") == {5432: APPS | WORKERS | (DBS - {"10.0.0.52"})}
    # Not the load balancer, not the Redis host.
    assert "10.0.0.10" not in openings(topo, "db1")[5432]
    assert "10.0.0.41" not in openings(topo, "db1")[5432]


def test_redis_ports_are_open_to_app_servers_and_workers_only():
    topo = topology()
    assert openings(topo, "r1") == {6379: APPS | WORKERS, 6380: APPS | WORKERS}


def test_gunicorn_ports_are_open_to_the_load_balancers_only():
    topo = topology(
        app1={"flaskfleet_gunicorn_instances": 3, "flaskfleet_gunicorn_base_port": 9001}
    )
    assert openings(topo, "app1") == {9001: {"10.0.0.10"}, 9002: {"10.0.0.10"}, 9003: {"10.0.0.10"}}


def test_load_balancers_and_workers_open_no_service_port_to_peers():
    topo = topology()
    assert openings(topo, "lb1") == {}
    assert openings(topo, "w1") == {}


def test_the_backup_host_reaches_the_database_hosts_pgbackrest_and_the_broker():
    topo = topology(backup=["b1"], b1={"private_ip": "10.0.0.61"})
    assert openings(topo, "db2", pgbackrest=8500)[8500] == {"10.0.0.61"}
    assert openings(topo, "b1", pgbackrest=8500) == {8500: DBS}
    assert openings(topo, "r1")[6380] == APPS | WORKERS | {"10.0.0.61"}
    # The cache holds nothing worth a copy: the backup host does not reach it.
    assert openings(topo, "r1")[6379] == APPS | WORKERS


def test_monitoring_hosts_reach_gunicorn_and_postgresql():
    topo = topology(monitoring=["m1"], m1={"private_ip": "10.0.0.71"})
    assert "10.0.0.71" in openings(topo, "app2")[8001]
    assert "10.0.0.71" in openings(topo, "db3")[5432]


def test_only_monitoring_hosts_reach_the_load_balancers_private_listener():
    assert openings(topology(), "lb1") == {}
    topo = topology(monitoring=["m1"], m1={"private_ip": "10.0.0.71"})
    assert openings(topo, "lb1", nginx_private=9088)[9088] == {"10.0.0.71"}
    # Not on the app servers: they run no nginx.
    assert 9088 not in openings(topo, "app1", nginx_private=9088)


def test_the_first_monitoring_host_takes_every_managed_hosts_journal():
    assert 19532 not in openings(topology(), "db1")
    topo = topology(
        monitoring=["m1", "m2"], m1={"private_ip": "10.0.0.71"}, m2={"private_ip": "10.0.0.72"}
    )
    managed = set(topo["addresses"].values())
    assert {"10.0.0.10", "10.0.0.41", "10.0.0.72"} <= managed
    assert openings(topo, "m1", journal_remote=19600)[19600] == managed - {"10.0.0.71"}
    # One receiver: the second monitoring host sends its journal, it takes none.
    assert 19532 not in openings(topo, "m2")
    assert 19532 not in openings(topo, "app1")


def test_the_central_journal_runs_on_every_managed_host_only_with_a_monitoring_host():
    groups, _ = inventory()
    assert "central_journal" not in ff.flaskfleet_role_hosts(groups)
    groups["monitoring"] = ["m1"]
    groups["retired"] = ["app2"]
    groups["all"] = groups["all"] + ["m1"]
    hosts = ff.flaskfleet_role_hosts(groups)["central_journal"]
    assert "m1" in hosts and "db1" in hosts and "lb1" in hosts
    assert "app2" not in hosts


def test_exporters_are_open_to_the_monitoring_hosts_only():
    # No monitoring host: no exporter runs, no port opens.
    assert 9100 not in openings(topology(), "app1")
    topo = topology(
        monitoring=["m1", "m2"], m1={"private_ip": "10.0.0.71"}, m2={"private_ip": "10.0.0.72"}
    )
    mon = {"10.0.0.71", "10.0.0.72"}
    assert openings(topo, "app1") == {
        8001: {"10.0.0.10"} | mon,
        8002: {"10.0.0.10"} | mon,
        9100: mon,
    }
    assert openings(topo, "lb1") == {8088: mon, 9100: mon, 9113: mon}
    assert openings(topo, "r1") == {
        6379: APPS | WORKERS,
        6380: APPS | WORKERS,
        9100: mon,
        9121: mon,
    }
    assert openings(topo, "db1")[9187] == mon
    assert openings(topo, "w1") == {9100: mon}
    # Prometheus and Alertmanager: the other monitoring host; a host's own node exporter is
    # reached through loopback.
    # The first monitoring host also takes every managed host's journal (19532).
    journal = set(topo["addresses"].values()) - {"10.0.0.71"}
    assert openings(topo, "m1") == {
        9090: {"10.0.0.72"},
        9093: {"10.0.0.72"},
        9100: {"10.0.0.72"},
        19532: journal,
    }


def test_scale_out_opens_the_new_hosts_paths_and_scale_in_closes_them():
    groups, hostvars = inventory()
    groups["appservers"].append("app3")
    groups["all"].append("app3")
    hostvars["app3"] = {"private_ip": "10.0.0.23"}
    out = ff.flaskfleet_topology(groups, hostvars, "", {})
    assert "10.0.0.23" in openings(out, "db2")[5432]
    assert "10.0.0.23" in openings(out, "r1")[6379]
    assert 8001 in openings(out, "app3")
    groups["appservers"].remove("app3")
    groups["retired"] = ["app3"]
    out = ff.flaskfleet_topology(groups, hostvars, "", {})
    assert "10.0.0.23" not in openings(out, "db2")[5432]
    assert "10.0.0.23" not in openings(out, "r1")[6379]
    assert openings(out, "app3") == {}


def test_a_promoted_replica_keeps_the_fenced_former_primary_in_replication():
    topo = topology(primary_override="db2")
    assert "10.0.0.51" in openings(topo, "db2")[5432]
    assert openings(topo, "db1")[5432] >= APPS | WORKERS


def test_a_host_in_two_tiers_gets_both_sets_of_openings_but_not_its_own_address():
    groups, hostvars = inventory(workers=["lb1"])
    out = ff.flaskfleet_topology(groups, hostvars, "", {})
    assert "10.0.0.10" in openings(out, "db1")[5432]
    assert openings(out, "lb1") == {}


def test_sources_are_split_by_family_and_everyone_is_any():
    assert ff.flaskfleet_nft_sources(["192.0.2.0/24", "2001:db8::1", "192.0.2.7"]) == {
        "any": False,
        "v4": ["192.0.2.0/24", "192.0.2.7"],
        "v6": ["2001:db8::1"],
    }
    assert ff.flaskfleet_nft_sources(["10.0.0.1", "0.0.0.0/0", "::/0"])["any"] is True
    only_v4 = ff.flaskfleet_nft_sources(["10.0.0.1", "0.0.0.0/0"])
    assert only_v4 == {"any": False, "v4": ["0.0.0.0/0"], "v6": []}


@pytest.mark.parametrize("bad", [["lb1"], ["10.0.0.300"], "10.0.0.1"])
def test_a_source_that_is_not_an_address_is_refused_with_the_setting_named(bad):
    with pytest.raises(AnsibleFilterError, match="firewall_ssh_sources"):
        ff.flaskfleet_nft_sources(bad, "firewall_ssh_sources")


def test_the_preflight_names_each_firewall_setting_it_refuses():
    problems = ff.flaskfleet_firewall_problems(
        {
            "firewall_ssh_sources": ["10.0.0.0/8", "bastion"],
            "firewall_public_sources": "",
            "firewall_extra_rules": [
                {"name": "metrics", "ports": [9000], "sources": ["192.0.2.0/24"]},
                {"name": "dns", "ports": ["fifty-three"], "sources": ["10.0.0.1"], "proto": "icmp"},
                {"ports": [1]},
            ],
        },
        "h1",
    )
    assert len(problems) == 4, problems
    assert "h1: firewall_ssh_sources: bastion is not an IP address" in problems[0]
    assert "firewall_extra_rules[1] (dns): ports" in problems[1]
    assert "firewall_extra_rules[1] (dns): proto must be tcp or udp" in problems[2]
    assert "firewall_extra_rules[2] needs name, ports and sources" in problems[3]


def test_the_preflight_accepts_the_defaults_and_unset_settings():
    assert ff.flaskfleet_firewall_problems({}, "h1") == []
    assert (
        ff.flaskfleet_firewall_problems(
            {"firewall_ssh_sources": ["0.0.0.0/0", "::/0"], "firewall_extra_rules": []}, "h1"
        )
        == []
    )
