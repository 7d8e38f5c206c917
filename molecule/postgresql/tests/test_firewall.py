"""The firewall on the database and backup hosts (roles/firewall): PostgreSQL open to the
other database hosts (replication) and not to the backup host, which reaches only their
pgBackRest servers; the database hosts reach the repository's pgBackRest server and not
each other's. Also true after side_effect.yml's promotion and killed repository host (the
rules come back at boot)."""

import pytest
from fftest import remote, tcp_probe

P, R1, R2, B = "172.28.2.11", "172.28.2.12", "172.28.2.13", "172.28.2.14"


@pytest.mark.parametrize(
    ("client", "server"),
    [("ff-postgresql-r1", P), ("ff-postgresql-r2", P), ("ff-postgresql-p", R1)],
)
def test_the_firewall_lets_the_other_database_hosts_reach_postgresql(client, server):
    # Not dropped: the firewall lets it through. After side_effect.yml the former primary
    # is fenced (its server refuses to start), so a connection to it is refused by the
    # host, not dropped; before it, every server answers.
    assert tcp_probe(remote(client), server, 5432) in ("open", "refused")


def test_the_backup_host_cannot_reach_postgresql():
    assert tcp_probe(remote("ff-postgresql-b"), P, 5432) == "dropped"
    assert tcp_probe(remote("ff-postgresql-b"), R1, 5432) == "dropped"


@pytest.mark.parametrize("server", [P, R1, R2])
def test_the_backup_host_reaches_every_database_hosts_pgbackrest_server(server):
    assert tcp_probe(remote("ff-postgresql-b"), server, 8432) == "open"


@pytest.mark.parametrize("client", ["ff-postgresql-p", "ff-postgresql-r1", "ff-postgresql-r2"])
def test_every_database_host_reaches_the_repository(client):
    assert tcp_probe(remote(client), B, 8432) == "open"


def test_database_hosts_cannot_reach_each_others_pgbackrest_server():
    assert tcp_probe(remote("ff-postgresql-r1"), R2, 8432) == "dropped"
    assert tcp_probe(remote("ff-postgresql-r1"), P, 8432) == "dropped"


def test_the_rules_in_force_are_the_confirmed_ones_on_every_host():
    for name in ["ff-postgresql-p", "ff-postgresql-r1", "ff-postgresql-r2", "ff-postgresql-b"]:
        host = remote(name)
        assert host.service("flaskfleet-firewall").is_enabled
        assert "policy drop" in host.check_output("nft list chain inet flaskfleet input")
