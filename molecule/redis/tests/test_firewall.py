"""The firewall on the Redis host (roles/firewall): the backup host reaches the broker, which
it copies, and not the cache; this scenario has no app server or worker, so no peer reaches
the cache."""

from fftest import remote, tcp_probe

REDIS = "172.28.3.11"


def test_the_backup_host_reaches_the_broker():
    assert tcp_probe(remote("ff-redis-backup"), REDIS, 6380) == "open"


def test_the_backup_host_cannot_reach_the_cache():
    # Redis listens there (the Redis host itself connects): only the firewall drops it.
    assert tcp_probe(remote("ff-redis-1"), REDIS, 6379) == "open"
    assert tcp_probe(remote("ff-redis-backup"), REDIS, 6379) == "dropped"


def test_the_backup_host_opens_no_service_port_to_the_redis_host():
    backup = remote("ff-redis-backup")
    rules = backup.check_output("nft list chain inet flaskfleet input")
    assert "dport 22" in rules
    assert "6379" not in rules and "6380" not in rules and "8432" not in rules
