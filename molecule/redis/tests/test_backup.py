"""The backup host keeps copies of the broker's data (roles/broker_backup); side_effect.yml
took one, changed the broker and restored it with playbooks/restore_redis_broker.yml."""

import os
import pathlib

testinfra_hosts = ["ff-redis-backup"]
SERVICE = "flaskfleet-redis-backup"


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
