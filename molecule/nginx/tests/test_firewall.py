"""The firewall (roles/firewall, playbooks/firewall.yml) on the load balancer and the app
servers: gunicorn ports only from the load balancer, 80/443 from anywhere, the rest dropped;
a ruleset that is not confirmed is rolled back by the host itself."""

import pytest
from conftest import LB, get_host
from fftest import tcp_probe, wait_for

ADDRESS = {
    "ff-nginx-lb": "172.28.5.10",
    "ff-nginx-app1": "172.28.5.11",
    "ff-nginx-app2": "172.28.5.12",
}


@pytest.mark.parametrize("app", ["ff-nginx-app1", "ff-nginx-app2"])
@pytest.mark.parametrize("port", [8001, 8002])
def test_the_load_balancer_reaches_every_gunicorn_port(app, port):
    assert tcp_probe(get_host(LB), ADDRESS[app], port) == "open"


@pytest.mark.parametrize("port", [8001, 8002])
def test_an_app_server_cannot_reach_another_app_servers_gunicorn(port):
    # The responder listens there (the load balancer connects): only the firewall drops it.
    assert tcp_probe(get_host("ff-nginx-app1"), ADDRESS["ff-nginx-app2"], port) == "dropped"


def test_a_port_opened_by_firewall_extra_rules_is_open_to_its_sources_only():
    assert tcp_probe(get_host(LB), ADDRESS["ff-nginx-app2"], 8003) == "open"
    assert tcp_probe(get_host("ff-nginx-app1"), ADDRESS["ff-nginx-app2"], 8003) == "dropped"


@pytest.mark.parametrize("port", [80, 443])
def test_the_public_listeners_are_open_to_anyone(port):
    assert tcp_probe(get_host("ff-nginx-app1"), ADDRESS[LB], port) == "open"


def test_the_private_listener_is_closed_to_peers_that_are_not_monitoring():
    # nginx listens there (the load balancer's own test reaches it): the firewall drops it.
    assert get_host(LB).run("curl -sS -o /dev/null http://172.28.5.10:8088/json").rc == 0
    assert tcp_probe(get_host("ff-nginx-app1"), ADDRESS[LB], 8088) == "dropped"


def test_the_ruleset_is_flaskfleets_own_table_and_is_loaded_at_boot():
    host = get_host("ff-nginx-app1")
    tables = host.check_output("nft list tables")
    assert "table inet flaskfleet" in tables
    chain = host.check_output("nft list chain inet flaskfleet input")
    assert "policy drop" in chain
    assert host.service("flaskfleet-firewall").is_enabled
    # The rules loaded at boot are the ones in force.
    assert (
        host.file("/var/lib/flaskfleet-firewall/confirmed.nft").content_string
        == host.file("/etc/flaskfleet/firewall.nft").content_string
    )


def test_rules_that_are_not_confirmed_are_rolled_back_by_the_host():
    host = get_host("ff-nginx-app2")
    lb = get_host(LB)
    assert tcp_probe(lb, ADDRESS["ff-nginx-app2"], 8001) == "open"
    # A ruleset that cuts everyone off (as a wrong admin list would), applied without confirm.
    host.run(
        "sed 's/ip saddr {[^}]*}/ip saddr { 192.0.2.1 }/' /etc/flaskfleet/firewall.nft"
        " > /tmp/cut-off.nft"
    )
    applied = host.run("/usr/local/sbin/flaskfleet-firewall apply /tmp/cut-off.nft 10")
    assert applied.rc == 0, applied.stderr
    try:
        assert tcp_probe(lb, ADDRESS["ff-nginx-app2"], 8001) == "dropped"
        wait_for(
            lambda: tcp_probe(lb, ADDRESS["ff-nginx-app2"], 8001) == "open",
            30,
            "the host to roll back to its confirmed rules",
        )
        log = host.check_output("journalctl -t flaskfleet-firewall -n 5 --no-pager")
        assert "not confirmed in time" in log
    finally:
        host.run("/usr/local/sbin/flaskfleet-firewall load; rm -f /tmp/cut-off.nft")


def test_a_broken_ruleset_is_refused_before_anything_changes():
    host = get_host("ff-nginx-app1")
    before = host.check_output("nft list table inet flaskfleet")
    broken = "table inet flaskfleet { chain input { tcp dport nonsense accept } }"
    host.run(f"echo '{broken}' > /tmp/broken.nft")
    out = host.run("/usr/local/sbin/flaskfleet-firewall apply /tmp/broken.nft 10")
    assert out.rc != 0
    assert host.check_output("nft list table inet flaskfleet") == before
    assert (
        host.run("systemctl is-active flaskfleet-firewall-rollback.timer").stdout.strip()
        != "active"
    )
