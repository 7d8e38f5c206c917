"""The backup host keeps copies of the broker's data (roles/broker_backup), taken over TLS;
side_effect.yml took one, changed the broker and restored it with
playbooks/restore_redis_broker.yml."""

import os
import pathlib

testinfra_hosts = ["ff-redis-backup"]
SERVICE = "flaskfleet-redis-backup"
BROKER = ("172.28.3.11", "6380")
CA = "/etc/flaskfleet/ca.crt"


def broker_password():
    path = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "redis_broker_pw"
    return path.read_text().split()[0]


def test_copies_are_scheduled(host):
    timer = host.service(f"{SERVICE}.timer")
    assert timer.is_enabled and timer.is_running


def test_copies_are_private_rdb_files(host):
    copies = host.check_output("ls -1 /var/lib/flaskfleet-redis-backup/").split()
    assert copies and all(c.startswith("broker-") and c.endswith(".rdb") for c in copies), copies
    assert host.file("/var/lib/private/flaskfleet-redis-backup").mode == 0o700
    assert host.check_output(f"head -c 5 /var/lib/flaskfleet-redis-backup/{copies[-1]}") == "REDIS"


def test_the_password_stays_out_of_units_journals_and_command_lines(host):
    env = host.file("/etc/flaskfleet/redis-backup.env")
    assert env.mode == 0o600 and env.user == "root"
    secret = broker_password()
    assert secret not in host.check_output("systemctl cat flaskfleet-redis-backup.service")
    assert secret not in host.check_output("journalctl --no-pager -o cat")
    words = host.check_output(f"journalctl -u {SERVICE} --no-pager -o cat")
    assert "copied the broker" in words, words


def test_each_copy_is_readable_by_its_service_alone(host):
    state = host.file("/var/lib/private/flaskfleet-redis-backup")
    copies = host.check_output("ls -1 /var/lib/flaskfleet-redis-backup/").split()
    for name in copies:
        copy = host.file(f"/var/lib/flaskfleet-redis-backup/{name}")
        assert copy.mode == 0o600, (name, oct(copy.mode))
        assert copy.uid == state.uid != 0, (name, copy.uid, state.uid)


def test_the_ca_certificate_is_public_and_the_ca_key_stays_on_the_controller(host):
    ca = host.file(CA)
    assert (ca.user, ca.mode) == ("root", 0o644)
    assert "BEGIN CERTIFICATE" in ca.content_string
    # The only private keys here are the host's own service keys (the central journal's
    # receiver on this host): none of them is the CA's.
    ca_public = host.check_output(f"openssl x509 -in {CA} -noout -pubkey")
    keys = host.run("grep -rl 'PRIVATE KEY' /etc/flaskfleet").stdout.split()
    for key in keys:
        assert host.check_output(f"openssl pkey -in {key} -pubout") != ca_public, key


def test_the_copy_speaks_tls_to_the_broker(host):
    script = host.file("/usr/local/sbin/flaskfleet-redis-backup").content_string
    assert f"--tls --cacert {CA}" in script, script
    broker = "-h %s -p %s"
    secret = broker_password()
    tls = host.run(
        f"env REDISCLI_AUTH=%s redis-cli --no-auth-warning --tls --cacert %s {broker} PING",
        secret,
        CA,
        *BROKER,
    )
    assert tls.stdout.strip() == "PONG", tls.stdout + tls.stderr
    plain = host.run(
        f"env REDISCLI_AUTH=%s timeout 30 redis-cli --no-auth-warning {broker} PING",
        secret,
        *BROKER,
    )
    assert plain.rc != 0 and "PONG" not in plain.stdout, plain.stdout + plain.stderr
